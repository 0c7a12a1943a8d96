"""Suggest the attribute values a catalog table lacks, and flag the values the text contradicts.

`complete(model, products, catalog, output, ...)` streams the product texts through a trained
model (`mjave.inference.extractor.Extractor`: windowing of long texts, batching, category
restriction, spans with scores), groups the predicted values by product (`Record.product_id`:
the sentences of one product share it) and compares them with the product's table rows:

- **suggestion**: a value of an attribute the table has no row for, for that product;
- **conflict**: a value of an attribute the table has, whose normalised form differs from every
  table value of that attribute, scoring at least the conflict threshold.

Each suggestion has a `kind` (`mjave.completion.kinds`): `fills_known_gap` when at least
`known_attribute_share` of its product's category carry the attribute in the table, else
`new_attribute`. The threshold and every precision it reports are judged on held-out values of
attributes products are known to have, so they speak for `fills_known_gap` alone: the
suggestions file holds that kind (both with `include_new_attributes`, marked, no precision
claimed); the `new_attribute` ones go to `<output stem>.review<suffix>` for `mjave review`.

Several mentions of one (attribute, normalised value) in a product (in one sentence or several)
become one row: the score is the maximum over the mentions, `value`, `begin`, `end`, `evidence`
and `record_id` are those of the best-scoring mention, `mentions` counts them. `begin`/`end` are
character offsets into the text of `record_id` (the sentence); `evidence` is that text, or a
window of about 60 characters either side of the value in a long text.

**Bounded memory.** Nothing grows with the number of products in memory: the table rows, the
predicted mentions and the candidate rows live in a temporary SQLite database next to the output
(deleted at the end). The product texts are streamed `batch_size` at a time; the mentions are
grouped by product with an `ORDER BY product_id` (SQLite sorts on disk), so the sentences of a
product need not be adjacent in the input; the output is written in score order by a final
`ORDER BY score DESC` over the candidate rows (again on disk). The held-out (score, correct,
product) triples of the calibration are the one list kept in memory (one per held-out
suggestion; the product id is shared with the product's other suggestions).

**Threshold.** `min_precision=P` chooses the threshold on held-out known values
(`mjave.completion.calibrate.calibrate`): the `extra["calibration"]` pairs that
`mjave data label` split off (values the model was not trained on), or the gold of a
`calibration` file; without any held-out value `min_precision` is a DataError. When `P` cannot
be backed (no held-out suggestion to judge, no threshold's precision bound reaching `P`, or the
product-grouped cross-validated precision bound below `P`), the run **refuses**: a warning says
what precision it can back, at which threshold and with what recall, both files are written
with their header and no rows, and `summary.refused` is True; with `force` the rows scoring at
least that threshold are written anyway (`calibration.forced`). Otherwise `threshold` is used
(default 0: every value the model decodes). Either way the threshold and the precision/recall
it reaches on the held-out values (when there are any) are saved beside the output as
`<output stem>.calibration.json`.

**Reviews** (`reviews`: a `mjave review` database, `mjave.completion.reviewed`). The accepted
and rejected suggestions are judged pairs too, scored and kinded as this run scores and kinds
them: `fills_known_gap` is calibrated on the held-out pairs and its reviewed pairs,
`new_attribute` on its reviewed pairs alone, each with its own threshold and refusal. The
`new_attribute` rows of a backed kind scoring at least its threshold join the suggestions file
(inside the promise; the review file keeps the rest); an unbacked `new_attribute` kind never
refuses the run, its rows go to review as above; a backed one is written even when
`fills_known_gap` refuses (each kind keeps its own promise). `exclude_attributes` drops the
suggestions of the named attributes from every output and from the calibration. The summary
reports the precision of every judged attribute and how many more reviews an unbacked kind
needs.
Reviewers see the queue in score or uncertainty order, not at random, so with reviews the
promise is judged on the rows the run writes (`mjave.completion.stratify`): reviewed rows it
still writes count as themselves, the unreviewed ones are judged by the fair samples weighted
to their scores (the held-out pairs, and the reviews drawn in `random` queue order: the only
fair sample `new_attribute` can have), and other reviewed values it no longer writes judge
nothing.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from mjave.completion.calibrate import (HELD_OUT_EVIDENCE, Calibration, Judged, calibrate,
                                        fixed_threshold)
from mjave.completion.kinds import (FILLS_KNOWN_GAP, KINDS, NEW_ATTRIBUTE, CategoryShares,
                                    UNKNOWN_CATEGORY)
from mjave.completion.reviewed import (HELD_OUT, REVIEW, AttributePrecision, Evidence, Review,
                                       ReviewCounts, needs_statement,
                                       per_attribute, read_review_file)
from mjave.completion.stratify import stratify
from mjave.config.complete import DEFAULT_CONFIDENCE, EVIDENCE_WIDTH, CompleteConfig
from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import iter_records, read_table
from mjave.data.normalize import collapse_punctuation
from mjave.data.outputs import atomic_write, check_not_input, same_file
from mjave.data.records import Record
from mjave.data.rows import to_item
from mjave.data.tabular import required_text
from mjave.logs import make_bar

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

SUGGESTION_COLUMNS = ("product_id", "attribute", "value", "normalized_value", "score", "begin",
                      "end", "evidence", "record_id", "mentions", "kind")
"""Columns of the suggestions file (the first eight are the documented ones; `kind`:
`fills_known_gap` or `new_attribute`, `mjave.completion.kinds`)."""
CONFLICT_COLUMNS = ("product_id", "attribute", "table_value", "text_value", "score", "begin",
                    "end", "evidence", "record_id", "mentions")
"""Columns of the conflicts file; `table_value` joins several table values with " | "."""

JSONL_EXTENSIONS = (".jsonl", ".ndjson", ".json")   # else CSV
DEFAULT_CONFLICT_THRESHOLD = 0.5
ALL_ATTRIBUTES = "*"   # calibration: every predicted attribute of the product is judged
NO_EVIDENCE = 1.0      # the threshold when no held-out value could judge a suggestion


# --------------------------------------------------------------------------------------------
# The pure part: mentions of one product + its table rows -> rows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mention:
    """One predicted value in one text of a product."""

    product_id: str
    record_id: str
    attribute: str
    value: str
    normalized: str
    score: float
    begin: int | None     # None: a value named without a span (`model.implicit_values`)
    end: int | None
    evidence: str


@dataclass(frozen=True)
class Aggregated:
    """All mentions of one (attribute, normalised value) of a product: the best one, counted."""

    best: Mention
    mentions: int

    @property
    def score(self) -> float:
        return self.best.score


def evidence_window(text: str, begin: int, end: int, width: int = EVIDENCE_WIDTH) -> str:
    """The text if it is short (<= 2 * width + 40 characters), else about `width` characters
    either side of [begin, end), cut at word boundaries and marked with "…"; line breaks and
    tabs become spaces."""
    if len(text) > 2 * width + 40:
        start, stop = max(0, begin - width), min(len(text), end + width)
        if start > 0 and not text[start - 1].isspace():
            nxt = text.find(" ", start, begin)
            start = nxt + 1 if nxt >= 0 else start
        if stop < len(text) and not text[stop].isspace():
            prev = text.rfind(" ", end, stop)
            stop = prev if prev >= 0 else stop
        text = ("…" if start > 0 else "") + text[start:stop].strip() + \
            ("…" if stop < len(text) else "")
    return " ".join(text.split())


def mentions_of(product_id: str, record_id: str, text: str, values: Iterable[Mapping[str, Any]],
                normalize: Callable[[str], str] = collapse_punctuation,
                width: int = EVIDENCE_WIDTH) -> list[Mention]:
    """The mentions of one prediction (`Extractor` result "values"); empty values are dropped."""
    out = []
    for v in values:
        norm = normalize(v["value"])
        if not norm:
            continue
        if v["begin"] is None:   # named without a span (issue #31): no text to show
            out.append(Mention(product_id, record_id, v["attribute"], v["value"], norm,
                               float(v["score"]), None, None,
                               f"not in the text: named from the {v.get('source', 'image')}"))
            continue
        out.append(Mention(product_id, record_id, v["attribute"], v["value"], norm,
                           float(v["score"]), int(v["begin"]), int(v["end"]),
                           evidence_window(text, int(v["begin"]), int(v["end"]), width)))
    return out


def aggregate(mentions: Iterable[Mention]) -> list[Aggregated]:
    """One entry per (attribute, normalised value): the max-score mention (the first one on a
    tie), with the number of mentions. Order: by attribute, then normalised value."""
    best: dict[tuple[str, str], Mention] = {}
    count: Counter = Counter()
    for m in mentions:
        key = (m.attribute, m.normalized)
        count[key] += 1
        if key not in best or m.score > best[key].score:
            best[key] = m
    return [Aggregated(best[k], count[k]) for k in sorted(best)]


def table_index(rows: Iterable[tuple[str, str]], normalize: Callable[[str], str] = collapse_punctuation
                ) -> dict[str, dict[str, str]]:
    """attribute -> {normalised value: the first surface value} of one product's table rows."""
    out: dict[str, dict[str, str]] = {}
    for attribute, value in rows:
        out.setdefault(attribute, {}).setdefault(normalize(value), value)
    return out


def suggestion_row(a: Aggregated, kind: str | None = None) -> dict[str, Any]:
    m = a.best
    return {"product_id": m.product_id, "attribute": m.attribute, "value": m.value,
            "normalized_value": m.normalized, "score": m.score, "begin": m.begin, "end": m.end,
            "evidence": m.evidence, "record_id": m.record_id, "mentions": a.mentions,
            "kind": kind}


def conflict_row(a: Aggregated, table_values: Mapping[str, str]) -> dict[str, Any]:
    m = a.best
    return {"product_id": m.product_id, "attribute": m.attribute,
            "table_value": " | ".join(table_values.values()), "text_value": m.value,
            "score": m.score, "begin": m.begin, "end": m.end, "evidence": m.evidence,
            "record_id": m.record_id, "mentions": a.mentions}


def product_rows(mentions: Iterable[Mention], table: Mapping[str, Mapping[str, str]],
                 threshold: float = 0.0, conflict_threshold: float = 0.0,
                 kind_of: Callable[[str], str] | None = None
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(suggestions, conflicts) of one product, each sorted by score (descending).

    `table`: attribute -> {normalised value: surface value} (`table_index`) of the product.
    Suggestions: attributes not in `table`, score >= threshold, each with the `kind` that
    `kind_of(attribute)` gives (None without it). Conflicts: attributes in `table` whose
    normalised value is none of the table's, score >= conflict_threshold.
    """
    suggestions, conflicts = [], []
    for a in aggregate(mentions):
        known = table.get(a.best.attribute)
        if known is None:
            if a.score >= threshold:
                kind = kind_of(a.best.attribute) if kind_of is not None else None
                suggestions.append(suggestion_row(a, kind))
        elif a.best.normalized not in known and a.score >= conflict_threshold:
            conflicts.append(conflict_row(a, known))
    suggestions.sort(key=lambda r: -r["score"])
    conflicts.sort(key=lambda r: -r["score"])
    return suggestions, conflicts


def judge(aggregated: Iterable[Aggregated], held_out: Mapping[str, set[str]],
          judged: set[str]) -> list[tuple[float, bool]]:
    """(score, correct) of the suggestions of one product that held-out values can judge:
    those of an attribute in `judged` (or all, if it holds `ALL_ATTRIBUTES`); correct when the
    normalised value is a held-out value of that attribute (`held_out`: attribute -> values)."""
    return [(score, correct) for _, score, correct in judge_each(aggregated, held_out, judged)]


def judge_each(aggregated: Iterable[Aggregated], held_out: Mapping[str, set[str]],
               judged: set[str]) -> list[tuple[str, float, bool]]:
    """`judge` with each suggestion's attribute: (attribute, score, correct), for the precision
    per attribute."""
    every = ALL_ATTRIBUTES in judged
    return [(a.best.attribute, a.score, a.best.normalized in held_out.get(a.best.attribute, ()))
            for a in aggregated if every or a.best.attribute in judged]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def read_products(path: PathLike, input_format: str | None = None,
                  issues: RowIssues | None = None) -> Iterator[Record]:
    """Stream the products of a file in any format mjave reads (`mjave.data.formats`). With
    `issues`, bad rows are skipped into it (lenient); without, the first one raises."""
    return iter_records(path, input_format, strict=issues is None, issues=issues)


def read_catalog(path: PathLike) -> Iterator[tuple[str, str, str]]:
    """Stream (product_id, attribute, value) of a catalog table (CSV/TSV with a header, or
    JSONL), row by row, with the checks of `mjave.data.catalog_table.read_catalog_table`
    (which returns a list: a big table would not keep the memory flat). A bad row is a
    DataError naming the line."""
    from mjave.data.catalog_table import TABLE_COLUMNS
    for line, row in read_table(path, TABLE_COLUMNS):
        try:
            if isinstance(row, DataError):
                raise row
            yield (required_text(row, "product_id"), required_text(row, "attribute").strip(),
                   required_text(row, "value"))
        except DataError as e:
            raise e.located(str(path), line) from None


def _table_rows(catalog: Any) -> Iterable[tuple[str, str, str]]:
    if isinstance(catalog, (str, os.PathLike)):
        return read_catalog(catalog)
    out = []
    for r in catalog:
        if hasattr(r, "product_id"):
            out.append((str(r.product_id), r.attribute, r.value))
        else:
            pid, attr, value = r[:3]
            out.append((str(pid), attr, value))
    return out


def held_out_of(record: Record, gold: bool) -> tuple[list[tuple[str, str]], set[str]]:
    """(held-out (attribute, value) pairs, judged attributes) a record contributes.

    Its `extra["calibration"]` pairs when it has any (their attributes are judged); otherwise,
    for a gold calibration file (`gold=True`), its spans, judging the attributes in
    `extra["known_attributes"]` when the record has them, else every attribute."""
    pairs = record.extra.get("calibration") if isinstance(record.extra, dict) else None
    if pairs:
        out = []
        for p in pairs:
            if isinstance(p, Mapping):
                out.append((str(p["attribute"]), str(p["value"])))
            else:
                out.append((str(p[0]), str(p[1])))
        return out, {a for a, _ in out}
    if not gold:
        return [], set()
    known = record.known_attributes()
    return ([(s.attr, s.value) for s in record.spans],
            {ALL_ATTRIBUTES} if known is None else set(known))


# --------------------------------------------------------------------------------------------
# The on-disk working set
# --------------------------------------------------------------------------------------------


_SCHEMA = """
CREATE TABLE tbl (product_id TEXT, attribute TEXT, value TEXT, norm TEXT);
CREATE TABLE mention (product_id TEXT, record_id TEXT, attribute TEXT, value TEXT, norm TEXT,
                      score REAL, b INTEGER, e INTEGER, evidence TEXT, src INTEGER);
CREATE TABLE held (src INTEGER, product_id TEXT, attribute TEXT, norm TEXT,
                   UNIQUE (src, product_id, attribute, norm));
CREATE TABLE judged (src INTEGER, product_id TEXT, attribute TEXT,
                     UNIQUE (src, product_id, attribute));
CREATE TABLE product (src INTEGER, product_id TEXT, UNIQUE (src, product_id));
CREATE TABLE category (product_id TEXT PRIMARY KEY, category TEXT);
CREATE TABLE suggestion (product_id TEXT, attribute TEXT, value TEXT, normalized_value TEXT,
                         score REAL, b INTEGER, e INTEGER, evidence TEXT, record_id TEXT,
                         mentions INTEGER, kind TEXT);
CREATE TABLE conflict (product_id TEXT, attribute TEXT, table_value TEXT, text_value TEXT,
                       score REAL, b INTEGER, e INTEGER, evidence TEXT, record_id TEXT,
                       mentions INTEGER);
"""
PRODUCTS, CALIBRATION = 0, 1   # `src`: the products to complete, a --calibration file


class _Work:
    """A temporary SQLite database: the table, mentions, held-out values and candidate rows."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self._dir = tempfile.TemporaryDirectory(prefix=".mjave-complete-", dir=folder)
        self.db = sqlite3.connect(Path(self._dir.name) / "work.sqlite")
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                              "PRAGMA temp_store=FILE; PRAGMA cache_size=-8000;" + _SCHEMA)

    def load_table(self, rows: Iterable[tuple[str, str, str]]) -> int:
        n = 0
        chunk: list[tuple] = []
        for pid, attr, value in rows:
            chunk.append((pid, attr, value, collapse_punctuation(value)))
            if len(chunk) >= 5000:
                self.db.executemany("INSERT INTO tbl VALUES (?,?,?,?)", chunk)
                n += len(chunk)
                chunk = []
        self.db.executemany("INSERT INTO tbl VALUES (?,?,?,?)", chunk)
        n += len(chunk)
        self.db.execute("CREATE INDEX tbl_pid ON tbl (product_id)")
        return n

    def add(self, src: int, mentions: Sequence[Mention], products: Iterable[str],
            held: Iterable[tuple[str, str, str]], judged: Iterable[tuple[str, str]],
            categories: Iterable[tuple[str, str]] = ()) -> None:
        self.db.executemany("INSERT INTO mention VALUES (?,?,?,?,?,?,?,?,?,?)",
                            [(m.product_id, m.record_id, m.attribute, m.value, m.normalized,
                              m.score, m.begin, m.end, m.evidence, src) for m in mentions])
        self.db.executemany("INSERT OR IGNORE INTO product VALUES (?,?)",
                            [(src, p) for p in products])
        self.db.executemany("INSERT OR IGNORE INTO held VALUES (?,?,?,?)",
                            [(src, p, a, n) for p, a, n in held])
        self.db.executemany("INSERT OR IGNORE INTO judged VALUES (?,?,?)",
                            [(src, p, a) for p, a in judged])
        if src == PRODUCTS:   # the first category a product's texts name
            self.db.executemany("INSERT OR IGNORE INTO category VALUES (?,?)",
                                list(categories))

    def shares(self, cut: float) -> CategoryShares:
        """Per category, its products (of the products file and of the table) and how many
        carry each attribute in the table: counted on disk, only the counts come back."""
        everyone = ("SELECT product_id FROM product WHERE src=0 UNION "
                    "SELECT product_id FROM tbl")
        of = ("SELECT u.product_id, coalesce(c.category, ?) AS category FROM "
              f"({everyone}) u LEFT JOIN category c USING (product_id)")
        products = dict(self.db.execute(
            f"SELECT category, count(*) FROM ({of}) GROUP BY category", (UNKNOWN_CATEGORY,)))
        carrying = {(c, a): n for c, a, n in self.db.execute(
            f"SELECT p.category, t.attribute, count(DISTINCT t.product_id) FROM tbl t "
            f"JOIN ({of}) p USING (product_id) GROUP BY p.category, t.attribute",
            (UNKNOWN_CATEGORY,))}
        return CategoryShares(products, carrying, cut)

    def category_of(self, pid: str) -> str:
        row = self.db.execute("SELECT category FROM category WHERE product_id=?",
                              (pid,)).fetchone()
        return row[0] if row else UNKNOWN_CATEGORY

    def products(self, src: int) -> int:
        return self.db.execute("SELECT count(*) FROM product WHERE src=?", (src,)).fetchone()[0]

    def n_held(self, src: int, excluded: Sequence[str] = ()) -> int:
        """Held-out values of `src`, those of the `excluded` attributes left out."""
        off = f" AND attribute NOT IN ({','.join('?' * len(excluded))})" if excluded else ""
        return self.db.execute(f"SELECT count(*) FROM held WHERE src=?{off}",
                               (src, *excluded)).fetchone()[0]

    def review_scores(self, reviews: Sequence[Review], held_src: int
                      ) -> Iterator[tuple[Review, float | None, str, bool, bool]]:
        """Per review: this run's score of its (product, attribute, normalised value) (the
        best mention; None when no text of the products states it now), the product's
        category, whether held-out values of `held_src` judge that (product, attribute), and
        whether it is one of this run's candidate suggestions."""
        self.db.executescript(
            "CREATE INDEX IF NOT EXISTS mention_key ON mention (src, product_id, attribute, "
            "norm); CREATE INDEX IF NOT EXISTS suggestion_key ON suggestion (product_id, "
            "attribute, normalized_value); CREATE TEMP TABLE IF NOT EXISTS rev (i INTEGER "
            "PRIMARY KEY, product_id TEXT, attribute TEXT, norm TEXT, fair INTEGER); "
            "DELETE FROM rev;")
        self.db.executemany("INSERT INTO rev VALUES (?,?,?,?,?)",
                            [(i, *r.key, int(r.fair)) for i, r in enumerate(reviews)])
        cur = self.db.execute(
            "SELECT r.i, (SELECT max(m.score) FROM mention m WHERE m.src=? AND "
            "m.product_id=r.product_id AND m.attribute=r.attribute AND m.norm=r.norm), "
            "coalesce(c.category, ?), EXISTS (SELECT 1 FROM judged j WHERE j.src=? AND "
            "j.product_id=r.product_id AND j.attribute IN (r.attribute, ?)), "
            "EXISTS (SELECT 1 FROM suggestion s WHERE s.product_id=r.product_id AND "
            "s.attribute=r.attribute AND s.normalized_value=r.norm) "
            "FROM rev r LEFT JOIN category c USING (product_id) ORDER BY r.i",
            (PRODUCTS, UNKNOWN_CATEGORY, held_src, ALL_ATTRIBUTES))
        for i, score, category, held, candidate in cur:
            yield reviews[i], score, category, bool(held), bool(candidate)

    def unreviewed_scores(self, kind: str) -> list[float]:
        """The scores of the candidate suggestions of `kind` that no review chosen by the queue
        decided (the temporary `rev` table of `review_scores`). A fair review's candidate
        stays in: the fair sample judges it with the rest, as one of the rows it stands for."""
        return [s for (s,) in self.db.execute(
            "SELECT score FROM suggestion s WHERE kind=? AND NOT EXISTS (SELECT 1 FROM rev r "
            "WHERE r.product_id=s.product_id AND r.attribute=s.attribute AND "
            "r.norm=s.normalized_value AND NOT r.fair)", (kind,))]

    def drop_attributes(self, attributes: Sequence[str]) -> Counter:
        """Delete the candidate suggestions of `attributes`; returns how many, by (attribute,
        kind)."""
        if not attributes:
            return Counter()
        marks = ",".join("?" * len(attributes))
        dropped = Counter({(a, k): n for a, k, n in self.db.execute(
            f"SELECT attribute, kind, count(*) FROM suggestion WHERE attribute IN ({marks}) "
            f"GROUP BY attribute, kind", tuple(attributes))})
        self.db.execute(f"DELETE FROM suggestion WHERE attribute IN ({marks})", tuple(attributes))
        self.db.commit()
        return dropped

    def by_product(self, src: int) -> Iterator[tuple[str, list[Mention]]]:
        cur = self.db.execute(
            "SELECT product_id, record_id, attribute, value, norm, score, b, e, evidence "
            "FROM mention WHERE src=? ORDER BY product_id, rowid", (src,))
        for pid, rows in groupby(cur, key=lambda r: r[0]):
            yield pid, [Mention(*r) for r in rows]

    def table_of(self, pid: str) -> dict[str, dict[str, str]]:
        rows = self.db.execute("SELECT attribute, value FROM tbl WHERE product_id=? "
                               "ORDER BY rowid", (pid,)).fetchall()
        return table_index(rows)

    def held_of(self, src: int, pid: str) -> tuple[dict[str, set[str]], set[str]]:
        held: dict[str, set[str]] = {}
        for a, n in self.db.execute("SELECT attribute, norm FROM held WHERE src=? AND "
                                    "product_id=?", (src, pid)):
            held.setdefault(a, set()).add(n)
        judged = {a for (a,) in self.db.execute("SELECT attribute FROM judged WHERE src=? AND "
                                                "product_id=?", (src, pid))}
        return held, judged

    def close(self) -> None:
        self.db.close()
        self._dir.cleanup()


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


@dataclass
class CompletionSummary:
    """What one `complete` run did."""

    products_file: str
    output: str
    conflicts_output: str
    texts: int = 0                 # texts (sentences) read
    failed: int = 0                # texts that could not be predicted
    reasons: Counter = field(default_factory=Counter)
    products: int = 0              # distinct products predicted
    table_rows: int = 0
    mentions: int = 0              # predicted values, before grouping
    suggestions: int = 0           # rows written (score >= threshold)
    conflicts: int = 0             # rows written (score >= conflict threshold)
    candidates: int = 0            # suggestion rows before the threshold
    candidates_by_kind: Counter = field(default_factory=Counter)
    # the two kinds (mjave.completion.kinds): the cut, the (category, attribute) pairs above
    # it, the new_attribute rows written to the review file and whether the suggestions file
    # holds them too
    review_output: str = ""
    known_attribute_share: float = 0.0
    known_attributes: int = 0
    new_attributes: int = 0
    new_attributes_included: bool = False
    threshold: float = 0.0
    conflict_threshold: float = DEFAULT_CONFLICT_THRESHOLD
    calibration: Calibration | None = None
    calibration_file: str | None = None
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    refused: bool = False          # min_precision could not be backed for fills_known_gap: none
    # of its rows were written (backed new_attribute rows still are)
    # (score, correct, product) of the held-out suggestions (`Judged`; indexable as the old
    # (score, correct) pairs) and the number of held-out values: what the threshold was (or can
    # be) chosen on; not saved in the calibration JSON.
    held_out_pairs: list[Judged] = field(default_factory=list, repr=False)
    held_out_values: int = 0
    held_out_attributes: list[str] = field(default_factory=list, repr=False)  # of each pair
    # reviews as calibration data (`reviews`): what the database gave, its judged pairs, each
    # kind's own calibration, the threshold backing new_attribute rows (None: not backed) and
    # how many of them the suggestions file got, what an unbacked kind still needs
    reviews: ReviewCounts | None = None
    reviewed: list[Evidence] = field(default_factory=list, repr=False)
    by_kind: dict[str, Calibration] = field(default_factory=dict)
    new_threshold: float | None = None
    new_attributes_backed: int = 0
    needs: dict[str, str] = field(default_factory=dict)
    # with reviews, the rows written judged as a finite set (`mjave.completion.stratify`):
    # what was left out, per kind
    weighting: dict[str, str] = field(default_factory=dict)
    # precision per judged attribute (held-out and reviews), the lowest bound first, and the
    # candidate suggestions dropped by `exclude_attributes`, by attribute
    attributes: list[AttributePrecision] = field(default_factory=list)
    excluded: Counter = field(default_factory=Counter)
    confidence: float = DEFAULT_CONFIDENCE

    def to_dict(self) -> dict[str, Any]:
        return {"products_file": self.products_file, "output": self.output,
                "conflicts_output": self.conflicts_output, "texts": self.texts,
                "failed": self.failed, "reasons": dict(self.reasons), "products": self.products,
                "table_rows": self.table_rows, "mentions": self.mentions,
                "suggestions": self.suggestions, "conflicts": self.conflicts,
                "candidates": self.candidates, "threshold": self.threshold,
                "kinds": self.kinds_dict(),
                "conflict_threshold": self.conflict_threshold,
                "calibration": self.calibration.to_dict() if self.calibration else None,
                "calibration_file": self.calibration_file, "files": list(self.files),
                "refused": self.refused, "seconds": round(self.seconds, 2),
                "reviews": self.reviews.to_dict() if self.reviews else None,
                "weighting": dict(self.weighting),
                "per_attribute": [a.to_dict() for a in self.attributes],
                "excluded_attributes": dict(self.excluded)}

    @property
    def backed_kinds(self) -> list[str]:
        """The kinds the written rows' promise covers."""
        return [FILLS_KNOWN_GAP] + ([NEW_ATTRIBUTE] if self.new_threshold is not None else [])

    def kinds_dict(self) -> dict[str, Any]:
        """The two kinds in the calibration JSON: the cut, the counts, where each went."""
        return {"known_attribute_share": self.known_attribute_share,
                "known_attributes": self.known_attributes,
                "candidates": {k: self.candidates_by_kind.get(k, 0) for k in KINDS},
                "new_attribute_rows": self.new_attributes,
                "new_attributes_included": self.new_attributes_included,
                "review_output": self.review_output,
                "precision_backed_for": ", ".join(self.backed_kinds),
                "calibration_by_kind": {k: c.to_dict() for k, c in self.by_kind.items()},
                "new_attribute_threshold": self.new_threshold,
                "new_attribute_backed_rows": self.new_attributes_backed,
                "reviews_needed": dict(self.needs)}

    def unbacked(self) -> str:
        """The plain statement about the `new_attribute` suggestions (summary and log)."""
        where = (f"included in {self.output} (kind new_attribute) and in {self.review_output}"
                 if self.new_attributes_included else
                 f"written to {self.review_output} for review (mjave review), not to "
                 f"{self.output}")
        if self.new_threshold is not None:
            return (f"{self.new_attributes} new_attribute suggestions score below "
                    f"{self.new_threshold:.4f}, the threshold reviews back for them: no "
                    f"promise covers them; {where}")
        return (f"{self.new_attributes} new_attribute suggestions (attributes fewer than "
                f"{self.known_attribute_share:g} of their category's products carry in the "
                f"table): no held-out data can back their precision, no threshold promises "
                f"one; {where}")

    def kinds_line(self) -> str:
        """How the suggestions split: the cut and the count of each kind."""
        known = self.candidates_by_kind.get(FILLS_KNOWN_GAP, 0)
        new = self.candidates_by_kind.get(NEW_ATTRIBUTE, 0)
        return (f"kinds: fills_known_gap when >= {self.known_attribute_share:g} of the "
                f"category's products carry the attribute in the table "
                f"({self.known_attributes} category attributes); candidates: {known} "
                f"fills_known_gap, {new} new_attribute; " +
                ("each kind has its own threshold, judged on held-out values and reviews "
                 "(fills_known_gap) or on reviews alone (new_attribute)" if self.reviews else
                 "the threshold and any precision below are judged on held-out values and "
                 "speak for fills_known_gap only"))

    def evidence_lines(self, shown: int = 10) -> list[str]:
        """The reviews used, each kind's own calibration, what an unbacked kind needs, the
        excluded attributes and the precision of the judged attributes (the worst `shown`)."""
        lines = [self.reviews.line()] if self.reviews else []
        lines += [f"{k}: {c.summary()}" for k, c in self.by_kind.items() if k != FILLS_KNOWN_GAP]
        if self.needs:
            lines.append("reviews needed: " + "; ".join(self.needs.values()))
        lines += [f"{k}: {note}" for k, note in self.weighting.items()]
        if self.excluded:
            dropped = sorted(self.excluded.items())
            lines.append("excluded attributes: " + ", ".join(
                f"{a} ({n} candidate suggestions dropped)" for a, n in dropped))
        if self.attributes:
            more = len(self.attributes) - shown
            lines.append(f"precision per attribute (lowest {self.confidence:g}-confidence bound "
                         "first): " + "; ".join(a.text() for a in self.attributes[:shown]) +
                         (f"; {more} more in the calibration JSON" if more > 0 else ""))
        return lines

    def summary(self) -> str:
        backed_new = (f"; {self.new_attributes_backed} of them new_attribute scoring >= "
                      f"{self.new_threshold:.4f}, backed by reviews"
                      if self.new_threshold is not None else "")
        if self.refused:
            backed = (f"{self.suggestions} new_attribute suggestions scoring >= "
                      f"{self.new_threshold:.4f}, backed by reviews, and 0 fills_known_gap "
                      f"(refused: the requested precision cannot be backed for them; "
                      f"{self.candidates} candidates) -> {self.output}"
                      if self.new_threshold is not None else None)
            written = [backed or f"0 suggestions (refused: the requested precision cannot be "
                       f"backed; {self.candidates} candidates) -> {self.output} (header only)",
                       f"0 new_attribute suggestions (refused) -> {self.review_output} "
                       f"(header only)",
                       f"0 conflicts (refused) -> {self.conflicts_output} (header only)"]
        else:
            what = "both kinds" if self.new_attributes_included else "fills_known_gap"
            written = [f"{self.suggestions} suggestions ({what}, score >= "
                       f"{self.threshold:.4f}{backed_new}, of {self.candidates}) -> "
                       f"{self.output}",
                       self.unbacked() if self.new_attributes else
                       f"0 new_attribute suggestions -> {self.review_output}",
                       f"{self.conflicts} conflicts (score >= {self.conflict_threshold:.4f}) -> "
                       f"{self.conflicts_output}"]
        lines = [f"{self.texts} texts of {self.products} products from {self.products_file} "
                 f"({self.failed} failed) in {self.seconds:.1f} s", *written,
                 self.kinds_line()]
        if self.calibration is not None:
            lines.append(self.calibration.summary())
        lines += self.evidence_lines()
        if self.reasons:
            lines.append("failures: " + ", ".join(f"{n} x {r}"
                                                  for r, n in self.reasons.most_common()))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------


def _sweep(extractor: Any, records: Iterable[Record], work: _Work, src: int, gold: bool,
           batch_size: int, image_root: PathLike | None, bar: Any,
           summary: CompletionSummary | None, width: int) -> int:
    """Predict every record batch by batch into the working database; returns the texts read."""
    batch: list[tuple[Record, dict[str, Any]]] = []
    n = 0

    def flush() -> None:
        if not batch:
            return
        results = extractor.predict_batch([item for _, item in batch], errors="return")
        mentions: list[Mention] = []
        held: list[tuple[str, str, str]] = []
        judged: list[tuple[str, str]] = []
        categories = [(str(r.product_id), r.category) for r, _ in batch if r.category]
        for (r, _), res in zip(batch, results):
            pid = str(r.product_id)
            pairs, attrs = held_out_of(r, gold)
            held.extend((pid, a, collapse_punctuation(v)) for a, v in pairs)
            judged.extend((pid, a) for a in attrs)
            if "error" in res:
                if summary is not None:
                    summary.failed += 1
                    summary.reasons[res.get("reason", "error")] += 1
                continue
            mentions.extend(mentions_of(pid, str(r.id), r.text, res["values"], width=width))
        work.add(src, mentions, [str(r.product_id) for r, _ in batch], held, judged,
                 categories)
        if summary is not None:
            summary.mentions += len(mentions)
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    for record in records:
        n += 1
        try:
            # confined to the image root as `mjave predict` is (an image outside it: an error)
            item = to_item(record, image_root, uses_image=extractor.uses_image,
                           missing_image=extractor.missing_image, confine=True)
        except DataError as e:
            if summary is not None:
                summary.failed += 1
                summary.reasons[e.reason] += 1
            continue
        batch.append((record, item))
        if len(batch) >= batch_size:
            flush()
    flush()
    work.db.commit()
    return n


def _rows_pass(work: _Work, src: int, shares: CategoryShares | None = None
               ) -> tuple[list[Judged], Counter, list[str]]:
    """Group the mentions of `src` by product: candidate rows into the database (products to
    complete, each of the kind `shares` gives it) and the held-out (score, correct, product).
    Returns (those, candidate rows by kind, the attribute of each held-out pair)."""
    pairs: list[Judged] = []
    attributes: list[str] = []
    candidates: Counter = Counter()
    sug_buf: list[tuple] = []
    con_buf: list[tuple] = []

    def flush() -> None:
        work.db.executemany("INSERT INTO suggestion VALUES (?,?,?,?,?,?,?,?,?,?,?)", sug_buf)
        work.db.executemany("INSERT INTO conflict VALUES (?,?,?,?,?,?,?,?,?,?)", con_buf)
        sug_buf.clear()
        con_buf.clear()

    for pid, mentions in work.by_product(src):
        held, judged = work.held_of(src, pid)
        if judged:
            for a, score, correct in judge_each(aggregate(mentions), held, judged):
                pairs.append(Judged(score, correct, pid))
                attributes.append(a)
        if src != PRODUCTS:
            continue
        category = work.category_of(pid)
        kind_of = (lambda a: shares.kind(category, a)) if shares is not None else None
        sugg, conf = product_rows(mentions, work.table_of(pid), kind_of=kind_of)
        candidates.update(r["kind"] for r in sugg)
        sug_buf.extend(tuple(r[c] for c in SUGGESTION_COLUMNS) for r in sugg)
        con_buf.extend(tuple(r[c] for c in CONFLICT_COLUMNS) for r in conf)
        if len(sug_buf) + len(con_buf) >= 5000:
            flush()
    flush()
    work.db.commit()
    return pairs, candidates, attributes


class _RowWriter:
    """CSV (header + rows) or JSONL, into an open file."""

    def __init__(self, f: Any, columns: Sequence[str], jsonl: bool):
        self.columns = columns
        self.jsonl = jsonl
        self._f = f
        if not self.jsonl:
            self._w = csv.writer(self._f, lineterminator="\n")
            self._w.writerow(columns)

    def write(self, row: Sequence[Any]) -> None:
        row = [round(v, 6) if isinstance(v, float) else v for v in row]
        if self.jsonl:
            self._f.write(json.dumps(dict(zip(self.columns, row)), ensure_ascii=False) + "\n")
        else:
            self._w.writerow(row)


Band = tuple[str | None, float, float | None]
"""(kind or None for any, lowest score kept, score from which on rows are not kept or None)."""


def _write_sorted(work: _Work, table: str, columns: Sequence[str], path: Path,
                  bands: Sequence[Band], rows: bool = True) -> int:
    """Rows of `table` in any of `bands` (suggestions of a kind, or any row, scoring in
    [low, high)), by score (descending), then product, attribute; `rows=False` or no band: the
    header alone (a refused run). Written atomically (`atomic_write`): a failed run leaves the
    previous file, never half of one."""
    second = "normalized_value" if table == "suggestion" else "text_value"
    where, args = _bands_sql(bands)
    cur = work.db.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY score "
                          f"DESC, product_id, attribute, {second} LIMIT ?",
                          (*args, -1 if rows else 0))     # LIMIT -1: no limit
    jsonl = path.suffix.lower() in JSONL_EXTENSIONS
    n = 0
    with atomic_write(path, newline="\n" if jsonl else "") as f:
        writer = _RowWriter(f, columns, jsonl)
        for row in cur:
            writer.write(row)
            n += 1
    return n


def _bands_sql(bands: Sequence[Band]) -> tuple[str, list[Any]]:
    """The WHERE clause selecting the rows of any band (none: no row)."""
    parts, args = [], []
    for kind, low, high in bands:
        part = "score >= ?"
        args.append(low)
        if high is not None:
            part += " AND score < ?"
            args.append(high)
        if kind is not None:
            part += " AND kind = ?"
            args.append(kind)
        parts.append(f"({part})")
    return (" OR ".join(parts) or "0"), args


def calibration_path(output: PathLike) -> Path:
    """`SUGGESTIONS.calibration.json` beside `SUGGESTIONS.csv`."""
    output = Path(output)
    return output.with_name(output.stem + ".calibration.json")


def review_path(output: PathLike) -> Path:
    """`SUGGESTIONS.review.csv` beside `SUGGESTIONS.csv` (same format): the `new_attribute`
    suggestions, for `mjave review` rather than for accepting."""
    output = Path(output)
    return output.with_name(output.stem + ".review" + output.suffix)




def _records(source: Any, input_format: str | None, issues: RowIssues) -> Iterable[Record]:
    if isinstance(source, (str, os.PathLike)):
        return read_products(source, input_format, issues)
    return source


def _source_name(source: Any) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "(records)"


def _count_skipped(issues: RowIssues, summary: CompletionSummary) -> None:
    """Rows the reader skipped (lenient) are texts that failed, counted by reason."""
    summary.texts += len(issues.skipped)
    summary.failed += len(issues.skipped)
    summary.reasons.update(e.reason for e in issues.skipped)
    for e in issues.skipped[:5]:
        log.warning("skipped: %s", e)


def _settings(config: CompleteConfig | None, options: Mapping[str, Any]) -> CompleteConfig:
    """`config` (default `CompleteConfig()`) with keyword `options` over it; paths as strings."""
    options = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in options.items()}
    try:
        return replace(config or CompleteConfig(), **options)
    except TypeError as e:   # an option that is no field of CompleteConfig
        raise TypeError(f"complete(): {e}") from None


def _output_paths(output: PathLike, conflicts: str | None, inputs: Sequence[Any]
                  ) -> tuple[Path, Path]:
    """(suggestions, conflicts) files, refused before any work when they would overwrite an
    input or each other, or the suggestions' format is unknown."""
    output = Path(output)
    conflicts_path = Path(conflicts) if conflicts else output.with_name("conflicts.csv")
    if output.suffix.lower() not in (".csv", *JSONL_EXTENSIONS):
        raise DataError("the suggestions file must be .csv or .jsonl", path=str(output),
                        reason="unknown format")
    if same_file(conflicts_path, output):
        raise DataError("the conflicts file would overwrite the suggestions",
                        path=str(conflicts_path), reason="same file")
    check_not_input(output, inputs, "the suggestions file")
    check_not_input(conflicts_path, inputs, "the conflicts file")
    check_not_input(calibration_path(output), inputs, "the calibration summary")
    check_not_input(review_path(output), inputs, "the review file")
    if same_file(conflicts_path, review_path(output)):
        raise DataError("the conflicts file would overwrite the review file",
                        path=str(conflicts_path), reason="same file")
    return output, conflicts_path


def _extractor(model_or_extractor: Any, cfg: CompleteConfig) -> Any:
    """A loaded `Extractor` (a model folder is loaded on `cfg.device`)."""
    if isinstance(model_or_extractor, (str, os.PathLike)):
        from mjave.inference.extractor import Extractor
        return Extractor.load(model_or_extractor, device=cfg.device, batch_size=cfg.batch_size)
    return model_or_extractor


def _predict_into(work: _Work, extractor: Any, source: Any, src: int, cfg: CompleteConfig,
                  progress: Any, summary: CompletionSummary | None) -> tuple[int, RowIssues]:
    """Predict the texts of `source` (a file or Records; a calibration source's spans are its
    gold) into the working database behind a progress bar: (texts read, rows skipped)."""
    name = _source_name(source)
    verb = "calibrate" if src == CALIBRATION else "complete"
    input_format = cfg.input_format if src == PRODUCTS else None
    bar = make_bar(progress, None, f"{verb} {Path(name).name}", "text")
    issues = RowIssues()
    try:
        n = _sweep(extractor, _records(source, input_format, issues), work, src,
                   src == CALIBRATION, cfg.batch_size, cfg.image_root, bar, summary,
                   cfg.evidence_width)
    finally:
        if bar is not None:
            bar.close()
    return n, issues


def _products_pass(work: _Work, extractor: Any, products: Any, cfg: CompleteConfig,
                   progress: Any, summary: CompletionSummary) -> CategoryShares:
    """The first pass: predict the products, then turn their mentions into candidate rows and
    the held-out (score, correct, product) of their calibration pairs. Returns the shares the
    kinds were cut on."""
    summary.texts, issues = _predict_into(work, extractor, products, PRODUCTS, cfg, progress,
                                          summary)
    _count_skipped(issues, summary)
    summary.products = work.products(PRODUCTS)
    shares = work.shares(cfg.known_attribute_share)
    summary.known_attributes = shares.known_attributes()
    summary.held_out_pairs, summary.candidates_by_kind, summary.held_out_attributes = \
        _rows_pass(work, PRODUCTS, shares)
    summary.candidates = sum(summary.candidates_by_kind.values())
    summary.held_out_values = work.n_held(PRODUCTS)
    return shares


def _calibration_pass(work: _Work, extractor: Any, calibration: Any, cfg: CompleteConfig,
                      progress: Any, summary: CompletionSummary) -> str:
    """The second pass, with a calibration file: its gold replaces the products' held-out
    values. Returns the name the threshold's source goes by."""
    if calibration is None:
        return "the held-out values of the products"
    name = summary.calibration_file = _source_name(calibration)
    _, issues = _predict_into(work, extractor, calibration, CALIBRATION, cfg, progress, None)
    if issues.skipped:
        log.warning("%s: %s", name, issues.summary())
    summary.held_out_pairs, _, summary.held_out_attributes = _rows_pass(work, CALIBRATION)
    summary.held_out_values = work.n_held(CALIBRATION)
    return name


def _reviews_pass(work: _Work, reviews: Sequence[Review], path: str, shares: CategoryShares,
                  held_src: int, summary: CompletionSummary) -> None:
    """Judge each reviewed suggestion as this run would write it: this run's score and this
    table's kind. Not used: one no text states now (no score to judge) and one held-out values
    judge already (counted once)."""
    counts = ReviewCounts(path, Counter(r.action for r in reviews))
    for review, score, category, held, candidate in work.review_scores(reviews, held_src):
        if held:
            counts.held_out += 1
        elif score is None:
            counts.not_predicted += 1
        else:
            kind = shares.kind(category, review.attribute)
            summary.reviewed.append(Evidence(review.attribute, kind, REVIEW,
                                             Judged(score, review.correct, review.product_id),
                                             candidate, review.fair))
            counts.used[kind] += 1
            counts.fair[kind] += int(review.fair)
            counts.by_attribute[review.attribute] += 1
    summary.reviews = counts


def _exclude(work: _Work, attributes: Sequence[str], summary: CompletionSummary) -> None:
    """Drop the candidate suggestions of `attributes`, counted per attribute (and taken off the
    candidates of their kind)."""
    for a in attributes:
        summary.excluded[a] = 0
    for (a, kind), n in work.drop_attributes(attributes).items():
        summary.excluded[a] += n
        summary.candidates_by_kind[kind] -= n
    summary.candidates = sum(summary.candidates_by_kind.values())
    for a in attributes:
        if not summary.excluded[a]:
            log.warning("--exclude-attribute %s: no suggestion of that attribute to drop", a)


def _evidence(summary: CompletionSummary) -> list[Evidence]:
    """Every judged pair of the run: the held-out ones (they judge `fills_known_gap`), then the
    reviewed ones."""
    held = [Evidence(a, FILLS_KNOWN_GAP, HELD_OUT, p)
            for p, a in zip(summary.held_out_pairs, summary.held_out_attributes)]
    return held + summary.reviewed


def _backed_threshold(kind: str, pairs: list[Judged], n_gold: int, cfg: CompleteConfig,
                      source: str, evidence: str, summary: CompletionSummary, output: Path,
                      conflicts: Path) -> Calibration:
    """The threshold that backs `cfg.min_precision` for `kind`, warning when it refuses or is
    forced. `fills_known_gap` refusing refuses the run; `new_attribute` is never forced: its
    rows only join the promise when it is backed, else they go to review as without reviews."""
    new = kind == NEW_ATTRIBUTE
    cal = calibrate(pairs, cfg.min_precision, n_gold, fallback=NO_EVIDENCE, source=source,
                    confidence=cfg.confidence, folds=cfg.cv_folds, seed=cfg.cv_seed,
                    force=cfg.force and not new, evidence=evidence)
    if new:
        if not cal.backed:
            log.warning("new_attribute: %s. Their suggestions stay in %s for review", cal.warning,
                        summary.review_output)
    elif cal.refused:
        log.warning("%s. No fills_known_gap row is written above a threshold that cannot "
                    "be backed: %s gets none of them (only new_attribute rows that reviews "
                    "back), %s and %s get their header only (force writes the suggestions "
                    "scoring >= %.4f anyway)", cal.warning, output, conflicts,
                    summary.review_output, cal.threshold)
    elif cal.forced:
        log.warning("%s. Forced: writing the suggestions scoring >= %.4f anyway",
                    cal.warning, cal.threshold)
    elif cal.warning:
        log.warning("%s", cal.warning)
    return cal


def _calibrate(work: _Work, summary: CompletionSummary, cfg: CompleteConfig, source: str,
               held_src: int, output: Path, conflicts: Path) -> None:
    """Set the summary's thresholds: chosen for `min_precision` (which may refuse), else the
    fixed one, judged on the held-out values and reviews where there are any. With reviews
    each kind gets its own; the excluded attributes judge nothing."""
    excluded = set(cfg.exclude_attributes)
    pairs: dict[str, list[Judged]] = {k: [] for k in KINDS}
    known: dict[str, list[Judged]] = {k: [] for k in KINDS}   # reviewed rows it still writes
    accepted: Counter = Counter()   # reviewed right values: gold, for the recall
    for e in _evidence(summary):
        if e.attribute not in excluded:
            if e.source == REVIEW and not e.fair:
                if e.candidate:
                    known[e.kind].append(e.judged)
            else:   # held-out pairs and reviews drawn at random: fair samples
                pairs[e.kind].append(e.judged)
            accepted[e.kind] += int(e.source == REVIEW and e.judged.correct)
    n_gold = {FILLS_KNOWN_GAP: work.n_held(held_src, cfg.exclude_attributes) +
              accepted[FILLS_KNOWN_GAP], NEW_ATTRIBUTE: accepted[NEW_ATTRIBUTE]}
    reviews = summary.reviews
    unbackable: set[str] = set()    # kinds whose unreviewed rows no fair sample judges
    if reviews is not None:   # judge the rows written (mjave.completion.stratify)
        for kind in KINDS:
            strata = stratify(pairs[kind], known[kind], work.unreviewed_scores(kind))
            pairs[kind] = strata.pairs
            if strata.note():
                summary.weighting[kind] = strata.note() or ""
            if strata.floor is not None and not pairs[kind]:
                unbackable.add(kind)
    reviewed = f"the reviews in {reviews.path}" if reviews is not None else ""
    sources = {FILLS_KNOWN_GAP: f"{source} and {reviewed}" if reviewed else source,
               NEW_ATTRIBUTE: reviewed}
    kinds = KINDS if reviews is not None else (FILLS_KNOWN_GAP,)
    evidence = {FILLS_KNOWN_GAP: HELD_OUT_EVIDENCE if reviews is None else
                f"{HELD_OUT_EVIDENCE} or reviewed", NEW_ATTRIBUTE: "reviewed"}
    if cfg.min_precision is not None:
        if not summary.held_out_values and reviews is None:
            raise DataError("--min-precision needs held-out known values: label the "
                            "products with a calibration fraction (mjave data label) or "
                            "give a --calibration file", reason="no calibration values")
        for kind in kinds:
            summary.by_kind[kind] = _backed_threshold(kind, pairs[kind], n_gold[kind], cfg,
                                                      sources[kind], evidence[kind], summary,
                                                      output, conflicts)
        cal = summary.calibration = summary.by_kind[FILLS_KNOWN_GAP]
        summary.threshold, summary.refused = cal.threshold, cal.refused
        new = summary.by_kind.get(NEW_ATTRIBUTE)
        summary.new_threshold = new.threshold if new is not None and new.backed else None
        for kind in KINDS:
            if kind in summary.by_kind or summary.candidates_by_kind.get(kind, 0) > 0:
                need = needs_statement(kind, summary.by_kind.get(kind), cfg.min_precision,
                                       cfg.confidence)
                if need and kind in unbackable:
                    need = (f"{kind}: reviews taken in queue order vouch only for the rows they "
                            f"decided; its unreviewed suggestions need a fair sample judged "
                            f"(held-out values, or reviews drawn in `random` queue order) "
                            f"before precision {cfg.min_precision:g} can be backed for them")
                if need:
                    summary.needs[kind] = need
    else:
        summary.threshold = float(cfg.threshold or 0.0)
        for kind in kinds:   # judged where there is something to judge on
            if (summary.held_out_values if reviews is None else
                    pairs[kind] or (kind == FILLS_KNOWN_GAP and summary.held_out_values)):
                summary.by_kind[kind] = fixed_threshold(pairs[kind], summary.threshold,
                                                        n_gold[kind], sources[kind],
                                                        evidence[kind])
        summary.calibration = summary.by_kind.get(FILLS_KNOWN_GAP)
    if reviews is None:   # one kind judged: the summary's calibration line says it all
        summary.by_kind.clear()
    summary.conflict_threshold = (float(cfg.conflict_threshold)
                                  if cfg.conflict_threshold is not None
                                  else max(summary.threshold, DEFAULT_CONFLICT_THRESHOLD))
    written_at = {FILLS_KNOWN_GAP: summary.threshold, NEW_ATTRIBUTE: summary.new_threshold}
    if summary.new_threshold is None and summary.new_attributes_included:
        written_at[NEW_ATTRIBUTE] = summary.threshold
    summary.attributes = per_attribute(_evidence(summary), cfg.confidence, written_at, excluded)


def _write(work: _Work, summary: CompletionSummary, output: Path, conflicts: Path) -> None:
    """The files in score order above their thresholds: the suggestions (`fills_known_gap`;
    `new_attribute` above the threshold reviews back for them, and every one when included),
    the review file (the `new_attribute` ones no promise covers) and the conflicts. Each kind
    keeps its own promise: a refused `fills_known_gap` writes none of its rows (nor the review
    file and conflicts, whose cut is its threshold), while `new_attribute` rows that reviews
    back are still written at their own threshold."""
    emit = not summary.refused
    t, backed = summary.threshold, summary.new_threshold
    main: list[Band] = [(FILLS_KNOWN_GAP, t, None)] if emit else []
    review: list[Band] = [(NEW_ATTRIBUTE, t, backed)] if emit else []
    if backed is not None:
        main.append((NEW_ATTRIBUTE, backed, None))
    if summary.new_attributes_included and emit:
        main.append((NEW_ATTRIBUTE, t, backed))
    summary.suggestions = _write_sorted(work, "suggestion", SUGGESTION_COLUMNS, output, main)
    summary.new_attributes = _write_sorted(work, "suggestion", SUGGESTION_COLUMNS,
                                           Path(summary.review_output), review)
    if backed is not None:
        where, args = _bands_sql([(NEW_ATTRIBUTE, backed, None)])
        summary.new_attributes_backed = work.db.execute(
            f"SELECT count(*) FROM suggestion WHERE {where}", args).fetchone()[0]
    summary.conflicts = _write_sorted(work, "conflict", CONFLICT_COLUMNS, conflicts,
                                      [(None, summary.conflict_threshold, None)], emit)


def _save_summary(summary: CompletionSummary, output: Path, conflicts: Path) -> None:
    """`<output stem>.calibration.json`: the threshold and what it reaches, beside the rows."""
    cal_file = calibration_path(output)
    summary.files = [str(output), str(summary.review_output), str(conflicts), str(cal_file)]
    with atomic_write(cal_file) as f:
        f.write(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n")


def complete(model_or_extractor: Any, products: PathLike | Iterable[Record],
             catalog: PathLike | Iterable[Any], output: PathLike,
             config: CompleteConfig | None = None, *,
             calibration: PathLike | Iterable[Record] | None = None, progress: Any = None,
             **options: Any) -> CompletionSummary:
    """Suggest missing values of `products` against `catalog` into `output` (module docstring):
    load the table, predict the products, predict the calibration file, calibrate, write.

    `model_or_extractor`: a model folder or a loaded `Extractor`. `products`, `calibration`: a
    file in any format mjave reads, or Records. `catalog`: a table file (CSV or JSONL with
    product_id, attribute, value) or rows (`TableRow`s or (product_id, attribute, value)).
    `output`: .csv or .jsonl. `config`: how (`mjave.config.CompleteConfig`: threshold or
    min_precision, conflicts file, batch size, ...); `options`: its fields as keywords
    (`min_precision=0.9`), set over `config`. When `min_precision` cannot be backed the run
    refuses (`summary.refused`; both files get their header and no rows) unless `force`.
    `reviews` (a review database) adds the reviewed suggestions to the judged pairs, each kind
    calibrated on its own (module docstring).
    Writes `<output stem>.calibration.json`.
    """
    start = time.perf_counter()
    cfg = _settings(config, options)
    output, conflicts = _output_paths(output, cfg.conflicts,
                                      [products, catalog, calibration, cfg.reviews])
    if isinstance(products, (str, os.PathLike)) and not Path(products).is_file():
        raise DataError("cannot read the products: no such file", path=str(products),
                        reason="unreadable file")
    # a bad review file fails first
    reviews, skipped = read_review_file(cfg.reviews) if cfg.reviews else (None, 0)
    extractor = _extractor(model_or_extractor, cfg)
    summary = CompletionSummary(_source_name(products), str(output), str(conflicts),
                                review_output=str(review_path(output)),
                                known_attribute_share=cfg.known_attribute_share,
                                new_attributes_included=cfg.include_new_attributes,
                                confidence=cfg.confidence)
    work = _Work(Path(cfg.work_dir) if cfg.work_dir else output.parent)
    try:
        summary.table_rows = work.load_table(_table_rows(catalog))
        work.db.commit()
        shares = _products_pass(work, extractor, products, cfg, progress, summary)
        source = _calibration_pass(work, extractor, calibration, cfg, progress, summary)
        held_src = PRODUCTS if calibration is None else CALIBRATION
        if reviews is not None:
            _reviews_pass(work, reviews, str(cfg.reviews), shares, held_src, summary)
            summary.reviews.fair_skipped = skipped
            if skipped:
                log.warning("%s: %s", cfg.reviews, summary.reviews.skipped_note())
        _exclude(work, cfg.exclude_attributes, summary)
        _calibrate(work, summary, cfg, source, held_src, output, conflicts)
        _write(work, summary, output, conflicts)
    finally:
        work.close()
    summary.seconds = time.perf_counter() - start
    if summary.new_attributes:
        log.warning("%s", summary.unbacked())
    _save_summary(summary, output, conflicts)
    return summary


__all__ = ["ALL_ATTRIBUTES", "Aggregated", "CONFLICT_COLUMNS", "CompleteConfig",
           "CompletionSummary", "DEFAULT_CONFIDENCE", "EVIDENCE_WIDTH", "Mention",
           "SUGGESTION_COLUMNS", "aggregate", "calibration_path", "complete", "conflict_row",
           "evidence_window", "held_out_of", "judge", "judge_each", "mentions_of", "product_rows",
           "read_catalog", "read_products", "review_path", "suggestion_row", "table_index"]
