"""Knowledge distillation (`train.distill_from`): a trained teacher's soft targets for a student.

The teacher (e.g. the MPNet recipe) runs once per training text before training; its outputs are
cached on disk next to the feature store, keyed by the teacher's content and the texts, so a
resumed run (or another student on the same data) does not run it again.

Teacher and student tokenize differently (MPNet's WordPiece vs BERT's), so the targets travel by
character offsets: the teacher's tag distribution of a word sits on its first piece (the only
piece a tagger is trained on), and each word-starting student token takes the distribution of
the teacher word that covers its first character. Where that character is inside the teacher
word rather than at its start, the B- mass moves to I- (the token continues the value). Student
tokens no teacher word covers (special tokens, padding, text beyond the teacher's max_length)
get no soft loss.

The loss of a step is (1 - w) * gold + w * T^2 * soft, where soft is the token-mean KL of the
tag distributions at temperature T plus `model.attr_loss_weight` times the attribute BCE
against the teacher's probabilities at T (summed over attributes, a mean over texts: the
gold losses' balance). Texts of `train.distill_unlabelled` add w * T^2 * soft of their own
batch, one drawn with each labelled step.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mjave.config import ConfigError, RunConfig
from mjave.data.formats import read_records
from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded
from mjave.encoders.features import model_content_hash
from mjave.model.batches import Example, batches, collate
from mjave.model_folder import ModelFolder
from mjave.pretrained import SCHEMA, LoadedModel, frozen_text_encoder, uses_image
from mjave.training import distributed

log = logging.getLogger(__name__)

CACHE_DIR = "distill"
"""The teacher outputs' folder inside the feature store."""

UNLABELLED_PREFIX = "distill-unlabelled:"
"""Prepended to the ids of unlabelled records, so their stored features never collide with a
training record's."""


# --------------------------------------------------------------------------------------------
# The teacher's outputs, per word
# --------------------------------------------------------------------------------------------


@dataclass
class TeacherText:
    """The teacher's view of one text: its words' character extents, the tag logits on each
    word's first piece, and the attribute logits."""

    starts: np.ndarray       # (W,) int64, sorted
    ends: np.ndarray         # (W,) int64
    tag_logits: np.ndarray   # (W, num_tags) float32
    attr_logits: np.ndarray  # (L,) float32


def load_teacher(folder: str | Path, schema: AttributeSchema, device: torch.device
                 ) -> tuple[LoadedModel, torch.nn.Module | None]:
    """The teacher network of a torch model folder (and the frozen encoder a cached-feature
    teacher reads). ConfigError when it cannot teach this student: another schema, or a model
    that reads the product image."""
    check_teacher(folder, schema)
    model_folder = ModelFolder.read(folder, expect="torch")
    if uses_image(model_folder.config):
        raise ConfigError(f"train.distill_from: {folder} reads the product image; distillation "
                          "reads texts only (teach with a text-only model)")
    model = LoadedModel.from_folder(model_folder, device=str(device))
    frozen = frozen_text_encoder(model_folder)
    return model, (frozen.to(device).eval() if frozen is not None else None)


def check_teacher(folder: str | Path, schema: AttributeSchema) -> None:
    """ConfigError unless `folder` is a model folder of `schema` (checked on every run, cached
    outputs or not)."""
    path = Path(folder)
    if not (path / SCHEMA).is_file():
        raise ConfigError(f"train.distill_from: {folder} is no model folder (train the teacher "
                          "first, e.g. `mjave train --config configs/runs/oamine-mpnet.yaml "
                          "--set output_dir=runs/oamine-mpnet`)")
    check_same_schema(AttributeSchema.load(path / SCHEMA), schema, folder)


def check_same_schema(teacher: AttributeSchema, student: AttributeSchema, folder: str | Path
                      ) -> None:
    """Soft tags are compared tag by tag: the teacher must know the same attributes, in the
    same order (both sort them by name)."""
    if tuple(teacher.attributes) == tuple(student.attributes):
        return
    missing = sorted(set(student.attributes) - set(teacher.attributes))
    extra = sorted(set(teacher.attributes) - set(student.attributes))
    raise ConfigError(
        f"train.distill_from: the teacher {folder} was trained on other attributes than this "
        f"training data has (teacher {len(teacher.attributes)}, student "
        f"{len(student.attributes)}; missing in the teacher: {missing or 'none'}; only in the "
        f"teacher: {extra or 'none'}). Train the teacher on the same training data")


@torch.no_grad()
def teacher_outputs(model: LoadedModel, frozen: torch.nn.Module | None, texts: Sequence[str],
                    batch_size: int = 64) -> list[TeacherText]:
    """Run the teacher once over `texts` (eval mode, float32): per text its `TeacherText`."""
    model.net.eval()
    aligner = model.aligner
    no_labels = np.zeros(model.schema.num_attributes, dtype=np.float32)
    out: list[TeacherText] = []
    for s in range(0, len(texts), batch_size):
        chunk = texts[s:s + batch_size]
        encodings = aligner.encode_texts(chunk)
        lexicon = model.lexicon   # a teacher trained with value knowledge reads it here too
        examples = [Example(Record(id=str(i), text=t), e, no_labels, knowledge=None
                            if lexicon is None else lexicon.features(t, e, model.schema))
                    for i, (t, e) in enumerate(zip(chunk, encodings))]
        batch = collate(examples, pad_id=aligner.pad_id, device=model.device)
        if frozen is not None:   # float16 on the way, as the feature store kept them
            batch["h"] = frozen(batch["input_ids"], batch["mask"].long()).half().float()
        result = model.net(batch, with_labels=False)
        tags = result.tag_logits.float().cpu().numpy()
        attrs = result.attr_logits.float().cpu().numpy()
        for row, enc in enumerate(encodings):
            out.append(_words_of(enc, tags[row], attrs[row]))
    return out


def _words_of(enc: Encoded, tag_logits: np.ndarray, attr_logits: np.ndarray) -> TeacherText:
    """The word-level view of one encoded text: the logits of each word's first piece."""
    spans = [(i, a, b) for i, ((a, b), first) in enumerate(zip(enc.word_offsets(), enc.label_mask))
             if first and a < b]
    idx = np.array([i for i, _, _ in spans], dtype=np.int64)
    return TeacherText(np.array([a for _, a, _ in spans], dtype=np.int64),
                       np.array([b for _, _, b in spans], dtype=np.int64),
                       tag_logits[idx].astype(np.float32), attr_logits.astype(np.float32))


def cache_key(teacher: str | Path, texts: Sequence[str]) -> str:
    """Teacher content (config, weights, schema) and the texts in order."""
    folder = Path(teacher)
    h = hashlib.sha256(model_content_hash(folder).encode())
    h.update((folder / SCHEMA).read_bytes())
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8")).digest())
    return h.hexdigest()[:24]


def save_teacher_texts(path: Path, items: Sequence[TeacherText]) -> None:
    """One .npz, written whole or not at all (a killed run leaves no half file to trust)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    num_tags = items[0].tag_logits.shape[1] if items else 0
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, words=np.array([len(t.starts) for t in items], dtype=np.int64),
             starts=np.concatenate([t.starts for t in items] or [np.zeros(0, np.int64)]),
             ends=np.concatenate([t.ends for t in items] or [np.zeros(0, np.int64)]),
             tag_logits=np.concatenate([t.tag_logits for t in items]
                                       or [np.zeros((0, num_tags), np.float32)]),
             attr_logits=np.stack([t.attr_logits for t in items]))
    os.replace(tmp, path)


def load_teacher_texts(path: Path) -> list[TeacherText]:
    with np.load(path) as z:
        bounds = np.concatenate([[0], np.cumsum(z["words"])])
        starts, ends, tags, attrs = z["starts"], z["ends"], z["tag_logits"], z["attr_logits"]
    return [TeacherText(starts[a:b], ends[a:b], tags[a:b], attrs[i])
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]


def cached_teacher_outputs(teacher: str | Path, texts: Sequence[str], schema: AttributeSchema,
                           cache_dir: Path, device: torch.device) -> list[TeacherText]:
    """`teacher_outputs` of `texts`, from the cache when it holds them (the main process fills
    it first; the others read it)."""
    check_teacher(teacher, schema)
    path = cache_dir / f"teacher-{cache_key(teacher, texts)}.npz"
    with distributed.main_first():
        if not path.is_file():
            model, frozen = load_teacher(teacher, schema, device)
            log.info("distillation: running the teacher %s over %d texts", teacher, len(texts))
            save_teacher_texts(path, teacher_outputs(model, frozen, texts))
            del model, frozen
        else:
            log.info("distillation: the teacher's outputs for %d texts from %s", len(texts), path)
    items = load_teacher_texts(path)
    if items and items[0].tag_logits.shape[1] != schema.num_tags:
        raise ConfigError(f"{path}: cached teacher outputs of {items[0].tag_logits.shape[1]} "
                          f"tags, the schema has {schema.num_tags}; delete the file")
    return items


# --------------------------------------------------------------------------------------------
# Teacher words -> student tokens
# --------------------------------------------------------------------------------------------


def student_targets(teacher: TeacherText, enc: Encoded, temperature: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(T, num_tags) teacher tag probabilities at `temperature` on the student's tokens, and the
    (T,) bool mask of the tokens that have one: word-starting tokens whose first character a
    teacher word covers (B- moved to I- where that character is inside the teacher word)."""
    num_tags = teacher.tag_logits.shape[1]
    probs = np.zeros((len(enc), num_tags), dtype=np.float32)
    has = np.zeros(len(enc), dtype=bool)
    if len(teacher.starts) == 0:
        return probs, has
    soft = _softmax(teacher.tag_logits / temperature)
    for i, ((a, b), first) in enumerate(zip(enc.offsets, enc.label_mask)):
        if not first or a >= b:
            continue
        w = int(np.searchsorted(teacher.starts, a, side="right")) - 1
        if w < 0 or a >= teacher.ends[w]:
            continue
        p = soft[w].copy()
        if a > teacher.starts[w]:   # inside the teacher's word: it continues the value
            p[2::2] += p[1::2]
            p[1::2] = 0.0
        probs[i], has[i] = p, True
    return probs, has


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@dataclass
class SoftTargets:
    """Every example's soft targets padded to the longest text, on the training device; a
    batch cuts its rows by example index (`cut`)."""

    tags: Tensor      # (N, T, num_tags) teacher probabilities at the temperature
    tag_mask: Tensor  # (N, T) bool: tokens with a soft tag target
    attrs: Tensor     # (N, L) teacher attribute probabilities at the temperature

    @classmethod
    def build(cls, examples: Sequence[Example], teacher: Sequence[TeacherText],
              temperature: float, device: torch.device) -> "SoftTargets":
        T = max(len(e.encoded) for e in examples)
        num_tags = teacher[0].tag_logits.shape[1]
        tags = np.zeros((len(examples), T, num_tags), dtype=np.float32)
        mask = np.zeros((len(examples), T), dtype=bool)
        for n, (e, t) in enumerate(zip(examples, teacher)):
            probs, has = student_targets(t, e.encoded, temperature)
            tags[n, :len(probs)], mask[n, :len(has)] = probs, has
        attrs = 1.0 / (1.0 + np.exp(-np.stack([t.attr_logits for t in teacher]) / temperature))
        return cls(torch.from_numpy(tags).to(device), torch.from_numpy(mask).to(device),
                   torch.from_numpy(attrs.astype(np.float32)).to(device))

    def cut(self, index: Tensor, length: int) -> dict[str, Tensor]:
        """The rows of a batch of examples `index`, trimmed to its `length` tokens."""
        index = index.to(self.tags.device)
        return {"tags": self.tags[:, :length][index], "tag_mask": self.tag_mask[:, :length][index],
                "attrs": self.attrs[index]}

    def coverage(self, examples: Sequence[Example]) -> float:
        """Share of the word-starting tokens that got a soft target (logged)."""
        tagged = sum(sum(e.encoded.label_mask) for e in examples)
        return float(self.tag_mask.sum()) / max(1, tagged)


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------


def soft_loss(tag_logits: Tensor, attr_logits: Tensor, soft: dict[str, Tensor],
              temperature: float, attr_weight: float) -> Tensor:
    """T^2 * (token-mean KL(teacher_T || student_T) + attr_weight * attribute BCE against the
    teacher's probabilities at T); the T^2 keeps the gradients' scale as T changes."""
    loss_attrs = F.binary_cross_entropy_with_logits(
        attr_logits.float() / temperature, soft["attrs"], reduction="none").sum(-1).mean()
    return temperature ** 2 * (tag_kl(tag_logits, soft, temperature) + attr_weight * loss_attrs)


def tag_kl(tag_logits: Tensor, soft: dict[str, Tensor], temperature: float = 1.0) -> Tensor:
    """KL(teacher || student) of the tag distributions at `temperature`, the mean over the
    tokens with a soft target (0 when none has one)."""
    mask = soft["tag_mask"]
    p = soft["tags"]
    log_q = F.log_softmax(tag_logits.float() / temperature, dim=-1)
    kl = (torch.xlogy(p, p) - p * log_q).sum(-1)
    return kl.masked_fill(~mask, 0.0).sum() / mask.sum().clamp_min(1)


# --------------------------------------------------------------------------------------------
# What the trainer holds
# --------------------------------------------------------------------------------------------


@dataclass
class Distiller:
    """The soft targets of the training examples (and of the unlabelled ones) and the mix."""

    weight: float
    temperature: float
    attr_weight: float
    train: SoftTargets
    unlabelled: list[Example]
    unlabelled_targets: SoftTargets | None
    seed: int
    batch_size: int
    pad_id: int
    device: torch.device

    def mix(self, gold: Tensor, output: object, batch: dict[str, Tensor],
            counts: bool = True) -> Tensor:
        """(1 - w) * gold + w * T^2 * soft of a labelled batch (which carries `index`); a
        stand-in shard (`counts` False, `distributed.shard`) weighs its soft part 0 too."""
        soft = self.train.cut(batch["index"], output.tag_logits.shape[1])
        weight = self.weight if counts else 0.0
        return (1.0 - self.weight) * gold + weight * self.soft(output, soft)

    def soft(self, output: object, soft: dict[str, Tensor]) -> Tensor:
        return soft_loss(output.tag_logits, output.attr_logits, soft, self.temperature,
                         self.attr_weight)

    def unlabelled_loss(self, output: object, batch: dict[str, Tensor]) -> Tensor:
        """w * T^2 * soft of an unlabelled batch: its gold loss is not used."""
        assert self.unlabelled_targets is not None
        soft = self.unlabelled_targets.cut(batch["index"], output.tag_logits.shape[1])
        return self.weight * self.soft(output, soft)

    def unlabelled_batches(self, epoch: int) -> Iterator[dict[str, Tensor]] | None:
        """Endless unlabelled batches (with `index`), reshuffled on every pass, seeded by
        (seed, epoch) so a resumed epoch draws the same ones; None without unlabelled texts."""
        if not self.unlabelled:
            return None
        return self._cycle(torch.Generator().manual_seed(self.seed * 100_019 + epoch + 7))

    def _cycle(self, g: torch.Generator) -> Iterator[dict[str, Tensor]]:
        while True:
            for idx in batches(range(len(self.unlabelled)), self.batch_size, generator=g):
                part, _ = distributed.shard(idx)
                batch = collate([self.unlabelled[i] for i in part], pad_id=self.pad_id,
                                device=self.device)
                batch["index"] = torch.tensor(part, device=self.device)
                yield batch


def unlabelled_records(config: RunConfig) -> list[Record]:
    """The texts of `train.distill_unlabelled` with their spans dropped and their ids made
    distinct from the training records'."""
    path = config.train.distill_unlabelled
    if not path:
        return []
    records, issues = read_records(path, format=None, strict=not config.data.lenient)
    if issues.skipped:
        log.warning("%s: %s", path, issues.summary())
    return [replace(r, id=UNLABELLED_PREFIX + r.id, spans=[], extra={}) for r in records]


def make_distiller(config: RunConfig, schema: AttributeSchema, train: Sequence[Example],
                   unlabelled: Sequence[Example], cache_dir: Path, pad_id: int,
                   device: torch.device) -> Distiller | None:
    """The `Distiller` of `config.train` (None without `distill_from`): teacher outputs from
    the cache or one teacher pass, mapped onto the student's tokens."""
    tc = config.train
    if not tc.distill_from:
        return None
    texts = [e.record.text for e in train] + [e.record.text for e in unlabelled]
    teacher = cached_teacher_outputs(tc.distill_from, texts, schema, cache_dir, device)
    targets = SoftTargets.build(train, teacher[:len(train)], tc.distill_temperature, device)
    extra = (SoftTargets.build(unlabelled, teacher[len(train):], tc.distill_temperature, device)
             if unlabelled else None)
    log.info("distillation from %s: weight %g, temperature %g; soft tag targets on %.1f%% of "
             "the training words%s", tc.distill_from, tc.distill_weight, tc.distill_temperature,
             100 * targets.coverage(train),
             f", plus {len(unlabelled)} unlabelled texts" if unlabelled else "")
    return Distiller(tc.distill_weight, tc.distill_temperature, config.model.attr_loss_weight,
                     targets, list(unlabelled), extra, tc.seed, tc.batch_size, pad_id, device)


__all__ = ["CACHE_DIR", "Distiller", "SoftTargets", "TeacherText", "cache_key",
           "cached_teacher_outputs", "check_same_schema", "check_teacher", "load_teacher", "make_distiller",
           "soft_loss", "student_targets", "tag_kl", "teacher_outputs", "unlabelled_records"]
