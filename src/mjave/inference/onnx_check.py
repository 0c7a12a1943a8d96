"""How far an int8 export strays from its fp32 graph, measured on this CPU at export time.

Integer matrix products are computed by different kernels on different CPUs: with VNNI
(AVX-512 VNNI or AVX-VNNI) u8 x s8 products are summed in int32, while AVX2 without VNNI sums
pairs of them in int16 first (`vpmaddubsw`), which saturates. The same int8 file can therefore
keep 99% of the fp32 spans on one machine and 57% on another (issue #30; docs/performance.md).
`mjave export --int8` quantises so that no kernel saturates (`quantize_int8`), and then checks
itself with this module: both graphs run on sample texts through the one Extractor, and the
figures say what int8 changed here, before a user sweeps a catalog with it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

MIN_AGREEMENT = 0.8
"""Default floor of span agreement (Jaccard of the fp32 and int8 span sets) below which an int8
export is refused without `--force`. Measured (docs/performance.md): 0.84-1.00 for the shipped
quantisation on real and tiny models, on AVX-512 VNNI and on AVX2-only CPUs alike, with value F1
within 0.4 of fp32; 0.57-0.77 for 8-bit signed weights on AVX2 without VNNI, whose kernels
saturate."""

SAMPLE_LIMIT = 256
"""Texts the check runs at most (a few seconds for MiniLM on 2 cores)."""

_ISA_FLAGS = (("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"), ("avx512f", "AVX-512"),
              ("avx2", "AVX2"))


def cpu_isa() -> str:
    """The x86 vector extensions that decide onnxruntime's int8 kernels, from /proc/cpuinfo
    (e.g. 'AVX2, no VNNI'); 'unknown' where the file is missing (macOS, Windows, ARM)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags: set[str] = set()
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return "unknown"
    found = [label for flag, label in _ISA_FLAGS if flag in flags]
    if not found:
        return "unknown"
    if not {"avx512_vnni", "avx_vnni"} & flags:
        found.append("no VNNI")
    return ", ".join(found)


@dataclass(frozen=True)
class Int8Check:
    """fp32 vs int8 on the same items: spans as (item, attribute, begin, end)."""

    items: int
    fp32_spans: int
    int8_spans: int
    agreement: float
    """|fp32 & int8| / |fp32 | int8| of the span sets (1.0 when both are empty)."""
    kept: float
    """Share of the fp32 spans int8 also finds."""
    max_score_drift: float
    """Largest |int8 - fp32| over every attribute probability and every shared span's score."""
    mean_score_drift: float
    cpu: str
    source: str
    """Where the sample texts came from."""
    min_agreement: float

    @property
    def passed(self) -> bool:
        return self.agreement >= self.min_agreement

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        return (f"int8 check on {self.items} texts ({self.source}), CPU {self.cpu}: span "
                f"agreement {self.agreement:.3f} (kept {self.kept:.1%} of {self.fp32_spans} fp32 "
                f"spans, {self.int8_spans} int8 spans), score drift max {self.max_score_drift:.3f}"
                f" mean {self.mean_score_drift:.4f}; floor {self.min_agreement:.2f}: "
                f"{'passed' if self.passed else 'FAILED'}")


def builtin_items(n: int = 120) -> list[dict[str, Any]]:
    """Items of the synthetic catalog (deterministic): the sample when nothing better is known."""
    from mjave.data.synthetic import generate_records

    splits = generate_records(n_products=n, seed=0)
    return [{"text": r.text, "category": r.category}
            for split in splits.values() for r in split][:n]


def sample_items(texts_file: str | os.PathLike | None, valid_path: str | None,
                 limit: int = SAMPLE_LIMIT) -> tuple[list[dict[str, Any]], str]:
    """(items, where they came from): the rows of the user's file, else of the model's valid
    split when it is still readable, else the built-in synthetic items. An item keeps its row's
    category, so a model that restricts decoding by category is checked as it will be used.
    Rows the reader refuses are left out."""
    from mjave.data.formats import read_input

    for path, label in ((texts_file, "given file"), (valid_path, "the model's valid split")):
        if path is None or (label != "given file" and not Path(path).is_file()):
            continue
        items: list[dict[str, Any]] = []
        for row in read_input(path):
            if row.error is None and isinstance(row.text, str) and row.text:
                category = row.extra.get("category")
                items.append({"text": row.text,
                              "category": category if isinstance(category, str) else None})
            if len(items) >= limit:
                break
        if items:
            return items, f"{label} {Path(path).name}"
        if label == "given file":
            raise ValueError(f"{path}: no readable text rows to check int8 on")
    return builtin_items(min(limit, 120)), "built-in synthetic texts"


def span_scores(results: Sequence[dict[str, Any]]) -> dict[tuple, float]:
    return {(i, v["attribute"], v["begin"], v["end"]): float(v["score"])
            for i, r in enumerate(results) for v in r["values"]}


def attribute_scores(results: Sequence[dict[str, Any]]) -> dict[tuple, float]:
    return {(i, a["name"]): float(a["score"]) for i, r in enumerate(results)
            for a in r["attributes"]}


def compare(fp32: Sequence[dict[str, Any]], int8: Sequence[dict[str, Any]], *, cpu: str,
            source: str, min_agreement: float = MIN_AGREEMENT) -> Int8Check:
    """The figures of `Int8Check` from the Extractor results of the two graphs on one list."""
    a, b = span_scores(fp32), span_scores(int8)
    shared = a.keys() & b.keys()
    union = a.keys() | b.keys()
    pa, pb = attribute_scores(fp32), attribute_scores(int8)
    drifts = [abs(a[k] - b[k]) for k in shared]
    drifts += [abs(pa[k] - pb.get(k, 0.0)) for k in pa]
    drifts += [pb[k] for k in pb.keys() - pa.keys()]
    d = np.asarray(drifts or [0.0])
    return Int8Check(items=len(fp32), fp32_spans=len(a), int8_spans=len(b),
                     agreement=len(shared) / len(union) if union else 1.0,
                     kept=len(shared) / len(a) if a else 1.0,
                     max_score_drift=float(d.max()), mean_score_drift=float(d.mean()),
                     cpu=cpu, source=source, min_agreement=min_agreement)


def check_int8(fp32_dir: Path, int8_dir: Path, items: Sequence[dict[str, Any]], source: str, *,
               min_agreement: float = MIN_AGREEMENT, threads: int | None = None) -> Int8Check:
    """Run both exported folders through the Extractor on `items` ({"text", "category"}) and
    compare. An image model reads one plain grey photo per item: the check is of the graphs,
    not of the photos."""
    from PIL import Image

    from mjave.inference.extractor import Extractor

    runs = []
    for folder in (fp32_dir, int8_dir):
        ex = Extractor.load(folder, device="cpu", threads=threads)
        batch = [dict(item) for item in items]
        if ex.uses_image:
            grey = Image.new("RGB", (224, 224), (128, 128, 128))
            batch = [{**item, "image": grey} for item in batch]
        runs.append(ex.predict_batch(batch))
    return compare(runs[0], runs[1], cpu=cpu_isa(), source=source, min_agreement=min_agreement)


__all__ = ["Int8Check", "MIN_AGREEMENT", "SAMPLE_LIMIT", "builtin_items", "check_int8",
           "compare", "cpu_isa", "sample_items"]
