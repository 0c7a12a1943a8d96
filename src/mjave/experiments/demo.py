"""`mjave demo`: the built-in synthetic catalog, JAVE vs M-JAVE, end to end on a laptop CPU.

Steps: generate the catalog -> extract frozen features once (MiniLM-L6 text, EfficientNet-Lite0
image) -> train JAVE (text only) and M-JAVE on the same features -> evaluate both on the test
split -> image awareness of M-JAVE (true vs shuffled images) -> predictions JSONL and a gate
heat-map PNG. Everything lands in one output folder with a `summary.json`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from mjave.config import to_dict
from mjave.data.formats import read_records
from mjave.data.synthetic import generate_catalog
from mjave.encoders.features import EncoderConfig
from mjave.evaluation.report import format_comparison
from mjave.experiments.visualise import save_gate_figure
from mjave.inference.loading import LoadedModel
from mjave.model.batches import collate
from mjave.model.config import ModelConfig
from mjave.training.config import DataConfig, RunConfig, TrainConfig
from mjave.training.evaluate import featurize, image_awareness, score
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


@dataclass
class DemoResult:
    output_dir: Path
    reports: dict[str, dict]
    awareness: dict
    timings: dict[str, float] = field(default_factory=dict)
    table: str = ""


def run_config(cfg: DemoConfig, name: str, catalog: Path, use_image: bool) -> RunConfig:
    out = Path(cfg.output_dir)
    return RunConfig(
        output_dir=str(out / "models" / name),
        features_dir=str(out / "features"),
        data=DataConfig(train=str(catalog / "train.jsonl"), valid=str(catalog / "valid.jsonl"),
                        image_root=str(catalog)),
        encoder=EncoderConfig(text_encoder=cfg.text_encoder, image_encoder=cfg.image_encoder),
        model=ModelConfig(use_image=use_image, attention_size=cfg.attention_size),
        train=TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                          patience=cfg.patience, seed=cfg.seed, device="cpu"))


def write_predictions(path: Path, model: LoadedModel, examples) -> None:
    from mjave.inference.predict import decode_options, predict_examples
    decoded, _ = predict_examples(model.net, examples, model.schema, device=model.device,
                                  pad_id=model.aligner.pad_id, **decode_options(model.config.model))
    with open(path, "w", encoding="utf-8") as f:
        for e, d in zip(examples, decoded):
            f.write(json.dumps({
                "id": e.record.id, "cid": e.record.cid, "text": e.record.text,
                "attributes": [{"name": n, "score": round(s, 4)} for n, s in d.attributes],
                "values": [{"attribute": s.attr, "value": s.value, "begin": s.begin, "end": s.end,
                            "score": round(sc, 4)} for s, sc in zip(d.spans, d.span_scores)],
                "gold": [{"attribute": s.attr, "value": s.value, "begin": s.begin, "end": s.end}
                         for s in e.record.spans]}, ensure_ascii=False) + "\n")


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


def run_demo(cfg: DemoConfig = DemoConfig(), progress: Callable | None = None) -> DemoResult:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.time()
    catalog = out / "catalog"
    generate_catalog(catalog, n_products=cfg.n_products, seed=cfg.seed)
    timings["generate"] = time.time() - t0

    reports, models, test_examples = {}, {}, {}
    test_records, _ = read_records(catalog / "test.jsonl")
    for name, use_image in (("JAVE", False), ("M-JAVE", True)):
        t = time.time()
        result = train(run_config(cfg, name, catalog, use_image), progress=progress)
        timings[f"train {name}"] = time.time() - t
        model = LoadedModel.load(result.output_dir, device="cpu")
        examples = featurize(model, test_records, str(catalog), str(out / "features"))
        reports[name] = score(model, test_records, examples)
        reports[name]["best_epoch"] = result.best_epoch
        models[name], test_examples[name] = model, examples

    t = time.time()
    awareness = image_awareness(models["M-JAVE"], test_records, test_examples["M-JAVE"],
                                permutations=cfg.awareness_permutations, seed=cfg.seed)
    timings["awareness"] = time.time() - t
    write_predictions(out / "predictions.jsonl", models["M-JAVE"], test_examples["M-JAVE"])
    ambiguous = next((e for e in test_examples["M-JAVE"] if " with " in e.record.text),
                     test_examples["M-JAVE"][0])
    write_gate_figure(out / "gates.png", models["M-JAVE"], ambiguous, catalog)
    timings["total"] = time.time() - t0

    table = format_comparison(reports)
    summary = {"config": to_dict(cfg), "test": {k: {t: v[t] for t in ("attribute", "value", "pair")}
                                                for k, v in reports.items()},
               "value_f1_gain": reports["M-JAVE"]["value"]["f1"] - reports["JAVE"]["value"]["f1"],
               "image_awareness": awareness, "timings_s": {k: round(v, 1) for k, v in timings.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return DemoResult(out, reports, awareness, timings, table)
