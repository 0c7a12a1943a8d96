"""`mjave experiment NAME --config FILE [--set k=v ...] [--output DIR]`: run one experiment of
the paper, print its Markdown table and list the files it wrote."""

from __future__ import annotations

import argparse

from mjave.cli.console import progress_bar, setup_logging


def cmd_experiment(args: argparse.Namespace) -> int:
    import yaml

    from mjave.config import to_dict
    from mjave.experiments.runner import make_config, run_experiment

    cfg = make_config(args.name, args.config, args.set, args.output)
    cfg = _with_flags(cfg, args)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), end="")
        return 0
    setup_logging()
    result = run_experiment(args.name, cfg, progress=progress_bar())
    print()
    print(result.markdown)
    files = [str(p) for p in result.files]
    if getattr(args, "json", None):
        import json
        from pathlib import Path
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.results, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        files.append(str(path))
    print("wrote: " + ", ".join(files))
    return 0


#: Flags that set a top-level field of the experiment's config (only where it has that field).
FIELD_FLAGS = {"data": "data", "hide": "hide", "seeds": "seeds",
               "min_precision": "min_precision", "leave_out_category": "leave_out_category"}


def _with_flags(cfg, args: argparse.Namespace):
    """`cfg` with the field flags given on the command line (e.g. `--hide 0.5` for
    `experiment completion`); an error for a flag the experiment's config has no field for."""
    import dataclasses

    from mjave.config import ConfigError
    changes = {}
    names = {f.name for f in dataclasses.fields(cfg)}
    for flag, name in FIELD_FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if name not in names:
            raise ConfigError(f"--{flag.replace('_', '-')} is not an option of experiment "
                              f"{args.name!r} (its config has no {name!r})")
        changes[name] = value
    from mjave.config import set_values
    return set_values(cfg, changes)


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
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    f = p.add_argument_group("experiment fields (experiments whose config has them)")
    f.add_argument("--data", help="completion: the gold-annotated dataset")
    f.add_argument("--hide", type=float, help="completion: share of each product's attributes "
                   "hidden from the table (default 0.5)")
    f.add_argument("--seeds", type=int, help="completion: number of seeds (default 3)")
    f.add_argument("--min-precision", type=float,
                   help="completion: precision the calibrated threshold aims at (default 0.9)")
    f.add_argument("--leave-out-category", metavar="CATEGORY",
                   help="completion: train on the other categories' products and complete "
                        "this category's (a category the models never saw)")
    p.set_defaults(func=cmd_experiment)
    return p


__all__ = ["FIELD_FLAGS", "add_experiment_command", "cmd_experiment"]
