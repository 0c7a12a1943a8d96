"""`mjave serve MODEL`: load a model folder and serve it over HTTP with uvicorn.

FastAPI and uvicorn are imported only when the command runs, so `mjave` works without the
[serve] extra and says how to install it when it is missing. The default host is 127.0.0.1:
the service has no authentication, so exposing it is an explicit choice (`--host 0.0.0.0`).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path
from typing import Sequence

SERVE_EXTRA_HINT = "mjave serve needs the [serve] extra: pip install 'mjave[serve]'"


def _add_serve_arguments(p: argparse.ArgumentParser) -> None:
    from mjave.serving.config import DEFAULTS
    p.add_argument("model", help="model folder written by `mjave train`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, loopback only; the service has no "
                        "authentication)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--image-root", metavar="DIR",
                   help="folder that requests' image_path may read from (default: image_path "
                        "refused)")
    p.add_argument("--max-batch-size", type=int, default=DEFAULTS["max_batch_size"], metavar="N",
                   help="items per model call (default %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=DEFAULTS["max_wait_ms"], metavar="M",
                   help="how long an item may wait for others to fill a batch "
                        "(default %(default)s)")
    p.add_argument("--max-request-items", type=int, default=DEFAULTS["max_request_items"],
                   metavar="N", help="items per request (default %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model, then run uvicorn until interrupted (Ctrl-C / SIGTERM: graceful stop)."""
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401
        import uvicorn
    except ImportError:
        print(f"error: {SERVE_EXTRA_HINT}", file=sys.stderr)
        return 1
    import logging

    from mjave.serving.config import ServeConfig

    try:
        config = ServeConfig(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                             max_request_items=args.max_request_items, image_root=args.image_root)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.image_root is not None and not Path(args.image_root).is_dir():
        print(f"error: --image-root is not a folder: {args.image_root}", file=sys.stderr)
        return 1
    if not _is_loopback(args.host):
        print(f"warning: binding {args.host}: the service is reachable from other machines and "
              "has no authentication", file=sys.stderr)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from mjave.inference.extractor import Extractor  # torch: only once the arguments are good
    from mjave.serving.app import create_app
    extractor = Extractor.load(args.model, device=args.device)
    app = create_app(extractor, config)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=30, server_header=False)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_serve_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `mjave serve` on the top-level subparsers (see `mjave.cli.build_parser`)."""
    p = commands.add_parser("serve", help="serve a model over HTTP (127.0.0.1 by default)",
                            description="Serve a trained model: POST /v1/extract, GET /healthz, "
                            "/readyz, /v1/model, /openapi.json.")
    _add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mjave.serving MODEL [options]`: the same command without the `mjave` CLI."""
    from mjave.config import ConfigError
    from mjave.data.errors import DataError
    parser = argparse.ArgumentParser(prog="python -m mjave.serving",
                                     description="Serve a trained M-JAVE model over HTTP.")
    _add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_serve(args)
    except (DataError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
