"""The trainer: seeded, resumable after a kill, early stopping on validation value F1.

Reproducibility: batches are shuffled by a generator seeded with (seed, epoch), and the global
RNG (dropout) is saved in every checkpoint, so an interrupted run that resumes produces the same
weights as one that never stopped (on CPU).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from mjave.config import ConfigError
from mjave.data.augment import mention_replacement
from mjave.data.closed_values import infer_closed_values
from mjave.data.errors import RowIssues
from mjave.data.formats import read_records
from mjave.data.lexicon import ValueLexicon
from mjave.data.outputs import check_not_input
from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import TextAligner
from mjave.inference.examples import build_examples
from mjave.inference.predict import as_records, decode_options, predict_examples
from mjave.logs import default_progress
from mjave.model.batches import Example, batches, collate
from mjave.model.network import TextImageModel, supports_partial_labels
from mjave.training import distributed
from mjave.pretrained import (METRICS, build_network, make_aligner, make_tokenizer, read_config,
                              read_json, resolve_device, save_encoder_files, save_model,
                              text_in_loop, write_config, write_json)
from mjave.training.checkpoint import (has_checkpoint, load_checkpoint, remove_checkpoint,
                                       save_checkpoint)
from mjave.training.distill import CACHE_DIR, Distiller, make_distiller, unlabelled_records
from mjave.training.model_card import RunSummary, SplitSummary, write_model_card
from mjave.training.partial_tables import category_absent_examples, outside_weight
from mjave.config import RunConfig, TrainConfig
from mjave.training.evaluate import final_figure, report_of
from mjave.training.resident import ResidentData, compile_with_fallback, resident_batches
from mjave.training.warm_start import warm_start

log = logging.getLogger(__name__)

Progress = Callable[..., object]  # a tqdm-like factory: progress(iterable, total=, desc=)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Split:
    records: list[Record]
    examples: list[Example]
    issues: RowIssues


@dataclass
class TrainResult:
    output_dir: Path
    best_epoch: int
    best_valid: dict | None   # finished: the best model through the Extractor (final_figure)
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    resumed_from: int | None = None
    seconds: float = 0.0
    partial_labels: bool = False   # whether the partial-label losses were used


def load_split(path: str, config: RunConfig) -> tuple[list[Record], RowIssues]:
    records, issues = read_records(path, format=config.data.format, strict=not config.data.lenient,
                                   labelled=True)
    if issues.skipped:
        log.warning("%s: %s", path, issues.summary())
    return records, issues


def with_closed_values(schema: AttributeSchema, records: Sequence[Record],
                       config: RunConfig) -> AttributeSchema:
    """`schema` with the closed-vocabulary attributes the implicit head names
    (`model.implicit_values`): declared, or inferred from the training records."""
    m = config.model
    closed = infer_closed_values(records, m.implicit_attributes, m.implicit_max_values)
    if not closed:
        raise ConfigError(f"model.implicit_values: {config.data.train} has no closed-vocabulary "
                          f"attribute (at most {m.implicit_max_values} values; `mjave data "
                          "stats` shows why each falls short); declare some in "
                          "model.implicit_attributes")
    log.info("implicit values: %s", ", ".join(f"{a} ({len(v)})" for a, v in closed.items()))
    return replace(schema, closed_values=closed)


def augmented(records: list[Record], config: RunConfig) -> list[Record]:
    """The mention-replacement copies `train.augment_mentions` asks for (none when 0)."""
    tc = config.train
    if tc.augment_mentions == 0.0:
        return []
    if config.model.use_image:
        raise ConfigError("train.augment_mentions swaps values in the text, which then no longer "
                          "match the product image: use it with model.use_image: false")
    # TrainConfig has checked both ranges: mention_replacement's own ValueError cannot happen
    extra, stats = mention_replacement(records, tc.augment_mentions, tc.augment_copies,
                                       seed=tc.seed)
    log.info("mention replacement: %d copies, %d values swapped (not copied: %d with "
             "overlapping spans, %d unlabelled)", stats.copies, stats.swapped,
             stats.skipped_overlapping, stats.skipped_unlabelled)
    return extra


def _optimizer(net: TextImageModel, config: RunConfig) -> torch.optim.Optimizer:
    tc = config.train
    groups = [{"params": [p for p in net.head.parameters() if p.requires_grad], "lr": tc.lr}]
    if net.text_encoder is not None:
        params = [p for p in net.text_encoder.parameters() if p.requires_grad]
        lr = tc.lr if config.encoder.text_kind == "bilstm" else tc.encoder_lr
        groups.append({"params": params, "lr": lr})
    cls = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=tc.lr, weight_decay=tc.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, config: RunConfig,
               steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Constant (the paper), or linear warm-up then linear decay to zero, which fine-tuning a
    pretrained encoder usually needs. A function of the step alone, so resuming is exact."""
    tc = config.train
    total = max(1, tc.epochs * steps_per_epoch)
    warmup = int(tc.warmup_ratio * total)

    def factor(step: int) -> float:
        if tc.scheduler == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate_split(net: TextImageModel, split: Split, schema: AttributeSchema, config: RunConfig,
                   device: torch.device, pad_id: int) -> dict:
    """The full metrics report (attribute, value, pair F1 and breakdowns) on one split.

    Partially labelled records (`known_attributes`) are scored on their known attributes only
    (`known_attributes_only`)."""
    decoded, probs = predict_examples(net, split.examples, schema, config.train.eval_batch_size,
                                      device, config.train.threshold, pad_id,
                                      **decode_options(config.model))
    return report_of(split.records, as_records(split.examples, decoded), probs,
                     schema.attributes, config.train.threshold, closed=schema.closed_values)


def resolve_partial_labels(requested: bool | None, records: Sequence[Record],
                           net: TextImageModel | None = None) -> bool:
    """`train.partial_labels` made definite: None -> on when some training record carries
    `known_attributes`. Logs the mode; ConfigError when it is on and the architecture's forward
    does not take the partial-label mask."""
    n = sum(r.known_attributes() is not None for r in records)
    partial = n > 0 if requested is None else bool(requested)
    how = "auto" if requested is None else f"train.partial_labels={str(requested).lower()}"
    counts = f"{n} of {len(records)} training records carry known_attributes"
    if partial:
        if n == 0:
            log.warning("train.partial_labels=true, but %s: every record is fully labelled and "
                        "the losses are the ordinary ones", counts)
        log.info("partial-label training: on (%s; %s)", how, counts)
        if net is not None and not supports_partial_labels(net.head):
            arch = getattr(getattr(net.head, "cfg", None), "architecture", type(net.head).__name__)
            raise ConfigError(f"model.architecture={arch} does not support partial-label "
                              f"training ({counts}); set train.partial_labels=false to train it "
                              "naively (unlabelled tokens as O, unknown attributes as negatives)")
    elif n:
        log.info("partial-label training: off, naive (%s; %s): unlabelled tokens are trained as O "
                 "and attributes the records do not know as negatives", how, counts)
    else:
        log.info("partial-label training: off (%s)", counts)
    return partial


def train(config: RunConfig, progress: Progress | None = None,
          stop_after_epochs: int | None = None) -> TrainResult:
    """Train the model `config` describes into `config.output_dir` (resuming if a checkpoint is
    there). `stop_after_epochs` ends this call early, as a kill would (used by tests). Started by
    torchrun with several processes, it trains data-parallel (`mjave.training.distributed`)."""
    with distributed.process_group(resolve_device(config.train.device)):
        return _train(config, progress, stop_after_epochs)


def _train(config: RunConfig, progress: Progress | None,
           stop_after_epochs: int | None) -> TrainResult:
    """The run in its steps: set up (data, network, features), resume (optimizer, schedule,
    checkpoint), the epochs, and the finished folder."""
    start = time.time()
    out = Path(config.output_dir)
    check_not_input(out, [config.data.train, config.data.valid, config.data.test], "output_dir")
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.train.seed)
    device = distributed.local_device(resolve_device(config.train.device))
    # without a bar of its own, the one `mjave.enable_logging()` set (none unless called)
    progress = default_progress(progress) if distributed.is_main() else None
    done = finished_run(out, start)
    if done is not None:
        return done
    run = set_up(config, out, device, progress)
    optimization, state = resume(run)
    resumed_from = state["epoch"] or None
    state = run_epochs(run, optimization, state, stop_after_epochs)
    return wrap_up(run, state, resumed_from, time.time() - start)


@dataclass
class Run:
    """What every step of a set-up run reads."""

    config: RunConfig          # as written to config.json: the model's config, partial mode
    out: Path
    device: torch.device
    progress: Progress | None  # None on every rank but the main one
    schema: AttributeSchema
    net: TextImageModel        # unwrapped (`run_epochs` wraps it for DDP)
    pad_id: int
    partial: bool              # whether the partial-label losses are used
    table_records: list[Record]  # the training table's own products, before augmentation
    train_split: Split
    valid_split: Split | None
    unlabelled: list[Example] = field(default_factory=list)  # train.distill_unlabelled
    distill: Distiller | None = None   # train.distill_from
    lexicon: ValueLexicon | None = None   # model.value_knowledge: the training table's values

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train_split.examples) // self.config.train.batch_size)


@dataclass
class Optimization:
    """The optimizer and its learning-rate schedule, stepped together once per batch."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


def set_up(config: RunConfig, out: Path, device: torch.device,
           progress: Progress | None) -> Run:
    """Read the training data, build the network, and featurize the splits; the main process
    then writes config.json and the encoder files. The order is the one resuming relies on:
    building the network draws its initial weights from the seeded RNG."""
    train_records, train_issues = load_split(config.data.train, config)
    schema = AttributeSchema.from_records(train_records)
    if schema.num_attributes == 0:
        raise ValueError(f"{config.data.train}: no labelled spans, nothing to learn")
    if config.model.implicit_values:
        schema = with_closed_values(schema, train_records, config)
    table_records = train_records
    train_records = train_records + augmented(train_records, config)
    tokenizer = make_tokenizer(config.encoder)
    aligner = make_aligner(config.encoder, schema, tokenizer)
    net, model_cfg = build_network(config, schema, tokenizer)
    tc = config.train
    partial = resolve_partial_labels(tc.partial_labels, train_records, net)
    # config.json records the mode and the outside weight used, not "auto" or "from the table".
    config = replace(config, model=model_cfg, train=replace(
        tc, partial_labels=partial,
        partial_outside_weight=outside_weight(tc, table_records, partial)))
    if tc.init_from and not has_checkpoint(out):  # resuming: the checkpoint's weights rule
        warm_start(net, config, schema, tc.init_from)
    net.to(device)
    run = Run(config, out, device, progress, schema, net, aligner.pad_id, partial,
              table_records, Split(train_records, [], train_issues), None)
    if config.model.value_knowledge:
        run.lexicon = ValueLexicon.from_records(table_records)
        log.info("value knowledge: %d known values of %d attributes", len(run.lexicon),
                 len(run.lexicon.counts))
    featurize_splits(run, aligner)
    # After the student's initial weights and before `resume` reseeds: loading the teacher
    # draws random numbers that do not matter then.
    run.distill = make_distiller(config, schema, run.train_split.examples, run.unlabelled,
                                 Path(feature_store(run)) / CACHE_DIR, aligner.pad_id, device)
    if distributed.is_main():
        write_config(out, config)
        save_encoder_files(out, config.encoder)
        if run.lexicon is not None:
            run.lexicon.save(out)
    return run


def featurize_splits(run: Run, aligner: TextAligner) -> None:
    """Fill in the examples of `run`'s training split (category-absent attributes applied) and
    read the validation split, both through the feature store."""
    config = run.config
    store_dir = feature_store(run)
    # Top-layer fine-tuning (encoder.train_layers: K): the frozen layers below run once per text,
    # here, with the network's own encoder; every step then runs the top K layers on them.
    lower = config.encoder.caches_lower_layers
    featurize = dict(aligner=aligner, schema=run.schema, encoder=config.encoder,
                     store_dir=store_dir, image_root=config.data.image_root,
                     text_features=not text_in_loop(config.encoder) or lower,
                     image_features=config.model.use_image, progress=run.progress,
                     text_encoder=run.net.text_encoder if lower else None,
                     lexicon=run.lexicon)
    train_split = run.train_split
    with distributed.main_first():  # the feature store takes one writer at a time
        draw = (config.model.value_knowledge_drop, config.train.seed)
        train_split.examples = build_examples(train_split.records, issues=train_split.issues,
                                              lexicon_draw=draw, **featurize)
        train_split.examples = category_absent_examples(train_split.examples, run.table_records,
                                                        run.schema, config.train, run.partial)
        if config.data.valid:
            recs, iss = load_split(config.data.valid, config)
            run.valid_split = Split(recs, build_examples(recs, issues=iss, **featurize), iss)
            n_partial = sum(r.known_attributes() is not None for r in recs)
            if n_partial:
                log.info("valid: %d of %d records are partially labelled; they are scored on "
                         "their known attributes only", n_partial, len(recs))
        extra = unlabelled_records(config)
        if extra:
            run.unlabelled = build_examples(extra, **featurize)
    for name, split in (("train", train_split), ("valid", run.valid_split)):
        if split is not None and split.issues.summary():
            log.info("%s: %s", name, split.issues.summary())


def feature_store(run: Run) -> str:
    """The feature store's folder (teacher outputs are cached beside the features too)."""
    return run.config.features_dir or str(run.out / "features")


def resume(run: Run) -> tuple[Optimization, dict]:
    """The optimizer and learning-rate schedule, and the state to go on from: the checkpoint's
    (weights, optimizer, RNG, the schedule fast-forwarded to its step) or a fresh one."""
    optimizer = _optimizer(run.net, run.config)
    # Feature extraction may or may not have run (and drawn random numbers, e.g. while building
    # an encoder) depending on what the store already held: reseed so dropout does not care.
    torch.manual_seed(run.config.train.seed + 1)
    state = load_checkpoint(run.out, run.net, optimizer) or {
        "epoch": 0, "best_epoch": 0, "best_f1": -1.0, "best_valid": None, "history": [],
        "bad_epochs": 0}
    distributed.check_same(state["epoch"], "the epoch to resume after (put output_dir on a "
                           "filesystem every machine sees)")
    scheduler = _scheduler(optimizer, run.config, run.steps_per_epoch)
    if state["epoch"]:
        with warnings.catch_warnings():  # stepping the schedule alone is the point here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(state["epoch"] * run.steps_per_epoch):  # to the resumed step
                scheduler.step()
        log.info("resuming %s after epoch %d", run.out, state["epoch"])
    return Optimization(optimizer, scheduler), state


def run_epochs(run: Run, opt: Optimization, state: dict,
               stop_after_epochs: int | None) -> dict:
    """Epochs until `train.epochs` or `train.patience` ends the run (or `stop_after_epochs` this
    call); the main process evaluates and checkpoints each, and every rank goes on with its
    state, so early stopping is the same everywhere."""
    tc = run.config.train
    model = distributed.wrap(run.net, run.device)  # net itself in a single process
    resident = _resident_data(run.train_split.examples, tc.resident, run.pad_id, run.device)
    forward = _forward_fn(model, tc)
    epochs_this_call = 0
    while state["epoch"] < tc.epochs and state["bad_epochs"] < tc.patience:
        epoch = state["epoch"] + 1
        row = {"epoch": epoch, "loss": train_epoch(run, opt, forward, resident, epoch)}
        if distributed.is_main():
            _end_epoch(run, opt.optimizer, state, row)
        state = distributed.broadcast_object(state)
        epochs_this_call += 1
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            break
    return state


def train_epoch(run: Run, opt: Optimization, forward: Callable[[dict[str, torch.Tensor]], object],
                resident: ResidentData | None, epoch: int) -> float:
    """One pass over the training examples in the order seeded by (seed, epoch), dropout seeded
    likewise; the mean loss per step over all ranks."""
    tc = run.config.train
    run.net.train()
    distributed.seed_dropout(tc.seed, epoch)
    g = torch.Generator().manual_seed(tc.seed * 100_003 + epoch)
    distill = run.distill
    source = _epoch_batches(run.train_split.examples, resident, tc.batch_size, g, run.pad_id,
                            run.device, with_index=distill is not None)
    it = run.progress(source, total=run.steps_per_epoch, desc=f"epoch {epoch}/{tc.epochs}") \
        if run.progress else source
    unlabelled = distill.unlabelled_batches(epoch) if distill is not None else None
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    for batch, counts in it:
        if not run.partial:
            batch.pop("attr_known", None)  # naive: the ordinary losses on partial records
        extra = next(unlabelled) if unlabelled is not None else None
        with _autocast(run.device, tc.bf16):
            output = forward(batch)
            extra_output = forward(extra) if extra is not None else None
        loss, batch_loss = distributed.batch_loss(output, batch, counts)
        if distill is not None:   # (1 - w) * gold + w * T^2 * soft (mjave.training.distill)
            loss = distill.mix(loss, output, batch, counts)
            if extra is not None:
                loss = loss + distill.unlabelled_loss(extra_output, extra)
            batch_loss = loss.detach() / distributed.world_size()
        opt.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.net.parameters(), tc.clip_norm)
        opt.optimizer.step()
        opt.scheduler.step()
        loss_sum += batch_loss.detach().double()   # read once an epoch: no per-step sync
    return float(distributed.sum_over_ranks([loss_sum.item()])[0] / run.steps_per_epoch)


def wrap_up(run: Run, state: dict, resumed_from: int | None, seconds: float) -> TrainResult:
    """The result of this call; a finished run also gets its final validation figure and its
    finished folder (on the main process)."""
    tc = run.config.train
    best_valid = state["best_valid"]
    finished = state["epoch"] >= tc.epochs or state["bad_epochs"] >= tc.patience
    if finished and distributed.is_main():
        if run.valid_split is not None:
            # The figure a run reports is the Extractor's, as `mjave evaluate` computes it
            # (long texts windowed, not truncated); per-epoch validation stays on cached
            # features.
            best_valid = final_figure(run.out, run.valid_split.records, run.config.data.image_root,
                                      state["best_epoch"], str(run.device)) or best_valid
        finish_folder(run.out, run.config, run.schema, state, run.table_records, run.valid_split)
    return TrainResult(run.out, state["best_epoch"], best_valid, state["history"],
                       state["epoch"], resumed_from, seconds, run.partial)


FINISHED = "finished"
"""The metrics.json entry of a finished run: its epochs run and best epoch."""


def finish_folder(out: Path, config: RunConfig, schema: AttributeSchema, state: dict,
                  train_records: Sequence[Record], valid_split: Split | None) -> None:
    """A finished run's last words in its model folder: mark it finished (a rerun then returns
    it as it is), write the model card, and remove the resume checkpoint unless
    `train.keep_checkpoint` (a finished model needs none, and it is three models' worth)."""
    path = out / METRICS
    metrics = read_json(path) if path.is_file() else {}
    metrics[FINISHED] = {"epochs_run": state["epoch"], "best_epoch": state["best_epoch"]}
    write_json(path, metrics)
    splits = [SplitSummary.of("train", config.data.train, train_records)]
    if valid_split is not None:
        splits.append(SplitSummary.of("valid", str(config.data.valid), valid_split.records))
    spans = Counter(s.attr for r in train_records for s in r.spans)
    write_model_card(out, config, schema, RunSummary(
        state["best_epoch"], state["epoch"], state["history"], splits, dict(spans)))
    if not config.train.keep_checkpoint:
        remove_checkpoint(out)


def finished_run(out: Path, start: float) -> TrainResult | None:
    """The result of a run that already finished in `out` and kept no checkpoint (None when
    there is something to resume or train): training it again from scratch would silently
    overwrite the model."""
    path = out / METRICS
    if has_checkpoint(out) or not path.is_file():
        return None
    metrics = read_json(path)
    done = metrics.get(FINISHED)
    if not done:
        return None
    log.info("%s holds a finished model (best epoch %d of %d) and no resume checkpoint "
             "(train.keep_checkpoint: false): nothing to train. Train into another output_dir, "
             "or delete this one to train it again", out, done["best_epoch"], done["epochs_run"])
    history_path = out / "history.jsonl"
    history = ([json.loads(line) for line in history_path.read_text(encoding="utf-8").splitlines()
                if line.strip()] if history_path.is_file() else [])
    partial = bool(read_config(out).train.partial_labels)
    return TrainResult(out, done["best_epoch"], metrics.get("valid"), history,
                       done["epochs_run"], done["epochs_run"], time.time() - start, partial)


def _resident_data(examples: Sequence[Example], requested: bool | None, pad_id: int,
                   device: torch.device) -> ResidentData | None:
    """`train.resident` made definite (None: on for CUDA in a single process) and applied. Under
    torchrun each rank collates its own share of every batch instead."""
    on = device.type == "cuda" if requested is None else bool(requested)
    if on and distributed.enabled():
        log.info("train.resident: off under torchrun (each rank collates its share)")
        return None
    if not on:
        return None
    data = ResidentData.from_examples(examples, pad_id, device)
    log.info("train.resident: %d examples on %s (%.1f MB)", len(data), device,
             data.nbytes() / 2**20)
    return data


def _epoch_batches(examples: Sequence[Example], resident: ResidentData | None, batch_size: int,
                   generator: torch.Generator, pad_id: int, device: torch.device,
                   with_index: bool = False) -> Iterator[tuple[dict[str, torch.Tensor], bool]]:
    """(batch, whether it counts) in the seeded order of `batches`: cut on the device from
    `resident`, or collated on the host (this rank's share under torchrun, `shard`). Both give
    the same tensors; `with_index` adds the examples' positions (`index`, for distillation)."""
    if resident is not None:
        for batch in resident_batches(resident, batch_size, generator=generator,
                                      with_index=with_index):
            yield batch, True
        return
    for chunk in batches(range(len(examples)), batch_size, generator=generator):
        part, counts = distributed.shard(chunk)  # the whole chunk in a single process
        batch = collate([examples[i] for i in part], pad_id=pad_id, device=device)
        if with_index:
            batch["index"] = torch.tensor(part, device=device)
        yield batch, counts


def _forward_fn(model: torch.nn.Module, tc: TrainConfig
                ) -> Callable[[dict[str, torch.Tensor]], object]:
    """The training forward with its partial-label weights; compiled when `train.compile`
    (falling back to eager, with a warning, where compiling fails)."""
    def forward(batch: dict[str, torch.Tensor]) -> object:
        return model(batch, unknown_attr_weight=tc.partial_attr_weight,
                     outside_weight=tc.partial_outside_weight)
    return compile_with_fallback(forward) if tc.compile else forward


def epoch_line(row: dict, epochs: int, best_epoch: int | None) -> str:
    """The per-epoch log line a person reads: rounded figures (F1 in percent, as the row holds
    them), the best epoch so far (the raw row stays in history.jsonl)."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}"]
    for key, name in (("valid_attribute_f1", "attribute"), ("valid_value_f1", "value"),
                      ("valid_pair_f1", "pair")):
        if key in row:
            parts.append(f"valid {name} F1 {row[key]:.2f}")
    if best_epoch is not None and "valid_value_f1" in row:
        parts.append(f"best epoch {best_epoch}")
    return ", ".join(parts)


def selection_metric(config: RunConfig) -> str:
    """The report key the best epoch is chosen on (`train.select_on`; "auto": "pair" for a
    model naming values without a span, whose head the span F1 does not see, else "value")."""
    choice = config.train.select_on
    if choice == "auto":
        return "pair" if config.model.implicit_values else "value"
    return choice


def _end_epoch(run: Run, optimizer: torch.optim.Optimizer, state: dict, row: dict) -> None:
    """Evaluate on valid, update `state` (best epoch, patience), and write the model when it
    improved, the history and the checkpoint."""
    epoch = row["epoch"]
    improved = True
    if run.valid_split is not None:
        report = evaluate_split(run.net, run.valid_split, run.schema, run.config, run.device,
                                run.pad_id)
        row.update(valid_attribute_f1=report["attribute"]["f1"],
                   valid_value_f1=report["value"]["f1"], valid_pair_f1=report["pair"]["f1"])
        f1 = report[selection_metric(run.config)]["f1"]
        improved = f1 > state["best_f1"]
        if improved:
            state.update(best_f1=f1, best_valid=report)
    if improved:
        state.update(best_epoch=epoch, bad_epochs=0)
        save_model(run.out, run.net, run.config, run.schema,
                   metrics={"epoch": epoch, "valid": state["best_valid"]})
    else:
        state["bad_epochs"] += 1
    state["epoch"] = epoch
    state["history"].append(row)
    (run.out / "history.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in state["history"]), encoding="utf-8")
    log.info("%s", epoch_line(row, run.config.train.epochs, state["best_epoch"]))
    save_checkpoint(run.out, run.net, optimizer, state)
