"""`mjave experiment ablation`: every row of the paper's Tables 5 and 6.

Table 6 (images): M-JAVE, JAVE (w/o visual info) and M-JAVE without each visual module or gate.
Table 5 (attributes and values): JAVE, JAVE w/o MTL / AttrPred / KL loss, and the two upper
bounds: the attribute task trained with the gold value distribution in the KL term (its values
are the gold ones, value F1 100; a second row uses gold presence 1 instead of Eq. 12's B/I mean,
see `mjave.experiments.upper_bound`), and the value task conditioned on the gold attributes (its
attributes are the gold ones, attribute F1 100). Rows come from `mjave.config.ABLATIONS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mjave.experiments import plots, upper_bound
from mjave.experiments.common import (ExperimentBase, ExperimentResult, ModelVariant, Progress,
                                      VariantRuns, apply_mapping, eval_file, f1_cell, md_table,
                                      read_data, run_variants, uses_image, write_results)
from mjave.config import ABLATIONS, path_field

ATTR_UPPER_BOUND = "JAVE upper bound (attribute task)"
ATTR_UPPER_BOUND_PRESENCE = "JAVE upper bound (attribute task, gold presence)"


def default_models() -> list[ModelVariant]:
    """ABLATIONS in order, with the attribute-task upper bound before the value-task one."""
    out = []
    for name, overrides in ABLATIONS.items():
        if name == "JAVE upper bound (value task)":
            out.append(ModelVariant(ATTR_UPPER_BOUND, {"model.use_image": False},
                                    kind="attr-upper-bound"))
            out.append(ModelVariant(ATTR_UPPER_BOUND_PRESENCE,
                                    {"model.use_image": False,
                                     "model.architecture": upper_bound.PRESENCE_ARCHITECTURE},
                                    kind="attr-upper-bound"))
        out.append(ModelVariant(name, {f"model.{k}": v for k, v in overrides.items()}))
    return out


@dataclass
class AblationConfig(ExperimentBase):
    """Ablation rows on `eval_data` (default base.data.test, else base.data.valid).

    Text-only rows are compared with `text_reference` (JAVE), image rows with `image_reference`
    (M-JAVE). `repeats` > 1: seeds seed, seed+1, ...; mean ± std.
    """

    output_dir: str = "runs/experiments/ablation"
    eval_data: str | None = path_field()
    models: list[ModelVariant] = field(default_factory=default_models)
    text_reference: str = "JAVE"
    image_reference: str = "M-JAVE"
    repeats: int = 1


def _cell_vs(r: VariantRuns, task: str, ref: VariantRuns | None) -> str:
    """`f1_cell` with the difference to the reference row in brackets."""
    if r.unavailable:
        return "not available"
    text = f1_cell(r, task)
    if (task not in r.given and ref is not None and ref is not r and ref.reports
            and task not in ref.given):
        text += f" ({r.f1(task)[0] - ref.f1(task)[0]:+.2f})"
    return text


def checks(runs: dict[str, VariantRuns]) -> dict[str, bool | None]:
    """The orderings the paper reports (and the synthetic catalog's construction implies)."""
    def value(name: str) -> float | None:
        r = runs.get(name)
        return r.f1("value")[0] if r and r.reports else None

    def lower(a: str, b: str) -> bool | None:
        va, vb = value(a), value(b)
        return None if va is None or vb is None else va < vb

    return {
        "JAVE < M-JAVE (value F1)": lower("JAVE", "M-JAVE"),
        "w/o global visual gate < M-JAVE (value F1)": lower("w/o global visual gate", "M-JAVE"),
        "w/o regional visual gate < M-JAVE (value F1)": lower("w/o regional visual gate",
                                                               "M-JAVE"),
        "w/o global-gated CrossMAtt < M-JAVE (value F1)": lower("w/o global-gated CrossMAtt",
                                                                 "M-JAVE"),
        "w/o regional-gated CrossMAtt < M-JAVE (value F1)": lower(
            "w/o regional-gated CrossMAtt", "M-JAVE"),
        "JAVE w/o MTL < JAVE (value F1)": lower("JAVE w/o MTL", "JAVE"),
        "JAVE w/o AttrPred < JAVE (value F1)": lower("JAVE w/o AttrPred", "JAVE"),
        "JAVE w/o KL < JAVE (value F1)": lower("JAVE w/o KL", "JAVE"),
        "JAVE < JAVE upper bound (value task) (value F1)": lower(
            "JAVE", "JAVE upper bound (value task)"),
    }


def run(cfg: AblationConfig, progress: Progress | None = None) -> ExperimentResult:
    started = time.time()
    path = eval_file(cfg.eval_data, cfg.base)
    records = read_data(path, cfg.base)
    runs = run_variants(cfg.base, cfg.models, records, Path(cfg.output_dir), cfg.seed,
                        cfg.repeats, progress)
    image_rows = {v.name: uses_image(apply_mapping(cfg.base, v.overrides)) for v in cfg.models}
    text_ref, image_ref = runs.get(cfg.text_reference), runs.get(cfg.image_reference)

    def table(names: list[str]) -> str:
        rows = []
        for n in names:
            ref = image_ref if image_rows[n] else text_ref
            rows.append([n, *(_cell_vs(runs[n], t, ref) for t in ("attribute", "value", "pair"))])
        return md_table(["model", "attribute F1", "value F1", "pair F1"], rows)

    text_names = [n for n in runs if not image_rows[n]]
    image_names = [n for n in runs if image_rows[n]]
    if cfg.text_reference in runs and cfg.text_reference not in image_names:
        image_names.insert(min(1, len(image_names)), cfg.text_reference)
    parts = []
    if image_names:
        parts += ["## Images (paper Table 6)", "", table(image_names), ""]
    if text_names:
        parts += ["## Attributes and values, text only (paper Table 5)", "", table(text_names)]
    ran = [n for n, r in runs.items() if r.reports]
    chart = plots.bar_chart(
        ran, {t: [None if t in runs[n].given else runs[n].f1(t)[0] for n in ran]
              for t in ("attribute", "value")},
        title="Ablations (F1 %, upper-bound gold columns left out)",
        errors={t: [runs[n].f1(t)[1] for n in ran] for t in ("attribute", "value")}
        if cfg.repeats > 1 else None)
    found = checks(runs)
    notes = [f"evaluated on `{path}` ({len(records)} texts); in brackets: difference to "
             f"{cfg.image_reference} (image rows) or {cfg.text_reference} (text-only rows)",
             "upper bounds: '(gold)' marks the task whose gold answer the row is given",
             "orderings: " + "; ".join(f"{k}: {fmt_check(v)}" for k, v in found.items()
                                         if v is not None)]
    results = {"eval_data": path, "n_instances": len(records),
               "models": {n: r.summary() for n, r in runs.items()}, "checks": found}
    return write_results("ablation", "Ablations (paper Tables 5 and 6)", cfg, "\n".join(parts),
                         results, {"ablation.png": chart}, started, notes)


def fmt_check(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "NO")

