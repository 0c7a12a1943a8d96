"""`mjave demo`: the synthetic catalog, JAVE against M-JAVE end to end."""

from __future__ import annotations

import argparse

from mjave.cli.console import progress_bar, setup_logging


def cmd_demo(args: argparse.Namespace) -> int:
    setup_logging()
    from mjave.experiments.demo import DemoConfig, run_demo
    cfg = DemoConfig(output_dir=args.output_dir, n_products=args.n_products, seed=args.seed,
                     epochs=args.epochs)
    result = run_demo(cfg, progress=progress_bar())
    print()
    print("Test split of the synthetic catalog (F1 %):")
    print(result.table)
    aw = result.awareness
    gain = result.reports["M-JAVE"]["value"]["f1"] - result.reports["JAVE"]["value"]["f1"]
    print(f"M-JAVE minus JAVE, value F1: {gain:+.2f}")
    print(f"image awareness of M-JAVE (true minus shuffled image): value "
          f"{aw['value']['awareness']:+.2f}, attribute {aw['attribute']['awareness']:+.2f}")
    if "implicit" in aw:
        named = result.reports["M-JAVE"]["implicit"]["all"]
        print(f"values not in the text (implicit F1, {named['n']} attribute slots of text-silent "
              f"products): M-JAVE {named['f1']:.2f}, text-only JAVE "
              f"{result.reports['JAVE']['implicit']['all']['f1']:.2f}, shuffled images "
              f"{aw['implicit']['incongruent_mean']:.2f}; majority-class accuracy "
              f"{named['majority']:.2f}")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result.timings.items()))
    print(f"outputs: {result.output_dir}/summary.json, predictions.jsonl, gates.png")
    return 0


def add_demo_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`mjave demo`."""
    p = commands.add_parser("demo", help="synthetic catalog: JAVE vs M-JAVE end to end")
    p.add_argument("--output-dir", default="demo_output",
                   help="where the catalog, models and outputs go (default: demo_output)")
    p.add_argument("--n-products", type=int, default=600,
                   help="synthetic products to generate (default 600)")
    p.add_argument("--epochs", type=int, default=40,
                   help="training epochs of each model, JAVE and M-JAVE (default 40)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the catalog and of training (default 0)")
    p.set_defaults(func=cmd_demo)
    return p


__all__ = ["add_demo_command", "cmd_demo"]
