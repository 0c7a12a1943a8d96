"""`mjave demo`: the built-in synthetic catalog, JAVE vs M-JAVE, end to end on a laptop CPU.

Steps: generate the catalog -> extract frozen features once (MiniLM-L6 text, EfficientNet-Lite0
image) -> train JAVE (text only) and M-JAVE on the same features -> evaluate both on the test
split through the Extractor (as `mjave evaluate` does) -> image awareness of M-JAVE (true vs
shuffled images) -> predictions JSONL and a gate heat-map PNG. Everything lands in one output
folder with a `summary.json`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from mjave.config import apply_overrides, to_dict
from mjave.data.formats import read_records
from mjave.data.records import Record
from mjave.data.synthetic import generate_catalog
from mjave.config import EncoderConfig
from mjave.evaluation.report import format_comparison
from mjave.experiments.visualise import save_gate_figure
from mjave.inference.extractor import Extractor
from mjave.pretrained import LoadedModel
from mjave.model.batches import collate
from mjave.config import ModelConfig
from mjave.config import DataConfig, RunConfig, TrainConfig
from mjave.training.evaluate import (EVAL_BATCH_SIZE, extractor_items, featurize,
                                     image_awareness, score_records)
from mjave.training.trainer import train

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Sizes chosen so the whole demo runs in a few minutes on 2 CPU cores."""

    output_dir: str = "demo_output"
    n_products: int = 600
    seed: int = 0
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 8
    attention_size: int = 200
    awareness_permutations: int = 3
    text_encoder: str = "minilm"
    image_encoder: str = "efficientnet-lite0"
    # Issue #31: a share of products whose texts never state their colour or pattern, and the
    # attributes both models name without a span (empty: no implicit head).
    text_silent_rate: float = 0.1
    implicit_attributes: list[str] = field(default_factory=lambda: ["Color", "Pattern"])
    ambiguous_rate: float = 0.95   # the catalog's (`mjave.data.synthetic.build_catalog`)
    model_overrides: list[str] = field(default_factory=list)   # `--set`-style, both models


@dataclass
class DemoResult:
    output_dir: Path
    reports: dict[str, dict]
    awareness: dict
    timings: dict[str, float] = field(default_factory=dict)
    table: str = ""


def run_config(cfg: DemoConfig, name: str, catalog: Path, use_image: bool) -> RunConfig:
    out = Path(cfg.output_dir)
    return apply_overrides(RunConfig(
        output_dir=str(out / "models" / name),
        features_dir=str(out / "features"),
        data=DataConfig(train=str(catalog / "train.jsonl"), valid=str(catalog / "valid.jsonl"),
                        image_root=str(catalog)),
        encoder=EncoderConfig(text_encoder=cfg.text_encoder, image_encoder=cfg.image_encoder),
        model=ModelConfig(use_image=use_image, attention_size=cfg.attention_size,
                          implicit_values=bool(cfg.implicit_attributes),
                          implicit_attributes=list(cfg.implicit_attributes)),
        train=TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                          patience=cfg.patience, seed=cfg.seed, device="cpu")),
        list(cfg.model_overrides))


def write_predictions(path: Path, extractor: Extractor, records: Sequence[Record],
                      image_root: Path) -> None:
    """The Extractor's answer for every record, beside its gold spans (JSONL)."""
    items = extractor_items(extractor, records, image_root)
    with open(path, "w", encoding="utf-8") as f:
        for r, res in zip(records, extractor.predict_batch(items)):
            f.write(json.dumps({
                "id": r.id, "cid": r.cid, "text": r.text,
                "attributes": [{"name": a["name"], "score": round(a["score"], 4)}
                               for a in res["attributes"]],
                "values": [{**v, "score": round(v["score"], 4)} for v in res["values"]],
                "gold": [{"attribute": s.attr, "value": s.value, "begin": s.begin, "end": s.end}
                         for s in r.spans]}, ensure_ascii=False) + "\n")


@torch.no_grad()
def write_gate_figure(path: Path, model: LoadedModel, example, image_root: Path) -> Path:
    batch = collate([example], pad_id=model.aligner.pad_id, device=model.device)
    out = model.net(batch, with_labels=False)
    n = len(example.encoded)
    tag_ids = out.tag_logits[0, :n].argmax(-1).tolist()
    tokens, gates, tags = [], [], []
    for i in range(n):
        a, b = example.encoded.offsets[i]
        tokens.append(example.record.text[a:b] if b > a else ("[CLS]" if i == 0 else "[SEP]"))
        gates.append(float(out.global_gate[0, i].mean()))
        tags.append(model.schema.tag_name(tag_ids[i]) if example.encoded.label_mask[i] else "")
    regional = out.regional_gate[0].mean(-1).cpu().numpy()
    image = Image.open(image_root / example.record.image)
    return save_gate_figure(path, image, regional, tokens, np.array(gates), tags,
                            title=f"{example.record.id}: {example.record.text[:60]}")


def implicit_summary(report: dict) -> dict:
    """F1, accuracy and the majority-class rate of the values named without a span, overall and
    per attribute (`mjave.evaluation.implicit`)."""
    rows = {"all": report["implicit"]["all"], **report["implicit"]["per_attribute"]}
    return {k: {m: v[m] for m in ("f1", "accuracy", "majority", "n")} for k, v in rows.items()}


def run_demo(cfg: DemoConfig = DemoConfig(), progress: Callable | None = None) -> DemoResult:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.time()
    catalog = out / "catalog"
    generate_catalog(catalog, n_products=cfg.n_products, seed=cfg.seed,
                     ambiguous_rate=cfg.ambiguous_rate, text_silent_rate=cfg.text_silent_rate)
    timings["generate"] = time.time() - t0

    reports, extractors = {}, {}
    test_records, _ = read_records(catalog / "test.jsonl", labelled=True)
    for name, use_image in (("JAVE", False), ("M-JAVE", True)):
        t = time.time()
        result = train(run_config(cfg, name, catalog, use_image), progress=progress)
        timings[f"train {name}"] = time.time() - t
        # Scored through the Extractor, as `mjave evaluate` scores (windows, decoding options).
        extractor = Extractor.load(result.output_dir, device="cpu", batch_size=EVAL_BATCH_SIZE)
        reports[name] = score_records(extractor, test_records, catalog)
        reports[name]["best_epoch"] = result.best_epoch
        extractors[name] = extractor

    t = time.time()
    awareness = image_awareness(extractors["M-JAVE"], test_records, catalog,
                                permutations=cfg.awareness_permutations, seed=cfg.seed)
    timings["awareness"] = time.time() - t
    write_predictions(out / "predictions.jsonl", extractors["M-JAVE"], test_records, catalog)
    model = extractors["M-JAVE"].model
    ambiguous = next((r for r in test_records if " with " in r.text), test_records[0])
    example = featurize(model, [ambiguous], str(catalog), str(out / "features"))[0]
    write_gate_figure(out / "gates.png", model, example, catalog)
    timings["total"] = time.time() - t0

    table = format_comparison(reports)
    summary = {"config": to_dict(cfg), "test": {k: {t: v[t] for t in ("attribute", "value", "pair")}
                                                for k, v in reports.items()},
               "value_f1_gain": reports["M-JAVE"]["value"]["f1"] - reports["JAVE"]["value"]["f1"],
               "implicit": {k: implicit_summary(v) for k, v in reports.items() if "implicit" in v},
               "image_awareness": awareness, "timings_s": {k: round(v, 1) for k, v in timings.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return DemoResult(out, reports, awareness, timings, table)
