"""`mjave train` and `mjave features`: both read a run config (`--config`, `--set key=value`)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from mjave.cli.console import fail, progress_bar, setup_logging
from mjave.data.errors import DataError


NO_CONFIG = (
    "no --config and no training data. A text-only run (JAVE) needs at least\n"
    "  mjave train --set data.train=TRAIN.jsonl --set model.use_image=false "
    "--set encoder.image_encoder=none\n"
    "(add --set data.valid=VALID.jsonl --set output_dir=runs/NAME); with images (M-JAVE) give "
    "data.image_root instead of the last two. Or start from a recipe: --config "
    "configs/runs/oamine.yaml trains on the OA-Mine data shipped with mjave (`mjave data list`), "
    "examples/run.yaml on the `mjave demo` catalog; docs/configs.md")
"""What `mjave train` without `--config` says: the defaults are M-JAVE, which reads images."""


def add_run_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run config YAML/JSON (mjave.config.RunConfig)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.epochs=5 (repeatable)")


def run_config(args: argparse.Namespace):
    """The RunConfig of `--config` (defaults without one) with the `--set` overrides."""
    from mjave.config import RunConfig, apply_overrides, load_run_config
    cfg = load_run_config(args.config) if args.config else RunConfig()
    return apply_overrides(cfg, args.set or [])


def cmd_train(args: argparse.Namespace) -> int:
    setup_logging()
    from mjave.training.trainer import train
    cfg = run_config(args)
    if args.init_from:   # the same as --set train.init_from=MODEL, the path taken as it is
        cfg = replace(cfg, train=replace(cfg.train, init_from=args.init_from))
    if not cfg.data.train:
        raise DataError(NO_CONFIG if not args.config else
                        "no training data: set data.train in the config or --set data.train=FILE")
    result = train(cfg, progress=progress_bar())
    from mjave.training.distributed import launch_rank
    if launch_rank() != 0:   # under torchrun only rank 0 reports
        return 0
    from mjave.pretrained import check_folder
    try:  # a run that wrote no model must not look like a success to a script or a scheduler
        check_folder(result.output_dir)
    except FileNotFoundError as e:
        return fail(f"training produced no model: {e}")
    best = result.best_valid
    print(f"model: {result.output_dir} (best epoch {result.best_epoch} of {result.epochs_run}"
          f"{', resumed after epoch %d' % result.resumed_from if result.resumed_from else ''}, "
          f"{result.seconds:.0f} s)")
    if best:
        print(f"valid: attribute F1 {best['attribute']['f1']:.2f}  value F1 "
              f"{best['value']['f1']:.2f}  pair F1 {best['pair']['f1']:.2f}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    setup_logging()
    from mjave.encoders.precompute import feature_store_dir, precompute_features
    cfg = run_config(args)
    for done in precompute_features(cfg, batch_size=args.batch_size, progress=progress_bar()):
        if done.issues.summary():
            print(f"{done.path}: {done.issues.summary()}")
        print(f"{done.path}: {done.stats.summary()}")
    print(f"feature store: {feature_store_dir(cfg)}")
    return 0


def add_train_commands(commands: argparse._SubParsersAction) -> None:
    """`mjave train|features`."""
    p = commands.add_parser("train", help="train a model from a run config")
    add_run_config_args(p)
    p.add_argument("--init-from", metavar="MODEL",
                   help="start from the weights of this trained model folder (a warm start, "
                        "e.g. the last round's model; epochs and optimizer start fresh): "
                        "train.init_from")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("features", help="encode texts and images once into the feature store")
    add_run_config_args(p)
    p.add_argument("--batch-size", type=int, default=32, metavar="N",
                   help="texts or images encoded per forward pass (default 32)")
    p.set_defaults(func=cmd_features)


__all__ = ["add_run_config_args", "add_train_commands", "cmd_features", "cmd_train",
           "run_config"]
