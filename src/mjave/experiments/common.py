"""What every experiment shares: model variants, training and scoring one, and the output files.

An experiment config composes a base `RunConfig` (data, encoders, training) with a list of
`ModelVariant`s, each a name plus dotted overrides of that base (`{"model.use_image": false}` is
JAVE). Every variant trains through `mjave.training.trainer.train` into
`<output_dir>/models/<variant>/...`, sharing one frozen-feature store, and is scored on the
evaluation file through its `Extractor` (as `mjave evaluate` scores: windows, category
restriction, decoding options) into `Predictions`, which give both the paper's micro F1
(`report`) and the per-instance F1 the significance tests need (`instance_scores`).

Each run writes `results.md`, `results.json` (numbers, the full config, the mjave version and the
seed), `config.yaml` (rerun with `mjave experiment NAME --config <output>/config.yaml`) and PNG
plots into its output folder. Library code here never prints; the CLI does.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
from PIL import Image

from mjave import __version__
from mjave.config import ConfigError, RunConfig, from_dict, save as save_config, set_values, to_dict, path_field
from mjave.data.formats import read_records, write_records
from mjave.data.records import Record
from mjave.evaluation.metrics import attributes_from_probs, pair_set
from mjave.experiments import upper_bound
from mjave.experiments.stats import instance_f1s, mean_std

log = logging.getLogger(__name__)

Progress = Callable[..., object]
TASKS = ("attribute", "value", "pair")

#: Table 3 baselines: display name -> architecture name in mjave.model.registry.
BASELINES: dict[str, str] = {
    "Sep-BERT": "sep-bert",
    "RNN-LSTM": "rnn-lstm",
    "Attn-BiRNN": "attn-birnn",
    "Slot-Gated": "slot-gated",
    "Joint-BERT": "joint-bert",
    "ScalingUp": "scalingup",
}


class ExperimentError(ConfigError):
    """A config the experiment cannot run (the CLI reports it as `error: ...`, exit 1)."""


class Unavailable(ExperimentError):
    """A model whose code is not installed (a baseline not registered yet): its row says so."""


@dataclass
class ModelVariant:
    """One row of a results table: a name plus dotted overrides of the base RunConfig.

    kind: "neural" trains with the trainer; "wsm" is the word-matching baseline
    (`mjave.model.baselines.wsm.WSM`, fit on the training records); "attr-upper-bound" is
    Table 5's upper bound of the attribute task (see `mjave.experiments.upper_bound`; its
    architecture is "mjave-attr-upper-bound" unless overridden with "...-presence").
    model_dir: a trained model folder to score instead of training one.
    """

    name: str = "M-JAVE"
    overrides: dict[str, Any] = field(default_factory=dict)
    kind: Literal["neural", "wsm", "attr-upper-bound"] = "neural"
    model_dir: str | None = path_field()


def model_variant(name: str, kind: Literal["neural", "wsm", "attr-upper-bound"] = "neural",
                  **model: Any) -> ModelVariant:
    """A variant overriding `ModelConfig` fields: `model_variant("JAVE", use_image=False)`."""
    return ModelVariant(name, {f"model.{k}": v for k, v in model.items()}, kind)


def mjave() -> ModelVariant:
    return ModelVariant("M-JAVE")


def jave() -> ModelVariant:
    return model_variant("JAVE", use_image=False)


def wsm() -> ModelVariant:
    return ModelVariant("WSM", kind="wsm")


def baseline(name: str) -> ModelVariant:
    """A Table 3 neural baseline: its architecture, text only."""
    return model_variant(name, architecture=BASELINES[name], use_image=False)


def registered_baselines() -> list[ModelVariant]:
    """The Table 3 baselines whose architectures are registered in this installation."""
    from mjave.model.registry import architectures
    known = set(architectures())
    return [baseline(n) for n, arch in BASELINES.items() if arch in known]


@dataclass
class ExperimentBase:
    """Fields every experiment config has. `base` is the run every model starts from: a mapping
    or the path of a run config (`base: ../runs/oamine.yaml`, a recipe). `seed` seeds every
    run (seed, seed + 1, ... for repeats) and all sampling (subsets, image permutations), so
    the file fully determines the run; left out, it is the base's `train.seed`. Both set and
    different is an error rather than one silently replacing the other."""

    output_dir: str = "runs/experiments/run"
    seed: int | None = None
    base: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        base_seed = self.base.train.seed
        if self.seed is None:
            self.seed = base_seed
        elif base_seed not in (0, self.seed):
            raise ExperimentError(f"seed {self.seed} and base.train.seed {base_seed} disagree: "
                                  "set one of them")


# --------------------------------------------------------------------------------------------
# Configs


def apply_mapping(cfg: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """`cfg` with a variant's dotted-key overrides set (`mjave.config.set_values`)."""
    try:
        return set_values(cfg, overrides)
    except ExperimentError:
        raise
    except ConfigError as e:
        raise ExperimentError(f"{e} in model overrides") from None


def slug(name: str) -> str:
    """A folder name for a variant name ("w/o KL loss" -> "w-o-kl-loss")."""
    return re.sub(r"[^a-z0-9._]+", "-", name.lower()).strip("-") or "model"


def run_config_for(base: RunConfig, variant: ModelVariant, out_dir: Path, seed: int,
                   tag: str = "") -> RunConfig:
    """The complete RunConfig of one variant: overrides, model folder, shared features, seed."""
    cfg = apply_mapping(base, variant.overrides)
    if variant.kind == "attr-upper-bound" and cfg.model.architecture not in upper_bound.ARCHITECTURES:
        cfg = replace(cfg, model=replace(cfg.model, architecture=upper_bound.ARCHITECTURE))
    folder = Path(out_dir) / "models" / slug(variant.name)
    if tag:
        folder = folder / tag
    features = cfg.features_dir or str(Path(out_dir) / "features")
    return replace(cfg, output_dir=str(folder), features_dir=features,
                   train=replace(cfg.train, seed=seed))


def uses_image(cfg: RunConfig) -> bool:
    """Whether a run of `cfg` reads images (`mjave.pretrained.uses_image`, the one rule)."""
    from mjave.pretrained import uses_image as model_uses_image
    return model_uses_image(cfg)


def eval_file(explicit: str | None, base: RunConfig) -> str:
    """The file scored: the explicit one, else base.data.test, else base.data.valid."""
    path = explicit or base.data.test or base.data.valid
    if not path:
        raise ExperimentError("nothing to evaluate on: set eval_data, base.data.test or "
                              "base.data.valid")
    return path


def read_data(path: str, base: RunConfig) -> list[Record]:
    records, issues = read_records(path, format=base.data.format, strict=not base.data.lenient,
                                   labelled=True)
    if issues.skipped:
        log.warning("%s: %s", path, issues.summary())
    if not records:
        raise ExperimentError(f"{path}: no records")
    return records


def write_data(records: Sequence[Record], path: Path, base: RunConfig) -> str:
    """Write a derived data file (subset, category filter) in the format the base reads."""
    write_records(records, path, format=base.data.format)
    return str(path)


# --------------------------------------------------------------------------------------------
# Predictions and their scores


@dataclass
class Predictions:
    """Gold and predicted records of one evaluation, aligned by position.

    Predicted attribute sets come from the classifier's probabilities when given (M-JAVE's
    attribute head), otherwise from the predicted spans (WSM). `given` names tasks whose
    "predictions" are the gold answers (the upper-bound rows of Table 5). `seen`: the
    (attribute, value) pairs of the training data, for the report's "recall_by_novelty".
    """

    gold: list[Record]
    pred: list[Record]
    attr_probs: np.ndarray | None = None
    attributes: list[str] | None = None
    threshold: float = 0.5
    given: tuple[str, ...] = ()
    seen: frozenset[tuple[str, str]] | None = None

    def report(self) -> dict:
        """The metrics report, partial labels scored as `mjave evaluate` scores them."""
        from mjave.training.evaluate import report_of
        return report_of(self.gold, self.pred, self.attr_probs, self.attributes, self.threshold,
                         self.seen)

    def attribute_sets(self) -> list[set[str]]:
        if self.attr_probs is not None:
            return attributes_from_probs(self.attr_probs, self.attributes or [], self.threshold)
        return [set(r.attributes()) for r in self.pred]

    def instance_scores(self) -> dict[str, np.ndarray]:
        """Per-text F1 (0..1) of attributes, value spans and (attribute, value) pairs."""
        return {
            "attribute": instance_f1s([set(r.attributes()) for r in self.gold],
                                      self.attribute_sets()),
            "value": instance_f1s([[s.key() for s in r.spans] for r in self.gold],
                                  [[s.key() for s in r.spans] for r in self.pred]),
            "pair": instance_f1s([pair_set(r.spans) for r in self.gold],
                                 [pair_set(r.spans) for r in self.pred]),
        }

    def with_gold_values(self) -> "Predictions":
        """The gold spans as value predictions (upper bound of the attribute task)."""
        pred = [replace(p, spans=list(g.spans)) for g, p in zip(self.gold, self.pred)]
        return replace(self, pred=pred, given=self.given + ("value", "pair"))

    def with_gold_attributes(self) -> "Predictions":
        """The gold attribute sets as attribute predictions (upper bound of the value task)."""
        names = sorted({a for r in self.gold for a in r.attributes()})
        col = {a: j for j, a in enumerate(names)}
        probs = np.zeros((len(self.gold), len(names)), dtype=np.float32)
        for i, r in enumerate(self.gold):
            for a in r.attributes():
                probs[i, col[a]] = 1.0
        return replace(self, attr_probs=probs, attributes=names, threshold=0.5,
                       given=self.given + ("attribute",))


def f1s(report: Mapping[str, Any]) -> dict[str, float]:
    """The three F1 scores (percent) of an evaluate_records report."""
    return {t: float(report[t]["f1"]) for t in TASKS}


# --------------------------------------------------------------------------------------------
# Training and scoring one variant


def _wsm_class() -> type:
    try:
        from mjave.model.baselines.wsm import WSM
    except ModuleNotFoundError as e:
        raise Unavailable(f"WSM is not installed ({e.name} missing)") from None
    return WSM


@dataclass
class TrainedModel:
    """A trained variant, ready to predict; loads its model folder (as an Extractor) lazily."""

    variant: ModelVariant
    config: RunConfig
    folder: Path | None = None
    seconds: float = 0.0
    best_epoch: int | None = None
    wsm: Any = None
    _extractor: Any = None

    @property
    def extractor(self):
        """The folder's `Extractor` (None for WSM), loaded as `mjave evaluate` loads it."""
        if self.wsm is not None:
            return None
        if self._extractor is None:
            from mjave.inference.extractor import Extractor
            from mjave.training.evaluate import EVAL_BATCH_SIZE
            self._extractor = Extractor.load(self.folder, device=self.config.train.device,
                                             batch_size=EVAL_BATCH_SIZE)
        return self._extractor

    @property
    def loaded(self):
        """The `LoadedModel` of the folder (None for WSM)."""
        return None if self.wsm is not None else self.extractor.model

    @property
    def uses_image(self) -> bool:
        return self.wsm is None and self.loaded.uses_image

    def items(self, records: Sequence[Record], image_root: str | None = None) -> list[dict]:
        """The Extractor items of `records` (text, image, category), as `mjave evaluate` builds
        them."""
        from mjave.training.evaluate import extractor_items
        return extractor_items(self.extractor, records, image_root or self.config.data.image_root)

    def examples(self, records: Sequence[Record], image_root: str | None = None,
                 features_dir: str | None = None) -> list:
        """Examples of `records` under this model's encoders (features cached in the store)."""
        from mjave.training.evaluate import featurize
        return featurize(self.loaded, records, image_root or self.config.data.image_root,
                         features_dir or self.config.features_dir)

    def predict(self, records: Sequence[Record], image_root: str | None = None,
                features_dir: str | None = None, examples: Sequence | None = None,
                items: Sequence[dict] | None = None) -> Predictions:
        """Predict `records` through the Extractor, exactly as `mjave evaluate` scores them
        (long texts windowed, the category restriction and decoding options of the model).

        `items`: the Extractor items of `records` when the caller changed them (e.g. shuffled
        images, `mjave.training.evaluate.shuffle_item_images`). Cached-feature `examples` of them
        (the gate figures read the model's internals on them) are predicted as given;
        a model conditioned on gold attributes (Table 5's value-task bound) is always scored
        on cached examples, since it reads the gold labels no Extractor input carries."""
        if self.wsm is not None:
            return Predictions(list(records), list(self.wsm.predict(list(records))))
        model = self.loaded
        oracle = model.config.model.gold_attr_conditioning
        if examples is None and not oracle:
            from mjave.training.evaluate import extractor_predictions
            pred, probs = extractor_predictions(self.extractor, records,
                                                image_root or self.config.data.image_root,
                                                items=items)
            out = Predictions(list(records), pred, probs, self.extractor.attributes,
                              self.extractor.threshold)
        else:
            from mjave.inference.predict import as_records, decode_options, predict_examples
            if examples is None:
                examples = self.examples(records, image_root, features_dir)
            tc = model.config.train
            decoded, probs = predict_examples(model.net, examples, model.schema,
                                              tc.eval_batch_size, model.device, tc.threshold,
                                              model.aligner.pad_id,
                                              **decode_options(model.config.model))
            out = Predictions(list(records), as_records(examples, decoded), probs,
                              list(model.schema.attributes), tc.threshold)
        if self.variant.kind == "attr-upper-bound":
            out = out.with_gold_values()
        if oracle:
            out = out.with_gold_attributes()
        return out


DECODING_FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("decoding", "min_span_score", "max_values_per_attribute", "restrict_to_category"),
    "train": ("threshold", "eval_batch_size"),
}
"""Config fields only the decoder and the scorer read: training reads them just to score the
valid split each epoch (early stopping), so without a valid split they do not change weights.
Except `model.decoding="crf"`, which trains a CRF: to or from it, the weights differ."""


def _without_decoding(d: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(d)
    for section, names in DECODING_FIELDS.items():
        if isinstance(out.get(section), Mapping):
            kept = {k: v for k, v in out[section].items() if k not in names}
            if section == "model":
                kept["crf"] = out[section].get("decoding") == "crf"
            out[section] = kept
    return out


def _guard(folder: Path, cfg: RunConfig) -> None:
    """A model folder is resumed by the trainer; refuse one that was trained from another config
    (a rerun with a changed config file must not silently reuse old weights). The stored config
    is read back through `RunConfig`, so a field added to mjave later, at its default, is no
    difference. A run without a valid split may differ in `DECODING_FIELDS` alone: its weights
    are reused and scored with the new decoding (a decoding option is tuned without retraining),
    and the folder's configs are updated to say so."""
    path = folder / "experiment-run.json"
    want = json.loads(json.dumps(to_dict(cfg)))
    if path.exists():
        have = json.loads(path.read_text(encoding="utf-8"))
        try:
            have = json.loads(json.dumps(to_dict(from_dict(RunConfig, have))))
        except ConfigError:
            pass  # not a config this mjave reads: compare as stored, which reports the fields
        if have != want and not cfg.data.valid and _without_decoding(have) == _without_decoding(want):
            changed = [f"{section}.{k}" for section, names in DECODING_FIELDS.items()
                       for k in names if have.get(section, {}).get(k) != want[section][k]]
            log.info("%s: only decoding differs (%s): reusing the trained weights", folder,
                     ", ".join(changed))
            path.write_text(json.dumps(want, indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
            return
        if have != want:
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            raise ExperimentError(f"{folder} holds a model trained with another config "
                                  f"(differs in {', '.join(diff)}); use another --output or "
                                  "delete that folder")
        return
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(want, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def train_variant(base: RunConfig, variant: ModelVariant, out_dir: str | Path, seed: int,
                  progress: Progress | None = None, tag: str = "") -> TrainedModel:
    """Train (or resume, or reuse `variant.model_dir`) one variant on `base.data.train`.

    Raises `Unavailable` when the variant's code is not installed.
    """
    cfg = run_config_for(base, variant, Path(out_dir), seed, tag)
    if not cfg.data.train:
        raise ExperimentError("base.data.train is empty: nothing to train on")
    if variant.kind == "wsm":
        cls = _wsm_class()
        start = time.time()
        records = read_data(cfg.data.train, cfg)
        model = cls()
        fitted = model.fit(records)
        return TrainedModel(variant, cfg, None, time.time() - start,
                            wsm=fitted if fitted is not None else model)
    if variant.model_dir:
        return TrainedModel(variant, cfg, Path(variant.model_dir))
    from mjave.model.registry import architectures
    if cfg.model.architecture not in architectures():
        raise Unavailable(f"architecture {cfg.model.architecture!r} is not registered")
    from mjave.training.trainer import train
    folder = Path(cfg.output_dir)
    _guard(folder, cfg)
    result = train(cfg, progress=progress)
    return TrainedModel(variant, cfg, result.output_dir, result.seconds, result.best_epoch)


@dataclass
class VariantRuns:
    """The scores of one variant over `repeats` seeds (or why it did not run)."""

    name: str
    reports: list[dict] = field(default_factory=list)
    predictions: list[Predictions] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epochs: list[int | None] = field(default_factory=list)
    uses_image: bool = False
    unavailable: str | None = None

    @property
    def given(self) -> tuple[str, ...]:
        return self.predictions[0].given if self.predictions else ()

    def f1(self, task: str) -> tuple[float, float]:
        return mean_std([r[task]["f1"] for r in self.reports])

    def summary(self) -> dict:
        if self.unavailable:
            return {"available": False, "reason": self.unavailable}
        out: dict[str, Any] = {"available": True, "uses_image": self.uses_image,
                               "given_gold": list(self.given), "runs": len(self.reports)}
        # the slot protocol (mjave.evaluation.slot) is reported beside the three tasks when the
        # reports carry it; it is no task of the significance tests
        slot = ("slot",) if self.reports and all("slot" in r for r in self.reports) else ()
        for t in (*TASKS, *slot):
            m, s = self.f1(t)
            out[t] = {"f1": m, "f1_std": s,
                      "p": mean_std([r[t]["p"] for r in self.reports])[0],
                      "r": mean_std([r[t]["r"] for r in self.reports])[0],
                      "f1_per_run": [r[t]["f1"] for r in self.reports]}
        if self.reports and all("recall_by_novelty" in r for r in self.reports):
            out["recall_by_novelty"] = novelty_summary([r["recall_by_novelty"]
                                                        for r in self.reports])
        out["train_seconds"] = [round(s, 1) for s in self.seconds]
        out["best_epochs"] = self.best_epochs
        return out


def seen_in_training(cfg: RunConfig, cache: dict[str, frozenset[tuple[str, str]] | None]
                     ) -> frozenset[tuple[str, str]] | None:
    """The (attribute, value) pairs of a run's training data (`training_values`), read once per
    file however many variants and seeds train on it; None when it cannot be read."""
    from mjave.training.evaluate import training_values
    if cfg.data.train not in cache:
        cache[cfg.data.train] = training_values(cfg)[0]
    return cache[cfg.data.train]


def novelty_summary(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± std over the runs of the recall on seen and on unseen gold values (percent, None
    when there is no such gold value), with the gold counts and unseen share of the first run
    (one evaluation and one training file: the same in every run)."""
    out: dict[str, Any] = {"unseen_share": entries[0]["unseen_share"]}
    for k in ("seen", "unseen"):
        per_run = [e[k]["recall"] for e in entries]
        m, s = mean_std(per_run) if None not in per_run else (None, None)
        out[k] = {"gold": entries[0][k]["gold"], "recall": m, "recall_std": s,
                  "recall_per_run": per_run}
    return out


def run_variants(base: RunConfig, variants: Sequence[ModelVariant], records: Sequence[Record],
                 out_dir: Path, seed: int, repeats: int = 1,
                 progress: Progress | None = None) -> dict[str, VariantRuns]:
    """Train and score every variant `repeats` times (seeds seed, seed+1, ...)."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ExperimentError(f"model names must be unique, got {names}")
    if repeats < 1:
        raise ExperimentError(f"repeats must be at least 1, got {repeats}")
    out: dict[str, VariantRuns] = {}
    seen_cache: dict[str, frozenset[tuple[str, str]] | None] = {}
    for v in variants:
        runs = VariantRuns(v.name)
        for r in range(repeats):
            s = seed + r
            try:
                model = train_variant(base, v, out_dir, s, progress,
                                      tag=f"seed-{s}" if repeats > 1 else "")
            except Unavailable as e:
                runs.unavailable = str(e)
                log.warning("%s: not run (%s)", v.name, e)
                break
            preds = replace(model.predict(records),
                            seen=seen_in_training(model.config, seen_cache))
            runs.reports.append(preds.report())
            runs.predictions.append(preds)
            runs.seconds.append(model.seconds)
            runs.best_epochs.append(model.best_epoch)
            runs.uses_image = model.uses_image
        out[v.name] = runs
    return out


# --------------------------------------------------------------------------------------------
# Markdown and output files


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_ms(mean: float | None, std: float | None, n: int, digits: int = 2) -> str:
    """"mean ± std" when there are several runs, else the single value; "-" for none (every
    experiment's table cell of a score over seeds or repeats)."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def f1_cell(r: VariantRuns, task: str) -> str:
    """A variant's F1 of `task` over its runs, or "100.00 (gold)" where it is given the gold
    answer (the upper-bound rows)."""
    if task in r.given:
        return "100.00 (gold)"
    m, s = r.f1(task)
    return fmt_ms(m, s, len(r.reports))


def fmt_p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


_NUMERIC = re.compile(r"^([-+<]\s?)?\d|^-$|^$|^100\.00 \(gold\)$|^not available$")


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; columns of numbers right-aligned, text columns left-aligned."""
    def cell(x: str) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    def numeric(j: int) -> bool:
        return j > 0 and all(_NUMERIC.match(str(r[j]).strip()) for r in rows if j < len(r))
    align = ["---:" if numeric(j) else "---" for j in range(len(header))]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, non-finite floats to strings."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


@dataclass
class ExperimentResult:
    """What a run wrote: the Markdown (also printed by the CLI), the numbers, the files."""

    name: str
    output_dir: Path
    markdown: str
    results: dict
    files: list[Path] = field(default_factory=list)


def write_results(name: str, title: str, cfg: ExperimentBase, markdown: str, results: dict,
                  images: Mapping[str, Image.Image] | None = None, started: float | None = None,
                  notes: Sequence[str] = ()) -> ExperimentResult:
    """Write results.md, results.json, config.yaml and the plots into `cfg.output_dir`."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for fname, img in (images or {}).items():
        img.save(out / fname)
        files.append(out / fname)
    body = markdown.rstrip() + "\n"
    if notes:
        body += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if files:
        body += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in files) + "\n"
    footer = (f"\n_mjave {__version__}, experiment `{name}`, seed {cfg.seed}; config: "
              f"`config.yaml`._\n")
    (out / "results.md").write_text(f"# {title}\n\n{body}{footer}", encoding="utf-8")
    payload = {"experiment": name, "mjave_version": __version__, "seed": cfg.seed,
               "config": to_dict(cfg), "results": results, "notes": list(notes),
               "seconds": round(time.time() - started, 1) if started else None}
    (out / "results.json").write_text(
        json.dumps(_plain(payload), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    save_config(cfg, out / "config.yaml")
    files = [out / "results.md", out / "results.json", out / "config.yaml", *files]
    return ExperimentResult(name, out, body, _plain(results), files)
