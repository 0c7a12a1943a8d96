"""`mjave experiment visualise`: global and regional visual gates of chosen texts (Figure 5).

For each chosen text, `mjave.experiments.demo.write_gate_figure` draws the regional gate g^R over
the product image and the global gate g^G per token (both averaged over the attention size);
the table lists the tokens with the largest global gate and the range of the regional gate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image

from mjave.config import path_field
from mjave.encoders.features import resolve_image_path
from mjave.experiments.common import (ExperimentBase, ExperimentError, ExperimentResult,
                                      ModelVariant, Progress, eval_file, md_table, mjave,
                                      read_data, slug, train_variant, write_results)
from mjave.experiments.demo import write_gate_figure
from mjave.model.batches import collate


@dataclass
class VisualiseConfig(ExperimentBase):
    """Gate maps of `model` for the texts `examples` (record ids) of `eval_data`; with no ids,
    the first `n_examples` texts that have a gold value."""

    output_dir: str = "runs/experiments/visualise"
    eval_data: str | None = path_field()
    model: ModelVariant = field(default_factory=mjave)
    examples: list[str] = field(default_factory=list)
    n_examples: int = 4


@torch.no_grad()
def gate_summary(model, example) -> dict:
    """Per-token global gates and the regional gate range of one example."""
    batch = collate([example], pad_id=model.aligner.pad_id, device=model.device)
    out = model.net(batch, with_labels=False)
    n = len(example.encoded)
    tokens, gates = [], []
    for i in range(n):
        a, b = example.encoded.offsets[i]
        tokens.append(example.record.text[a:b] if b > a else ("[CLS]" if i == 0 else "[SEP]"))
        gates.append(float(out.global_gate[0, i].mean()))
    regional = out.regional_gate[0].mean(-1).cpu().numpy()
    return {"tokens": tokens, "global_gate": gates,
            "regional_gate": [float(x) for x in regional]}


def run(cfg: VisualiseConfig, progress: Progress | None = None) -> ExperimentResult:
    started = time.time()
    path = eval_file(cfg.eval_data, cfg.base)
    records = read_data(path, cfg.base)
    if cfg.examples:
        by_id = {r.id: r for r in records}
        missing = [i for i in cfg.examples if i not in by_id]
        if missing:
            raise ExperimentError(f"{path}: no records with ids {missing}")
        chosen = [by_id[i] for i in cfg.examples]
    else:
        chosen = [r for r in records if r.spans][:cfg.n_examples]
    if not chosen:
        raise ExperimentError(f"{path}: no texts to visualise")
    trained = train_variant(cfg.base, cfg.model, Path(cfg.output_dir), cfg.seed, progress)
    if not trained.uses_image:
        raise ExperimentError(f"{cfg.model.name} does not read images: nothing to visualise")
    mc = trained.loaded.config.model
    if not (mc.global_image_enabled and mc.global_gate and mc.regional_image_enabled
            and mc.regional_gate):
        raise ExperimentError(f"{cfg.model.name} lacks a global or regional visual gate")
    examples = trained.examples(chosen)
    preds = trained.predict(chosen, examples=examples)
    image_root = trained.config.data.image_root
    images: dict[str, Image.Image] = {}
    rows, details = [], []
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k, (ex, pred) in enumerate(zip(examples, preds.pred)):
        image_path, tried = resolve_image_path(ex.record, image_root)
        if image_path is None or not image_path.is_file():
            raise ExperimentError(f"record {ex.record.id}: image not found (tried "
                                  f"{', '.join(map(str, tried)) or 'nothing'})")
        shown = replace(ex, record=replace(ex.record, image=str(image_path.resolve())))
        fname = f"gates-{k}-{slug(ex.record.id)}.png"
        write_gate_figure(out / fname, trained.loaded, shown, Path(image_root or "."))
        with Image.open(out / fname) as im:
            images[fname] = im.copy()
        g = gate_summary(trained.loaded, ex)
        top = sorted(range(1, len(g["tokens"]) - 1), key=lambda i: -g["global_gate"][i])[:3]
        rows.append([ex.record.id, ex.record.text,
                     "; ".join(f"{s.attr}={s.value}" for s in ex.record.spans) or "-",
                     "; ".join(f"{s.attr}={s.value}" for s in pred.spans) or "-",
                     ", ".join(f"{g['tokens'][i]} {g['global_gate'][i]:.3f}" for i in top),
                     f"{min(g['regional_gate']):.3f} .. {max(g['regional_gate']):.3f}", fname])
        details.append({"id": ex.record.id, "text": ex.record.text, "figure": fname, **g})
    header = ["id", "text", "gold", "predicted", "largest global gates", "g^R range", "figure"]
    notes = [f"{cfg.model.name} on `{path}`; gates averaged over the attention size; figures "
             "show g^R over the image (left) and g^G per token (right)"]
    return write_results("visualise", "Visual gates (paper Figure 5)", cfg,
                         md_table(header, rows), {"examples": details}, images, started, notes)
