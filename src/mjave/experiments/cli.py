"""`mjave experiment NAME --config FILE [--set k=v ...] [--output DIR]`.

Register with `add_experiment_command(commands)` on the top-level subparsers of `mjave.cli`.
The command runs one experiment, prints its Markdown table and lists the files it wrote.
"""

from __future__ import annotations

import argparse


def cmd_experiment(args: argparse.Namespace) -> int:
    import yaml

    from mjave.config import to_dict
    from mjave.experiments.runner import make_config, run_experiment

    cfg = make_config(args.name, args.config, args.set, args.output)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), end="")
        return 0
    from mjave.cli import _progress, _setup_logging
    _setup_logging()
    result = run_experiment(args.name, cfg, progress=_progress())
    print()
    print(result.markdown)
    print("wrote: " + ", ".join(str(p) for p in result.files))
    return 0


def add_experiment_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `mjave experiment` to the top-level subparsers; returns its parser."""
    from mjave.experiments.runner import EXPERIMENTS

    listing = "; ".join(f"{n}: {e.help}" for n, e in EXPERIMENTS.items())
    p = commands.add_parser(
        "experiment", help="run a paper experiment (table, ablation, awareness, ...)",
        description="Run one experiment of the paper's section 4 and write results.md, "
                    "results.json, config.yaml and PNG plots into the output folder. "
                    f"Experiments: {listing}.")
    p.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME",
                   help=", ".join(EXPERIMENTS))
    p.add_argument("--config", help="experiment config YAML/JSON (see configs/experiments/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set base.train.epochs=5 (repeatable)")
    p.add_argument("--output", help="output folder (replaces output_dir of the config)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML and exit without running")
    p.set_defaults(func=cmd_experiment)
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m mjave.experiments.cli experiment NAME ...`: the same command, for use before
    (or without) `mjave.cli` registering it."""
    import sys

    from mjave.config import ConfigError
    from mjave.data.errors import DataError

    parser = argparse.ArgumentParser(prog="mjave")
    add_experiment_command(parser.add_subparsers(dest="command", metavar="COMMAND",
                                                 required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (DataError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
