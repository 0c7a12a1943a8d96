"""The model card: a `README.md` that `mjave train` writes into every finished model folder.

A model folder is copied, shared and found again months later; what it is (encoder, data,
attributes, decoding settings, validation figures, versions) and how to load it should be
readable without mjave installed. The card is generated from what the folder and the run
already hold (config.json, encoder.json, versions.json, metrics.json, the history) plus the
dataset statistics of the training and validation files, and written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mjave import __version__
from mjave.config import RunConfig
from mjave.data.outputs import atomic_write
from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.data.stats import dataset_stats
from mjave.pretrained import (CARD, METRICS, TOKENIZER_DIR, read_encoder_record, read_json,
                              read_versions, uses_image)


@dataclass
class SplitSummary:
    """A data file the model saw: where it was and what it held."""

    name: str
    path: str
    records: int
    products: int
    spans: int
    attributes: int
    categories: int

    @classmethod
    def of(cls, name: str, path: str, records: Sequence[Record]) -> "SplitSummary":
        stats = dataset_stats(records)
        return cls(name, path, stats["instances"], stats["products"], stats["spans"],
                   len(stats["attributes"]), len(stats["categories"]))


@dataclass
class RunSummary:
    """What the trainer knows at the end that no file of the folder holds whole."""

    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    splits: list[SplitSummary] = field(default_factory=list)
    train_spans: dict[str, int] = field(default_factory=dict)  # attribute -> training spans


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table (pipes in cells escaped)."""
    def cell(v: Any) -> str:
        return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def encoder_lines(config: RunConfig, folder: Path) -> list[str]:
    enc = config.encoder
    record = read_encoder_record(folder)
    if enc.text_kind == "bilstm":
        how = "BiLSTM trained with the model (only the tokenizer comes from the encoder)"
    elif enc.trains_text_encoder:
        how = (f"fine-tuned (top {enc.layers_trained} layers)" if enc.caches_lower_layers
               else "fine-tuned (all layers)") + "; the trained weights are in model.safetensors"
    else:
        how = "frozen: prediction runs the installed encoder, which must be this one"
    lines = ["## Text encoder", "",
             *table(["setting", "value"], [
                 ["encoder.text_encoder", f"`{enc.text_encoder}`"],
                 ["content hash (config.json + weights)",
                  f"`{record['content_hash']}`" if record.get("content_hash") else "unknown"],
                 ["training", how],
                 ["encoder.fine_tune / train_layers", f"{enc.fine_tune} / {enc.train_layers}"],
                 ["encoder.max_length", enc.max_length],
                 ["char_level", enc.char_level]])]
    if record.get("install"):
        lines += ["", f"Install it where the model runs: `{record['install']}`."]
    lines += ["", f"The tokenizer files are in `{TOKENIZER_DIR}/`."]
    if uses_image(config):
        lines += ["", f"Image encoder: `{enc.image_encoder}` at {enc.image_size} px "
                  f"(weights: `{enc.image_weights or 'packaged'}`)"
                  + (f", each region's colour histogram appended ({enc.image_colour_bins} bins "
                     f"per channel, {enc.image_colour_bins ** 3} features: "
                     f"`encoder.image_colour_bins`)." if enc.image_colour_bins else ".")]
    else:
        lines += ["", "Text only: the model does not read the product image."]
    return lines


def data_lines(config: RunConfig, run: RunSummary, schema: AttributeSchema) -> list[str]:
    rows = [[s.name, f"`{s.path}`", s.records, s.products, s.spans, s.attributes, s.categories]
            for s in run.splits]
    lines = ["## Data", "",
             *table(["split", "file", "records", "products", "spans", "attributes",
                     "categories"], rows),
             "", f"## Attributes ({schema.num_attributes})", "",
             *table(["attribute", "training spans"],
                    [[a, run.train_spans.get(a, 0)] for a in schema.attributes])]
    if schema.categories:
        lines += ["", f"Categories seen in training: {len(schema.categories)} ("
                  + ", ".join(f"`{c}`" for c in list(schema.categories)[:20])
                  + (", ..." if len(schema.categories) > 20 else "") + ")."]
    return lines


def decoding_lines(config: RunConfig) -> list[str]:
    m = config.model
    return ["## Decoding", "",
            *table(["setting", "value"], [
                ["model.architecture", m.architecture],
                ["model.decoding", m.decoding],
                ["model.min_span_score", m.min_span_score],
                ["model.restrict_to_category", m.restrict_to_category],
                ["model.max_values_per_attribute", m.max_values_per_attribute],
                ["train.threshold (attribute probability)", config.train.threshold]])]


def figure(report: dict | None, key: str) -> str:
    part = (report or {}).get(key) or {}
    if "f1" not in part:
        return "n/a"
    return f"{part['f1']:.2f} (P {part.get('p', 'n/a')}, R {part.get('r', 'n/a')})"


def validation_lines(folder: Path, run: RunSummary) -> list[str]:
    path = folder / METRICS
    metrics = read_json(path) if path.is_file() else {}
    valid = metrics.get("valid")
    lines = ["## Validation", ""]
    if not valid:
        lines += [f"No validation file: the model of the last epoch ({run.best_epoch} of "
                  f"{run.epochs_run}) was kept."]
    else:
        scored = ("through the Extractor, as `mjave evaluate` scores it"
                  if metrics.get("valid_scored_by") == "extractor" else "on cached features")
        lines += [f"Best epoch {run.best_epoch} of {run.epochs_run} (by valid value F1), "
                  f"scored {scored}:", "",
                  *table(["F1 (%)", "valid"], [[k, figure(valid, k)]
                                               for k in ("attribute", "value", "pair")])]
    if run.history:
        keys = [k for k in ("loss", "valid_attribute_f1", "valid_value_f1", "valid_pair_f1")
                if any(k in r for r in run.history)]
        rows = [[r.get("epoch"), *(round(r[k], 4) if isinstance(r.get(k), float) else r.get(k)
                                   for k in keys)] for r in run.history]
        lines += ["", "Per epoch (`history.jsonl`):", "", *table(["epoch", *keys], rows)]
    return lines


def usage_lines(folder: Path, config: RunConfig) -> list[str]:
    name = folder.name
    category = ', category="shirts"' if config.model.restrict_to_category else ""
    image = ', image="images/p1.jpg"' if uses_image(config) else ""
    return ["## Use it", "", "```bash",
            f"mjave predict {name} items.jsonl -o predictions.jsonl   # JSONL, CSV, Parquet, TSV",
            f"mjave serve {name}                                      # HTTP API and try page",
            f"mjave evaluate {name} test.jsonl", "```", "", "```python",
            "from mjave import Extractor", "",
            f'extractor = Extractor.load("{name}")',
            f'result = extractor.predict("red cotton shirt, slim fit"{image}{category})',
            'print(result["values"])', "```"]


def render_card(folder: str | Path, config: RunConfig, schema: AttributeSchema,
                run: RunSummary) -> str:
    """The card's Markdown for the finished model folder `folder`."""
    folder = Path(folder)
    trained = read_versions(folder)
    versions = ", ".join(f"{k} {v}" for k, v in trained.items()) or f"mjave {__version__}"
    tc = config.train
    head = [f"# {folder.name}", "",
            f"An mjave attribute-value extraction model (`{config.model.architecture}`, "
            f"{'text and image' if uses_image(config) else 'text only'}) extracting "
            f"{schema.num_attributes} attributes, trained with mjave "
            f"{trained.get('mjave', __version__)}. Generated by `mjave train`; "
            "`config.json` holds the whole run config."]
    training = ["## Training", "",
                f"{run.epochs_run} epochs run of at most {tc.epochs} (patience {tc.patience}), "
                f"batch {tc.batch_size}, lr {tc.lr}, optimizer {tc.optimizer}, scheduler "
                f"{tc.scheduler}, seed {tc.seed}."]
    files = ["## Files", "",
             "`model.safetensors` (weights), `config.json` (run config), `schema.json` "
             "(attributes, tags, categories), `encoder.json` (text encoder and its hash), "
             f"`{TOKENIZER_DIR}/`, `metrics.json`, `history.jsonl`, `versions.json`, "
             "this `README.md`."]
    parts = [head, usage_lines(folder, config), encoder_lines(config, folder),
             data_lines(config, run, schema), decoding_lines(config),
             validation_lines(folder, run), training, files,
             ["## Versions", "", versions]]
    return "\n".join(line for part in parts for line in [*part, ""]).rstrip() + "\n"


def write_model_card(folder: str | Path, config: RunConfig, schema: AttributeSchema,
                     run: RunSummary) -> Path:
    """Write `README.md` into the model folder (atomically) and return its path."""
    path = Path(folder) / CARD
    with atomic_write(path) as f:
        f.write(render_card(folder, config, schema, run))
    return path


__all__ = ["RunSummary", "SplitSummary", "render_card", "table", "write_model_card"]
