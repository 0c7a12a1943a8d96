"""The experiments by name, and how a config file plus overrides becomes one run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from mjave.config import ConfigError, apply_overrides, load
from mjave.experiments import (ablation, awareness, completion, domain, gate_maps, low_resource,
                               per_group, photo_decides, significance, table)
from mjave.experiments.common import ExperimentBase, ExperimentResult, Progress


@dataclass(frozen=True)
class Experiment:
    """A config dataclass and the function that runs it."""

    config: type
    run: Callable[..., ExperimentResult]
    help: str


EXPERIMENTS: dict[str, Experiment] = {
    "table": Experiment(table.TableConfig, table.run,
                        "models and baselines on one dataset (Table 3)"),
    "ablation": Experiment(ablation.AblationConfig, ablation.run,
                           "every row of Tables 5 and 6, with both upper bounds"),
    "awareness": Experiment(awareness.AwarenessConfig, awareness.run,
                            "congruent vs K shuffled images, paired tests + Fisher (sec. 4.3)"),
    "low-resource": Experiment(low_resource.LowResourceConfig, low_resource.run,
                               "fractions of the training set, mean ± std (Table 9)"),
    "domain": Experiment(domain.DomainConfig, domain.run,
                         "train in one domain, test in another (Table 8)"),
    "significance": Experiment(significance.SignificanceConfig, significance.run,
                               "paired test between two models' per-instance F1"),
    "per-group": Experiment(per_group.PerGroupConfig, per_group.run,
                            "F1 per category and per attribute (Figures 3, 4)"),
    "photo-decides": Experiment(photo_decides.PhotoDecidesConfig, photo_decides.run,
                                "value F1 on the texts only the photo decides (issue #31)"),
    "visualise": Experiment(gate_maps.VisualiseConfig, gate_maps.run,
                            "global and regional visual gates of chosen texts (Figure 5)"),
    "completion": Experiment(completion.CompletionConfig, completion.run,
                             "hide catalog pairs, label -> train -> complete, score the "
                             "suggestions (partial vs naive vs full labels)"),
}


def experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ConfigError(f"unknown experiment {name!r}; known: "
                          f"{', '.join(EXPERIMENTS)}") from None


def make_config(name: str, path: str | Path | None = None, overrides: list[str] | None = None,
                output: str | None = None) -> ExperimentBase:
    """The config of experiment `name`: the file (or the defaults), `--set` overrides, then
    `--output` as output_dir."""
    cls = experiment(name).config
    cfg = load(cls, path) if path else cls()
    cfg = apply_overrides(cfg, overrides or [])
    return replace(cfg, output_dir=output) if output else cfg


def run_experiment(name: str, cfg: ExperimentBase, progress: Progress | None = None
                   ) -> ExperimentResult:
    spec = experiment(name)
    if not isinstance(cfg, spec.config):
        raise ConfigError(f"experiment {name!r} takes a {spec.config.__name__}, "
                          f"not a {type(cfg).__name__}")
    return spec.run(cfg, progress=progress)
