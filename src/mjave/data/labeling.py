"""Distant labelling: turn a catalog's attribute table into character spans on product texts.

A catalog team has texts and a partial table (`product_id, attribute, value`), not annotations.
`label_records` finds each known value of a product in that product's texts (normalised, see
`mjave.data.normalize`, plus optional synonyms) and writes the occurrences as spans into the
ORIGINAL text. Every decision a table cannot make for us is a documented policy, and each is
counted in the `LabelSummary`, so nothing is dropped silently:

- a value found several times: label every occurrence (`occurrences="all"`, the default) or only
  the first one in the product's texts (`"first"`);
- one surface (the same characters of one text) claimed by two attributes of the product
  (`conflicts`): `"drop"` (default) labels neither and lists it in `extra["conflicts"]` so that
  training can ignore those tokens; `"keep-both"` writes both spans (BIO tagging later keeps one);
  `"first-row"` keeps the attribute whose table row comes first;
- spans of different values that overlap ("Nabisco" inside "Nabisco Cereal"): the longer is kept,
  then the earlier (`mjave.data.spans.resolve_overlaps`, the rule every format uses);
- a value not found in the text: listed in `extra["unmatched"]` with the reason;
- products without table rows: labelled with no spans and no known attributes;
- table rows of a product that is not among the products: counted with their line numbers
  (`unknown_products="report"`) or an error (`"error"`);
- word boundaries: a Latin-script value is found only as whole words; `case_breaks=True` also
  accepts a change of case inside a word ("Hard DriveIn") as a boundary, for scraped texts
  whose spaces were lost (WDC-PAVE: +1.9 points recall, OA-Mine unchanged).

Each output record carries `extra["known_attributes"]`: the attributes the table has for its
product, so that partial-label training can tell "not labelled" from "not a value"
(`Record.known_attributes`). An attribute stays known when one of its values is not found: the
table knows it, the text may simply not state it (add synonyms where `unmatched` shows the text
says it differently). A seeded `calibration_fraction` of (product, attribute) pairs is held
out: not labelled, not known, listed in `extra["calibration"]` for choosing a score threshold on
values the model never saw. Product-level facts (known attributes, unmatched, calibration) are
written on every text of the product.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from mjave.data.catalog_table import SynonymRow, TableRow, read_catalog_table, read_synonyms
from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import (WriteIssues, detect_labelled_format, iter_records,
                                write_records)
from mjave.data.normalize import Normalized, find_value, normalize, collapse_punctuation
from mjave.data.outputs import atomic_write, check_not_input
from mjave.data.paths import PathLike
from mjave.data.records import Record, Span
from mjave.data.spans import resolve_overlaps

OCCURRENCES = ("all", "first")
CONFLICTS = ("drop", "keep-both", "first-row")
UNKNOWN_PRODUCTS = ("report", "error")
MAX_LISTED_LINES = 10


@dataclass(frozen=True)
class LabelPolicy:
    """How `label_records` decides what the table cannot tell it (see the module docstring)."""

    occurrences: str = "all"
    conflicts: str = "drop"
    unknown_products: str = "report"
    case_breaks: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (("occurrences", OCCURRENCES), ("conflicts", CONFLICTS),
                              ("unknown_products", UNKNOWN_PRODUCTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"LabelPolicy.{name} must be one of {', '.join(allowed)}, "
                                 f"not {getattr(self, name)!r}")


@dataclass
class LabelSummary:
    """What one labelling run did. A "pair" is one (product, attribute, normalised value).

    Every labellable pair ends up labelled (`values_labelled`) or in a record's
    `extra["unmatched"]` with its reason: `values_unmatched` (not in the text),
    `values_lost_to_conflicts`, `values_lost_to_overlaps`."""

    policy: dict[str, str] = field(default_factory=dict)
    records: int = 0
    products: int = 0
    products_with_no_rows: int = 0
    input_spans_replaced: int = 0          # spans the input records already had
    rows: int = 0
    rows_duplicate: int = 0                # same product, attribute and normalised value
    rows_unknown_product: int = 0
    unknown_product_lines: list[int] = field(default_factory=list)
    pairs: int = 0                         # labellable pairs (calibration pairs excluded)
    values_found: int = 0                  # pairs found in the text at least once
    values_labelled: int = 0               # pairs with at least one span in the output
    values_unmatched: int = 0              # pairs not found in the text
    values_lost_to_conflicts: int = 0
    values_lost_to_overlaps: int = 0
    occurrences_labelled: int = 0          # spans written
    synonym_occurrences: int = 0           # ... of which found through a synonym
    extra_occurrences_skipped: int = 0     # occurrences="first": later occurrences not labelled
    conflicts: int = 0                     # surfaces claimed by two or more attributes
    conflict_spans_dropped: int = 0
    spans_overlap_resolved: int = 0        # spans dropped because a longer one overlapped
    calibration_pairs: int = 0
    calibration_pairs_in_text: int = 0
    calibration_attributes: int = 0        # held-out (product, attribute) units
    by_attribute: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A few human-readable lines (what `mjave data label` prints)."""
        p = self.policy
        lines = [f"labelled {self.records} texts of {self.products} products from "
                 f"{self.rows} table rows ({self.rows_duplicate} duplicates merged)"]
        if self.products_with_no_rows:
            lines.append(f"products with no table rows: {self.products_with_no_rows} "
                         "(no spans, no known attributes)")
        if self.rows_unknown_product:
            shown = ", ".join(map(str, self.unknown_product_lines[:MAX_LISTED_LINES]))
            more = (f" and {len(self.unknown_product_lines) - MAX_LISTED_LINES} more"
                    if len(self.unknown_product_lines) > MAX_LISTED_LINES else "")
            lines.append(f"error rows: {self.rows_unknown_product} table rows name a product "
                         f"that is not among the products (lines {shown}{more})")
        lines.append(f"values: {self.pairs} pairs, {self.values_found} found in the text, "
                     f"{self.values_labelled} labelled; not labelled (in extra.unmatched): "
                     f"{self.values_unmatched} not found, {self.values_lost_to_conflicts} lost "
                     f"to conflicts, {self.values_lost_to_overlaps} lost to overlaps")
        lines.append(f"spans: {self.occurrences_labelled} labelled ({self.synonym_occurrences} "
                     f"through synonyms); occurrences={p.get('occurrences')}: "
                     f"{self.extra_occurrences_skipped} further occurrences not labelled")
        lines.append(f"conflicts: {self.conflicts} surfaces claimed by two attributes "
                     f"(conflicts={p.get('conflicts')}: {self.conflict_spans_dropped} spans "
                     f"dropped); overlaps: {self.spans_overlap_resolved} spans dropped (the "
                     "longer, then the earlier, is kept)")
        if self.calibration_pairs:
            lines.append(f"calibration: {self.calibration_pairs} pairs of "
                         f"{self.calibration_attributes} (product, attribute) held out "
                         f"({self.calibration_pairs_in_text} found in the text), not labelled")
        if self.input_spans_replaced:
            lines.append(f"note: the input already had {self.input_spans_replaced} spans; "
                         "they were replaced by the table's")
        return "\n".join(lines)


@dataclass
class _Pair:
    """One (attribute, normalised value) of a product and the surface forms that express it."""

    attribute: str
    value: str                      # as first written in the table
    line: int
    forms: list[tuple[str, str, bool]]  # (raw form, normalised form, is a synonym)
    held_out: bool = False
    found: bool = False
    lost_to: str | None = None      # "conflict" or "overlap" once found but not labelled
    labelled: int = 0


@dataclass
class _Cand:
    rec: int        # index of the text within the product
    begin: int
    end: int
    pair: int
    synonym: bool


def held_out(seed: int, product_id: str, attribute: str, fraction: float) -> bool:
    """Whether (product, attribute) is held out for calibration: a hash, not a random stream, so
    the choice of one pair does not depend on the order or number of the others."""
    if fraction <= 0:
        return False
    h = hashlib.blake2b(f"{seed}\x00{product_id}\x00{attribute}".encode("utf-8", "replace"),
                        digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < fraction


def _synonym_index(synonyms: Iterable[SynonymRow] | None) -> dict[tuple[str, str], list[str]]:
    index: dict[tuple[str, str], list[str]] = defaultdict(list)
    for s in synonyms or ():
        index[(s.attribute, collapse_punctuation(s.canonical_value))].append(s.surface_form)
    return index


def _pairs_of(rows: Sequence[TableRow], synonyms: dict[tuple[str, str], list[str]],
              summary: LabelSummary) -> list[_Pair]:
    pairs: dict[tuple[str, str], _Pair] = {}
    for row in rows:
        key = (row.attribute, collapse_punctuation(row.value))
        if key in pairs:
            summary.rows_duplicate += 1
            continue
        forms = [(row.value, key[1], False)]
        seen = {key[1]}
        for surface in synonyms.get(key, ()):
            norm = collapse_punctuation(surface)
            if norm not in seen:
                seen.add(norm)
                forms.append((surface, norm, True))
        pairs[key] = _Pair(row.attribute, row.value, row.line, forms)
    return list(pairs.values())


def _candidates(texts: Sequence[Normalized], pairs: Sequence[_Pair], case_breaks: bool
                ) -> list[_Cand]:
    """Every occurrence of every form of every pair, as original offsets (deduplicated)."""
    seen: set[tuple[int, int, int, int]] = set()
    cands: list[_Cand] = []
    breaks = [t.case_breaks() if case_breaks else frozenset() for t in texts]
    for p, pair in enumerate(pairs):
        for raw, norm, synonym in pair.forms:
            for r, text in enumerate(texts):
                for b, e in find_value(text.text, norm, breaks[r]):
                    ob, oe = text.surface_span(b, e, raw)
                    if (r, ob, oe, p) not in seen:
                        seen.add((r, ob, oe, p))
                        cands.append(_Cand(r, ob, oe, p, synonym))
    for c in cands:
        pairs[c.pair].found = True
    return _one_mention_per_surface(cands)


def _one_mention_per_surface(cands: list[_Cand]) -> list[_Cand]:
    """Forms of one pair that overlap ("navy" inside its synonym "navy blue") are one mention:
    keep the longest, uncounted (an overlap between different values is counted later)."""
    groups: dict[tuple[int, int], list[_Cand]] = defaultdict(list)
    for c in cands:
        groups[(c.rec, c.pair)].append(c)
    kept: list[_Cand] = []
    for group in groups.values():
        if not any(c.synonym for c in group):
            kept.extend(group)  # one form only: its occurrences do not overlap
            continue
        mine: list[_Cand] = []
        for c in sorted(group, key=lambda c: (-(c.end - c.begin), c.begin)):
            if not any(c.begin < k.end and k.begin < c.end for k in mine):
                mine.append(c)
        kept.extend(mine)
    return sorted(kept, key=lambda c: (c.rec, c.begin, c.end, c.pair))


def _resolve_conflicts(cands: list[_Cand], pairs: Sequence[_Pair], policy: LabelPolicy,
                       texts: Sequence[Normalized], summary: LabelSummary
                       ) -> tuple[list[_Cand], list[list[dict[str, Any]]]]:
    """Apply the conflict policy to surfaces claimed by several attributes."""
    at: dict[tuple[int, int, int], list[_Cand]] = defaultdict(list)
    for c in cands:
        at[(c.rec, c.begin, c.end)].append(c)
    noted: list[list[dict[str, Any]]] = [[] for _ in texts]
    kept: list[_Cand] = []
    for (r, b, e), group in at.items():
        attrs = sorted({pairs[c.pair].attribute for c in group})
        if len(attrs) < 2:
            kept.extend(group)
            continue
        summary.conflicts += 1
        if policy.conflicts == "keep-both":
            kept.extend(group)
            continue
        if policy.conflicts == "first-row":
            first = min(pairs[c.pair].line for c in group)
            winners = [c for c in group if pairs[c.pair].line == first]
        else:
            winners = []
            noted[r].append({"begin": b, "end": e, "value": texts[r].original[b:e],
                             "attributes": attrs})
        kept.extend(winners)
        summary.conflict_spans_dropped += len(group) - len(winners)
        for c in group:
            if all(c is not w for w in winners):
                pairs[c.pair].lost_to = "conflict"
    return kept, noted


def _first_only(cands: list[_Cand], summary: LabelSummary) -> list[_Cand]:
    """occurrences="first": the earliest occurrence of each pair in the product's texts."""
    best: dict[int, _Cand] = {}
    for c in cands:
        if c.pair not in best or (c.rec, c.begin, c.end) < (best[c.pair].rec, best[c.pair].begin,
                                                           best[c.pair].end):
            best[c.pair] = c
    summary.extra_occurrences_skipped += len(cands) - len(best)
    return list(best.values())


def _spans_of_text(cands: list[_Cand], pairs: Sequence[_Pair], text: str,
                   summary: LabelSummary) -> list[Span]:
    """Overlaps resolved by position (so keep-both keeps both attributes of one surface)."""
    at: dict[tuple[int, int], list[_Cand]] = defaultdict(list)
    for c in cands:
        at[(c.begin, c.end)].append(c)
    reps = [Span(b, e, min(pairs[c.pair].attribute for c in group), text[b:e])
            for (b, e), group in at.items()]
    kept, dropped = resolve_overlaps(reps)
    for s in dropped:
        for c in at[(s.begin, s.end)]:
            summary.spans_overlap_resolved += 1
            pairs[c.pair].lost_to = pairs[c.pair].lost_to or "overlap"
    spans: list[Span] = []
    for s in kept:
        for c in sorted(at[(s.begin, s.end)], key=lambda c: pairs[c.pair].attribute):
            pair = pairs[c.pair]
            if any(x.attr == pair.attribute and x.begin == s.begin for x in spans):
                continue  # two values of one attribute on one surface (via synonyms): once
            spans.append(Span(s.begin, s.end, pair.attribute, text[s.begin:s.end]))
            pair.labelled += 1
            summary.occurrences_labelled += 1
            summary.synonym_occurrences += c.synonym
    return spans


def _label_product(records: Sequence[Record], rows: Sequence[TableRow], product_id: str,
                   synonyms: dict[tuple[str, str], list[str]], policy: LabelPolicy,
                   calibration_fraction: float, seed: int, summary: LabelSummary
                   ) -> list[Record]:
    texts = [normalize(r.text) for r in records]
    pairs = _pairs_of(rows, synonyms, summary)
    held = {p.attribute for p in pairs
            if held_out(seed, product_id, p.attribute, calibration_fraction)}
    for p in pairs:
        p.held_out = p.attribute in held
    summary.calibration_attributes += len(held)
    live = [p for p in pairs if not p.held_out]
    calibration = []
    for p in pairs:
        if p.held_out:
            in_text = any(find_value(t.text, norm) for _, norm, _ in p.forms for t in texts)
            calibration.append({"attribute": p.attribute, "value": p.value, "in_text": in_text})
            summary.calibration_pairs += 1
            summary.calibration_pairs_in_text += in_text

    cands = _candidates(texts, live, policy.case_breaks)
    cands, conflicts = _resolve_conflicts(cands, live, policy, texts, summary)
    if policy.occurrences == "first":
        cands = _first_only(cands, summary)
    by_text: dict[int, list[_Cand]] = defaultdict(list)
    for c in cands:
        by_text[c.rec].append(c)
    spans = [_spans_of_text(by_text[i], live, r.text, summary) for i, r in enumerate(records)]

    unmatched = []
    for p in live:
        stats = summary.by_attribute.setdefault(p.attribute, {"pairs": 0, "labelled": 0,
                                                              "not_found": 0, "spans": 0})
        stats["pairs"] += 1
        stats["spans"] += p.labelled
        summary.pairs += 1
        summary.values_found += p.found
        if p.labelled:
            summary.values_labelled += 1
            stats["labelled"] += 1
            continue
        reason = "not found" if not p.found else p.lost_to or "overlap"
        unmatched.append({"attribute": p.attribute, "value": p.value, "reason": reason})
        if reason == "not found":
            summary.values_unmatched += 1
            stats["not_found"] += 1
        elif reason == "conflict":
            summary.values_lost_to_conflicts += 1
        else:
            summary.values_lost_to_overlaps += 1

    known = sorted({p.attribute for p in live})
    out = []
    for i, r in enumerate(records):
        summary.input_spans_replaced += len(r.spans)
        extra = dict(r.extra)
        extra["known_attributes"] = known
        extra["unmatched"] = [dict(u) for u in unmatched]
        extra["calibration"] = [dict(c) for c in calibration]
        if conflicts[i]:
            extra["conflicts"] = conflicts[i]
        else:
            extra.pop("conflicts", None)
        out.append(replace(r, spans=spans[i], extra=extra))
    return out


def label_records(records: Sequence[Record], table_rows: Sequence[TableRow],
                  synonyms: Iterable[SynonymRow] | None = None,
                  policy: LabelPolicy = LabelPolicy(), calibration_fraction: float = 0.0,
                  seed: int = 0, progress: Callable[..., Iterable] | None = None
                  ) -> tuple[list[Record], LabelSummary]:
    """Label `records` from the catalog table; returns new records (input order) and the counts.

    Texts sharing a `product_id` (cid, else id) are one product and share its table rows. Spans the
    input records had are replaced (counted). `progress`, if given, wraps the product loop
    (e.g. a tqdm factory). Raises DataError for rows of unknown products when
    `policy.unknown_products == "error"`."""
    if not 0.0 <= calibration_fraction < 1.0:
        raise ValueError(f"calibration_fraction must be in [0, 1), not {calibration_fraction}")
    summary = LabelSummary(policy=asdict(policy), records=len(records), rows=len(table_rows))
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[r.product_id].append(i)
    rows_of: dict[str, list[TableRow]] = defaultdict(list)
    for row in table_rows:
        if row.product_id in groups:
            rows_of[row.product_id].append(row)
        else:
            summary.rows_unknown_product += 1
            summary.unknown_product_lines.append(row.line)
    if summary.rows_unknown_product and policy.unknown_products == "error":
        first = next(r for r in table_rows if r.product_id not in groups)
        raise DataError(f"product {first.product_id!r} is not among the products "
                        f"({summary.rows_unknown_product} such rows, lines "
                        f"{', '.join(map(str, summary.unknown_product_lines[:MAX_LISTED_LINES]))})",
                        line=first.line, field="product_id", reason="unknown product")
    summary.products = len(groups)
    syn = _synonym_index(synonyms)
    out: list[Record | None] = [None] * len(records)
    items: Iterable = groups.items()
    if progress is not None:
        items = progress(items, total=len(groups), desc="labelling", unit="product")
    for product_id, idx in items:
        rows = rows_of.get(product_id, [])
        summary.products_with_no_rows += not rows
        labelled = _label_product([records[i] for i in idx], rows, product_id, syn, policy,
                                  calibration_fraction, seed, summary)
        for i, r in zip(idx, labelled):
            out[i] = r
    summary.by_attribute = dict(sorted(summary.by_attribute.items()))
    return [r for r in out if r is not None], summary


@dataclass
class LabelRun:
    """What `label_files` read, did and wrote; `issues` holds the rows skipped per input."""

    summary: LabelSummary
    output: str
    summary_path: str
    issues: dict[str, RowIssues]
    written: WriteIssues

    def to_dict(self) -> dict[str, Any]:
        skipped = {name: {"rows_read": i.rows_read, "skipped": len(i.skipped),
                          "by_reason": dict(i.reasons())} for name, i in self.issues.items()}
        return {"output": self.output, **self.summary.to_dict(), "skipped_rows": skipped}


def summary_path_for(output: PathLike) -> Path:
    """`LABELED.jsonl` -> `LABELED.summary.json`, beside the output."""
    return Path(output).with_suffix(".summary.json")


def label_files(products: PathLike, catalog: PathLike, output: PathLike,
                synonyms: PathLike | None = None, policy: LabelPolicy = LabelPolicy(),
                calibration_fraction: float = 0.0, seed: int = 0, *,
                products_format: str | None = None, strict: bool = True,
                progress: Callable[..., Iterable] | None = None) -> LabelRun:
    """`mjave data label`: read products, table and synonyms, label, write the labelled records
    and the summary JSON beside them. The output must keep `extra` (JSONL or CoNLL)."""
    out_format = detect_labelled_format(output)
    if out_format == "jave":
        raise DataError("JAVE TSV cannot hold known_attributes, unmatched or calibration; "
                        "write .jsonl (or .conll)", path=str(output), reason="unknown format")
    inputs = [products, catalog, synonyms]
    check_not_input(output, inputs)
    check_not_input(summary_path_for(output), inputs, "the summary")
    issues = {"products": RowIssues(), "catalog": RowIssues(), "synonyms": RowIssues()}
    records = list(iter_records(products, products_format, strict, issues["products"]))
    if not records:
        raise DataError("no products to label", path=str(products), reason="no valid rows")
    rows = read_catalog_table(catalog, strict, issues["catalog"])
    syn = read_synonyms(synonyms, strict, issues["synonyms"]) if synonyms else None
    try:
        labelled, summary = label_records(records, rows, syn, policy, calibration_fraction, seed,
                                          progress=progress)
    except DataError as e:
        raise e.located(str(catalog)) from None
    written = write_records(labelled, output, out_format)
    path = summary_path_for(output)
    run = LabelRun(summary, str(output), str(path), issues, written)
    with atomic_write(path) as f:
        f.write(json.dumps(run.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return run
