"""The review database: items to review, every decision ever made, and short leases, in SQLite.

One file (`--db review.sqlite`) in WAL mode, so readers never block the writer and several
server threads (or several servers on one machine) can share it. Tables:

- `items`: one row per suggestion or conflict, unique on (kind, product_id, attribute, value);
  loading the same CSV again (a restart) updates the rows in place, so decisions stay attached.
- `records`: the product texts the items point at (`record_id`, `product_id`, `text`,
  `category`, `image`).
- `decisions`: the history, append-only: one row per decision with product, attribute, value,
  `action` (accept, reject, edit, keep_table, keep_text, or undo), `edited_value`, `reviewer`,
  `time` (UTC, ISO 8601), `undoes` (the decision an undo takes back), an optional client
  `request_id` (a retried request with the same id is recorded once), the `queue` order of the
  claim that handed the item out (null: opened by hand) and `fair` (1: drawn by an unfiltered
  claim in `random` order, so the decisions with `fair` are a fair sample of the queue that
  `mjave complete --reviews` may judge unreviewed rows by; `mjave.review.order`).
- `state`: the effective decision of each decided item (kept in the same transaction as the
  history). Deciding an item again replaces its effective decision and keeps the older ones in
  `decisions`; an undo makes the decision before the undone one effective again (or none).
  The view `last_decisions` joins it with the items: the idempotent "what was decided" table.
- `leases`: which page (`session`) holds which item until when. `claim` hands each session the
  first undecided item in queue order (best score first, or by uncertainty: `mjave.review.order`)
  that nobody else holds, inside one `BEGIN IMMEDIATE` transaction,
  so two reviewers never get the same item; a lease a page stops renewing expires after
  `lease_seconds` and the item returns to the queue. A lease keeps the claim's `queue` and
  `fair` for the decision it leads to (an item opened again, or undone, keeps how it was drawn).
- `meta`: the schema version and `random_seed`, the seed of this database's `random` order.

A database written before `queue` and `fair` existed gains the columns when opened for writing
(its earlier decisions: not fair).
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from mjave.data.records import Record
from mjave.review.inputs import ItemIn, choose_record
from mjave.review.order import (DEFAULT_ORDER, FAIR_ORDER, QueueOrder, draw_key, gain_round_sql,
                                signed_draw, sql_key)

SCHEMA_VERSION = "1"
DEFAULT_LEASE_SECONDS = 300.0

ACTIONS = {"suggestion": ("accept", "reject", "edit"),
           "conflict": ("keep_table", "keep_text", "edit")}
"""The decisions each kind of item takes (`undo` is recorded by `ReviewDB.undo`)."""

ADDED_COLUMNS = {"items": ("draw INTEGER", "gain_round INTEGER"),
                 "decisions": ("queue TEXT", "fair INTEGER NOT NULL DEFAULT 0"),
                 "leases": ("queue TEXT", "fair INTEGER NOT NULL DEFAULT 0")}
"""Columns added after version 1 was first written: `_migrate` adds them to an older file
(and `ReviewDB` fills in `items.draw` and `items.gain_round`)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  record_id TEXT PRIMARY KEY, product_id TEXT NOT NULL, text TEXT NOT NULL,
  category TEXT, image TEXT);
CREATE INDEX IF NOT EXISTS records_product ON records (product_id);
CREATE TABLE IF NOT EXISTS items (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('suggestion', 'conflict')),
  product_id TEXT NOT NULL, attribute TEXT NOT NULL, value TEXT NOT NULL,
  normalized_value TEXT, table_value TEXT, score REAL NOT NULL,
  span_begin INTEGER, span_end INTEGER, evidence TEXT,
  record_id TEXT, hl_begin INTEGER, hl_end INTEGER, category TEXT,
  source TEXT, line INTEGER, draw INTEGER, gain_round INTEGER,
  UNIQUE (kind, product_id, attribute, value));
CREATE INDEX IF NOT EXISTS items_score ON items (kind, (-score), id);
CREATE INDEX IF NOT EXISTS items_uncertainty ON items (kind, abs(score - 0.5), id);
CREATE INDEX IF NOT EXISTS items_draw ON items (kind, draw, id);
CREATE INDEX IF NOT EXISTS items_gain ON items (kind, gain_round, abs(score - 0.5), id);
CREATE TABLE IF NOT EXISTS decisions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  item_id INTEGER NOT NULL REFERENCES items (id),
  product_id TEXT NOT NULL, attribute TEXT NOT NULL, value TEXT NOT NULL,
  action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'edit', 'keep_table',
                                         'keep_text', 'undo')),
  edited_value TEXT, reviewer TEXT NOT NULL, time TEXT NOT NULL,
  undoes INTEGER REFERENCES decisions (id), request_id TEXT UNIQUE,
  queue TEXT, fair INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS decisions_item ON decisions (item_id, id);
CREATE INDEX IF NOT EXISTS decisions_undoes ON decisions (undoes);
CREATE INDEX IF NOT EXISTS decisions_reviewer ON decisions (reviewer, id);
CREATE TABLE IF NOT EXISTS state (
  item_id INTEGER PRIMARY KEY REFERENCES items (id),
  decision_id INTEGER NOT NULL REFERENCES decisions (id));
CREATE TABLE IF NOT EXISTS leases (
  item_id INTEGER PRIMARY KEY REFERENCES items (id),
  session TEXT NOT NULL, reviewer TEXT NOT NULL, expires REAL NOT NULL,
  queue TEXT, fair INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS leases_session ON leases (session);
CREATE TABLE IF NOT EXISTS skips (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  item_id INTEGER NOT NULL REFERENCES items (id),
  reviewer TEXT NOT NULL, time REAL NOT NULL, queue TEXT, fair INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS skips_item ON skips (item_id);
CREATE VIEW IF NOT EXISTS last_decisions AS
  SELECT i.id AS item_id, i.kind, i.product_id, i.attribute, i.value, i.table_value, i.score,
         i.record_id, d.action, d.edited_value, d.reviewer, d.time, d.id AS decision_id,
         d.queue, d.fair
  FROM state s JOIN decisions d ON d.id = s.decision_id JOIN items i ON i.id = s.item_id;
"""


class ReviewError(Exception):
    """A request the database refuses; `status` is the HTTP status the server answers."""

    status = 400


class NotFound(ReviewError):
    status = 404


class Leased(ReviewError):
    """Another reviewer holds the item."""

    status = 409


class NothingToUndo(ReviewError):
    status = 409


@dataclass(frozen=True)
class Filters:
    """Which items a queue shows: one attribute, one category, a score range (all optional)."""

    attribute: str | None = None
    category: str | None = None
    min_score: float | None = None
    max_score: float | None = None

    @property
    def whole_queue(self) -> bool:
        """No filter: a claim draws from every item of the kind."""
        return (self.attribute is None and self.category is None and self.min_score is None
                and self.max_score is None)

    @property
    def whole_attributes(self) -> bool:
        """The queue keeps or drops whole attributes (no filter but, maybe, the attribute)."""
        return self.category is None and self.min_score is None and self.max_score is None

    def sql(self) -> tuple[str, list[Any]]:
        where, args = [], []
        if self.attribute is not None:
            where.append("i.attribute = ?")
            args.append(self.attribute)
        if self.category is not None:
            where.append("i.category = ?")
            args.append(self.category)
        if self.min_score is not None:
            where.append("i.score >= ?")
            args.append(self.min_score)
        if self.max_score is not None:
            where.append("i.score <= ?")
            args.append(self.max_score)
        return (" AND ".join(where) or "1"), args


@dataclass
class LoadSummary:
    new: int = 0
    updated: int = 0
    records: int = 0

    def __str__(self) -> str:
        return f"{self.new} new and {self.updated} known items, {self.records} product texts"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ReviewDB:
    """The review database at `path` (created on first use). Each call opens its own
    connection, so one object may be used from many threads; writes that must not interleave
    run in `BEGIN IMMEDIATE` transactions (SQLite's single writer, waiting up to `timeout`)."""

    def __init__(self, path: str | Path, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 clock: Callable[[], float] = time.time, timeout: float = 30.0,
                 random_seed: str | None = None):
        """`random_seed`: the seed of the `random` order of a database this call creates (None:
        a fresh random one); an existing database keeps its own."""
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        self.path = Path(path)
        self.lease_seconds = float(lease_seconds)
        self.clock = clock
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as c:
            mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"{self.path}: cannot use WAL mode (got {mode})")
            self._migrate(c)
            c.executescript(SCHEMA)
            c.execute("INSERT OR IGNORE INTO meta VALUES ('random_seed', ?)",
                      (random_seed if random_seed is not None else secrets.token_hex(8),))
            self.random_seed = str(c.execute(
                "SELECT value FROM meta WHERE key='random_seed'").fetchone()[0])
            self._fill_draws(c)
            c.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                      (SCHEMA_VERSION,))
            version = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"{self.path}: review database version {version}; "
                                            f"this mjave reads version {SCHEMA_VERSION}")

    @staticmethod
    def _migrate(c: sqlite3.Connection) -> None:
        """Add `ADDED_COLUMNS` to a file written before them (and the view that reads them)."""
        for table, columns in ADDED_COLUMNS.items():
            have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
            if not have:   # a new file: SCHEMA creates the table whole
                continue
            for column in columns:
                if column.split()[0] not in have:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
                    c.execute("DROP VIEW IF EXISTS last_decisions")
        c.execute("DROP INDEX IF EXISTS items_queue")   # the score order's index before items_score

    def _fill_draws(self, c: sqlite3.Connection) -> None:
        """Give the items of a file written before the `draw` and `gain_round` columns their
        place in the `random` and `gain` orders (once; what `load` gives new items)."""
        rows = c.execute("SELECT id, product_id, attribute, value FROM items WHERE draw IS NULL"
                         ).fetchall()
        unranked = c.execute("SELECT 1 FROM items WHERE gain_round IS NULL LIMIT 1").fetchone()
        if rows or unranked:
            c.execute("BEGIN IMMEDIATE")
            c.executemany("UPDATE items SET draw = ? WHERE id = ? AND draw IS NULL",
                          [(self._draw(r[1], r[2], r[3]), r[0]) for r in rows])
            self._rank_rounds(c)
            c.execute("COMMIT")

    @staticmethod
    def _rank_rounds(c: sqlite3.Connection) -> None:
        """Store every item's `gain` round over the whole queue (`gain_round_sql`): it changes
        whenever items are added or rescored, so `load` calls this in its transaction."""
        # a keyed temporary table rather than UPDATE ... FROM, which SQLite before 3.33 lacks
        c.execute("CREATE TEMP TABLE IF NOT EXISTS rounds (id INTEGER PRIMARY KEY, k INTEGER)")
        c.execute("DELETE FROM temp.rounds")
        c.execute(f"INSERT INTO temp.rounds SELECT i.id, {gain_round_sql()} FROM items i")
        c.execute("UPDATE items SET gain_round = (SELECT k FROM temp.rounds r "
                  "WHERE r.id = items.id)")
        c.execute("DELETE FROM temp.rounds")

    def _draw(self, product_id: str, attribute: str, value: str) -> int:
        return signed_draw(draw_key(self.random_seed, str(product_id), str(attribute),
                                    str(value)))

    # ---- connections ------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)) as c:
            c.row_factory = sqlite3.Row
            c.execute("PRAGMA foreign_keys=ON")
            c.execute("PRAGMA synchronous=NORMAL")
            yield c

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error)."""
        with self._connect() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def journal_mode(self) -> str:
        with self._connect() as c:
            return str(c.execute("PRAGMA journal_mode").fetchone()[0])

    # ---- loading ----------------------------------------------------------------------------

    def load(self, items: Sequence[ItemIn], products: dict[str, list[Record]]) -> LoadSummary:
        """Add the items (and the texts they are about); items already in the database (same
        kind, product, attribute, value) get the new score, offsets and evidence and keep their
        decisions. Every item's product must be in `products`."""
        summary = LoadSummary()
        with self._write() as c:
            before = c.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            seen_records: set[str] = set()
            for item in items:
                records = products[item.product_id]
                record, span = choose_record(item, records)
                for r in records:
                    if r.id not in seen_records:
                        c.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)",
                                  (r.id, item.product_id, r.text, r.category, r.image))
                        seen_records.add(r.id)
                category = record.category or next((r.category for r in records if r.category),
                                                   None)
                c.execute(
                    "INSERT INTO items (kind, product_id, attribute, value, normalized_value, "
                    "table_value, score, span_begin, span_end, evidence, record_id, hl_begin, "
                    "hl_end, category, source, line, draw) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (kind, product_id, attribute, value) DO UPDATE SET "
                    "normalized_value=excluded.normalized_value, "
                    "table_value=excluded.table_value, score=excluded.score, "
                    "span_begin=excluded.span_begin, span_end=excluded.span_end, "
                    "evidence=excluded.evidence, record_id=excluded.record_id, "
                    "hl_begin=excluded.hl_begin, hl_end=excluded.hl_end, "
                    "category=excluded.category, source=excluded.source, line=excluded.line",
                    (item.kind, item.product_id, item.attribute, item.value,
                     item.normalized_value, item.table_value, item.score, item.begin, item.end,
                     item.evidence, record.id, span[0] if span else None,
                     span[1] if span else None, category, item.source, item.line,
                     self._draw(item.product_id, item.attribute, item.value)))
            self._rank_rounds(c)
            after = c.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            summary.new = int(after - before)
            summary.updated = len(items) - summary.new
            summary.records = len(seen_records)
        return summary

    def count_items(self) -> int:
        with self._connect() as c:
            return int(c.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    # ---- the queue --------------------------------------------------------------------------

    def claim(self, session: str, reviewer: str, kind: str = "suggestion",
              filters: Filters = Filters(), after: int | None = None,
              order: QueueOrder = DEFAULT_ORDER) -> dict[str, Any] | None:
        """Lease the first undecided item of `kind` matching `filters` in queue `order` that no
        other session holds, and return it (None when there is none). The session's earlier
        leases are released. `after`: an item id; take the next one in queue order after it,
        wrapping around to the top (the arrow key's "skip"). `order`: `score` (best first,
        then id), `uncertainty`, `gain` or `random` (`mjave.review.order`); the lease records
        it, and whether the claim drew at random from the whole queue (`fair`)."""
        where, args = filters.sql()
        fair = int(order == FAIR_ORDER and filters.whole_queue)
        now = self.clock()
        with self._write() as c:
            if after is not None:   # a skip of the item this session holds: recorded, since
                # an item drawn at random and skipped is missing from the fair sample
                held = c.execute("SELECT queue, fair FROM leases WHERE item_id = ? AND "
                                 "session = ? AND expires > ?", (after, session, now)).fetchone()
                if held is not None:
                    c.execute("INSERT INTO skips (item_id, reviewer, time, queue, fair) "
                              "VALUES (?, ?, ?, ?, ?)", (after, reviewer, now, *held))
            c.execute("DELETE FROM leases WHERE expires <= ? OR session = ?", (now, session))
            item_id = self._next_in(c, order, kind, where, args, after,
                                    filters.whole_attributes)
            if item_id is None:
                return None
            c.execute("INSERT INTO leases (item_id, session, reviewer, expires, queue, fair) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      (item_id, session, reviewer, now + self.lease_seconds, order, fair))
        return self.item(item_id)

    @staticmethod
    def _next_in(c: sqlite3.Connection, order: QueueOrder, kind: str, where: str,
                 args: list[Any], after: int | None, whole_attributes: bool) -> int | None:
        """`claim`'s item: in `order` over every item matching the filters (decided and leased
        ones too, so the order is one for every reviewer and claim and `after` has its place in
        it), the first undecided one nobody holds, after `after` if given, wrapping around but
        never back onto `after`. All in SQL (`mjave.review.order.sql_key`): an index scan that
        stops at the first free item, except under `gain` on a queue filtered by category or
        score (`whole_attributes` False), whose rounds are a window over the filtered queue."""
        keys = sql_key(order, stored_round=whole_attributes)
        params: list[Any] = [kind, *args]
        if order == "gain" and not whole_attributes:   # rank the filtered queue first
            cols = ", ".join(f"{k} AS k{n}" for n, k in enumerate(keys))
            source = f"(SELECT i.id, {cols} FROM items i WHERE i.kind = ? AND {where}) i"
            selected = "1"
            keys = tuple(f"i.k{n}" for n in range(len(keys)))
        else:
            source, selected = "items i", f"i.kind = ? AND {where}"
        key = ", ".join((*keys, "i.id"))
        free = (f"SELECT i.id FROM {source} WHERE {selected} "
                "AND NOT EXISTS (SELECT 1 FROM state s WHERE s.item_id = i.id) "
                "AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.item_id = i.id)")
        first = f" ORDER BY {key} LIMIT 1"
        ref = None
        if after is not None:
            ref = c.execute(f"SELECT {key} FROM {source} WHERE {selected} AND i.id = ?",
                            [*params, after]).fetchone()
        if ref is None:   # no skip, or `after` is not in this queue: from the top
            row = c.execute(free + first, params).fetchone()
        else:
            marks = ", ".join("?" * len(ref))
            row = c.execute(free + f" AND ({key}) > ({marks})" + first,
                            [*params, *ref]).fetchone()
            if row is None:  # wrap around, but not back onto the skipped item
                row = c.execute(free + " AND i.id != ?" + first, [*params, after]).fetchone()
        return None if row is None else int(row[0])

    def open(self, item_id: int, session: str, reviewer: str) -> dict[str, Any]:
        """Lease one named item (decided or not) to the session: going back to an earlier item.
        Leased (409) when another session holds it."""
        now = self.clock()
        with self._write() as c:
            self._require_item(c, item_id)
            self._check_lease(c, item_id, session, now)
            drawn = self._drawn(c, item_id, session, now)
            c.execute("DELETE FROM leases WHERE expires <= ? OR session = ?", (now, session))
            c.execute("INSERT OR REPLACE INTO leases (item_id, session, reviewer, expires, queue, "
                      "fair) VALUES (?, ?, ?, ?, ?, ?)",
                      (item_id, session, reviewer, now + self.lease_seconds, *drawn))
        return self.item(item_id)

    def renew(self, session: str) -> int:
        """Push back the expiry of the session's leases (a page that is still open); returns
        how many it holds."""
        now = self.clock()
        with self._write() as c:
            cur = c.execute("UPDATE leases SET expires = ? WHERE session = ? AND expires > ?",
                            (now + self.lease_seconds, session, now))
            return cur.rowcount

    def release(self, session: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM leases WHERE session = ?", (session,))

    @staticmethod
    def _require_item(c: sqlite3.Connection, item_id: int) -> sqlite3.Row:
        row = c.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise NotFound(f"no item {item_id}")
        return row

    @staticmethod
    def _drawn(c: sqlite3.Connection, item_id: int, session: str | None, now: float
               ) -> tuple[str | None, int]:
        """How the item came to `session` (queue, fair): from the session's live lease, else
        from the item's effective decision (going back to a decided item is the same draw),
        else (None, 0): opened by hand."""
        row = None if session is None else c.execute(
            "SELECT queue, fair FROM leases WHERE item_id = ? AND session = ? AND expires > ?",
            (item_id, session, now)).fetchone()
        if row is None:
            row = c.execute("SELECT d.queue, d.fair FROM state s JOIN decisions d ON "
                            "d.id = s.decision_id WHERE s.item_id = ?", (item_id,)).fetchone()
        return (None, 0) if row is None else (row[0], int(row[1]))

    @staticmethod
    def _check_lease(c: sqlite3.Connection, item_id: int, session: str | None,
                     now: float) -> None:
        held = c.execute("SELECT session, reviewer FROM leases WHERE item_id = ? AND "
                         "expires > ?", (item_id, now)).fetchone()
        if held is not None and held["session"] != session:
            raise Leased(f"item {item_id} is being reviewed by {held['reviewer']}")

    # ---- decisions --------------------------------------------------------------------------

    def decide(self, item_id: int, action: str, reviewer: str, *, session: str | None = None,
               edited_value: str | None = None, request_id: str | None = None
               ) -> dict[str, Any]:
        """Record a decision on an item (it becomes the item's effective decision; earlier ones
        stay in the history) and release the item's lease. A `request_id` seen before returns
        the decision recorded then instead of recording a second one. Leased (409) when another
        session holds the item."""
        now = self.clock()
        with self._write() as c:
            if request_id is not None:
                old = c.execute("SELECT * FROM decisions WHERE request_id = ?",
                                (request_id,)).fetchone()
                if old is not None:
                    return dict(old)
            item = self._require_item(c, item_id)
            if action not in ACTIONS[item["kind"]]:
                raise ReviewError(f"a {item['kind']} takes {', '.join(ACTIONS[item['kind']])}, "
                                  f"not {action!r}")
            if action == "edit":
                edited_value = (edited_value or "").strip()
                if not edited_value:
                    raise ReviewError("an edit needs the corrected value (edited_value)")
            else:
                edited_value = None
            self._check_lease(c, item_id, session, now)
            queue, fair = self._drawn(c, item_id, session, now)
            cur = c.execute("INSERT INTO decisions (item_id, product_id, attribute, value, "
                            "action, edited_value, reviewer, time, request_id, queue, fair) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (item_id, item["product_id"], item["attribute"], item["value"],
                             action, edited_value, reviewer, now_iso(), request_id, queue,
                             fair))
            decision_id = cur.lastrowid
            c.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (item_id, decision_id))
            c.execute("DELETE FROM leases WHERE item_id = ?", (item_id,))
            return dict(c.execute("SELECT * FROM decisions WHERE id = ?",
                                  (decision_id,)).fetchone())

    def undo(self, reviewer: str, session: str | None = None, item_id: int | None = None
             ) -> dict[str, Any]:
        """Take back the effective decision of `item_id`, or else the reviewer's latest decision
        that is still in effect: an `undo` row is appended, the decision before it (if any)
        becomes effective again, and the item is leased to the session. Returns the item."""
        now = self.clock()
        with self._write() as c:
            if item_id is None:
                row = c.execute("SELECT d.id, d.item_id FROM state s JOIN decisions d ON "
                                "d.id = s.decision_id WHERE d.reviewer = ? ORDER BY d.id DESC "
                                "LIMIT 1", (reviewer,)).fetchone()
            else:
                self._require_item(c, item_id)
                row = c.execute("SELECT d.id, d.item_id FROM state s JOIN decisions d ON "
                                "d.id = s.decision_id WHERE s.item_id = ?", (item_id,)).fetchone()
            if row is None:
                raise NothingToUndo("nothing to undo" if item_id is None else
                                    f"item {item_id} has no decision to undo")
            target, item_id = int(row["id"]), int(row["item_id"])
            drawn = self._drawn(c, item_id, None, now)   # the undone decision's draw
            self._check_lease(c, item_id, session, now)
            item = self._require_item(c, item_id)
            c.execute("INSERT INTO decisions (item_id, product_id, attribute, value, action, "
                      "reviewer, time, undoes) VALUES (?, ?, ?, ?, 'undo', ?, ?, ?)",
                      (item_id, item["product_id"], item["attribute"], item["value"], reviewer,
                       now_iso(), target))
            previous = c.execute(
                "SELECT id FROM decisions d WHERE item_id = ? AND action != 'undo' AND NOT "
                "EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id) ORDER BY id DESC "
                "LIMIT 1", (item_id,)).fetchone()
            if previous is None:
                c.execute("DELETE FROM state WHERE item_id = ?", (item_id,))
            else:
                c.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (item_id, previous[0]))
            if session is not None:
                c.execute("DELETE FROM leases WHERE expires <= ? OR session = ?", (now, session))
                c.execute("INSERT OR REPLACE INTO leases (item_id, session, reviewer, expires, "
                          "queue, fair) VALUES (?, ?, ?, ?, ?, ?)",
                          (item_id, session, reviewer, now + self.lease_seconds, *drawn))
        return self.item(item_id)

    # ---- reading ----------------------------------------------------------------------------

    def item(self, item_id: int) -> dict[str, Any]:
        """An item with its text, effective decision, history and lease."""
        with self._connect() as c:
            row = self._require_item(c, item_id)
            out = dict(row)
            rec = c.execute("SELECT * FROM records WHERE record_id = ?",
                            (row["record_id"],)).fetchone()
            out["text"] = rec["text"] if rec else None
            out["image"] = rec["image"] if rec else None
            d = c.execute("SELECT d.* FROM state s JOIN decisions d ON d.id = s.decision_id "
                          "WHERE s.item_id = ?", (item_id,)).fetchone()
            out["decision"] = dict(d) if d else None
            out["history"] = [dict(h) for h in c.execute(
                "SELECT * FROM decisions WHERE item_id = ? ORDER BY id", (item_id,))]
            lease = c.execute("SELECT session, reviewer, expires FROM leases WHERE item_id = ? "
                              "AND expires > ?", (item_id, self.clock())).fetchone()
            out["lease"] = dict(lease) if lease else None
        return out

    def counts(self, kind: str, filters: Filters = Filters()) -> dict[str, int]:
        """Items of `kind` matching `filters`: total, decided, undecided, and per action."""
        where, args = filters.sql()
        with self._connect() as c:
            total = c.execute(f"SELECT COUNT(*) FROM items i WHERE i.kind = ? AND {where}",
                              [kind, *args]).fetchone()[0]
            rows = c.execute(f"SELECT d.action, COUNT(*) FROM items i JOIN state s ON "
                             f"s.item_id = i.id JOIN decisions d ON d.id = s.decision_id "
                             f"WHERE i.kind = ? AND {where} GROUP BY d.action",
                             [kind, *args]).fetchall()
        out = {"total": int(total)}
        out.update({str(a): int(n) for a, n in rows})
        out["decided"] = sum(int(n) for _, n in rows)
        out["undecided"] = out["total"] - out["decided"]
        return out

    def facets(self, kind: str) -> dict[str, list[Any]]:
        """The attributes and categories of the items of `kind`, and their score range."""
        with self._connect() as c:
            attrs = [r[0] for r in c.execute("SELECT DISTINCT attribute FROM items WHERE "
                                             "kind = ? ORDER BY attribute", (kind,))]
            cats = [r[0] for r in c.execute("SELECT DISTINCT category FROM items WHERE kind = ? "
                                            "AND category IS NOT NULL ORDER BY category",
                                            (kind,))]
            lo, hi = c.execute("SELECT MIN(score), MAX(score) FROM items WHERE kind = ?",
                               (kind,)).fetchone()
        return {"attributes": attrs, "categories": cats, "score_range": [lo, hi]}

    def effective(self) -> list[dict[str, Any]]:
        """Every decided item with its effective decision and text (the export's input), by
        product, attribute and item id."""
        with self._connect() as c:
            rows = c.execute(
                "SELECT i.*, d.action, d.edited_value, d.reviewer, d.time, r.text AS text, "
                "r.category AS record_category, r.image AS image FROM state s "
                "JOIN decisions d ON d.id = s.decision_id JOIN items i ON i.id = s.item_id "
                "LEFT JOIN records r ON r.record_id = i.record_id "
                "ORDER BY i.product_id, i.attribute, i.id").fetchall()
        return [dict(r) for r in rows]

    def product_records(self, product_id: str) -> list[dict[str, Any]]:
        with self._connect() as c:
            return [dict(r) for r in c.execute(
                "SELECT * FROM records WHERE product_id = ? ORDER BY rowid", (product_id,))]

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The decisions, oldest first (all of them, or the last `limit`)."""
        with self._connect() as c:
            if limit is None:
                rows = c.execute("SELECT * FROM decisions ORDER BY id").fetchall()
            else:
                rows = c.execute("SELECT * FROM (SELECT * FROM decisions ORDER BY id DESC "
                                 "LIMIT ?) ORDER BY id", (limit,)).fetchall()
        return [dict(r) for r in rows]


@contextmanager
def _read_only(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A review database opened read-only, without creating or migrating anything (it may be
    one reviewers are still writing to), inside one read transaction so that everything read
    through it is one consistent snapshot; its schema version checked first."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such review database")
    uri = path.resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)) as c:
        c.row_factory = sqlite3.Row
        try:
            c.execute("BEGIN")
            version = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:   # not a review database (or not SQLite at all)
            raise sqlite3.DatabaseError(f"{path}: not a review database ({e})") from None
        if version is None or version[0] != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"{path}: review database version "
                                        f"{None if version is None else version[0]}; this mjave "
                                        f"reads version {SCHEMA_VERSION}")
        try:
            yield c
        finally:
            if c.in_transaction:
                c.execute("COMMIT")


def _decisions(c: sqlite3.Connection, kind: str) -> list[dict[str, Any]]:
    rows = c.execute("SELECT * FROM last_decisions WHERE kind = ? ORDER BY decision_id",
                     (kind,)).fetchall()
    return [dict(r) for r in rows]


def _fair_skips(c: sqlite3.Connection, kind: str) -> list[dict[str, Any]]:
    if c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='skips'"
                 ).fetchone() is None:
        return []   # written before skips were recorded
    rows = c.execute(
        "SELECT DISTINCT i.id AS item_id, i.product_id, i.attribute, i.value FROM skips k "
        "JOIN items i ON i.id = k.item_id WHERE k.fair = 1 AND i.kind = ? AND NOT EXISTS "
        "(SELECT 1 FROM state s WHERE s.item_id = i.id) ORDER BY i.id", (kind,)).fetchall()
    return [dict(r) for r in rows]


def read_decisions(path: str | Path, kind: str = "suggestion") -> list[dict[str, Any]]:
    """The effective decision of every decided item of `kind` (the `last_decisions` view:
    item_id, product_id, attribute, value, score, action, edited_value, decision_id, ...),
    oldest decision first. Read-only: `mjave complete --reviews` reads a database reviewers
    may still be writing to."""
    with _read_only(path) as c:
        return _decisions(c, kind)


def read_fair_skips(path: str | Path, kind: str = "suggestion") -> list[dict[str, Any]]:
    """The items of `kind` that were drawn at random from the whole queue (`fair`), skipped and
    are still undecided (item_id, product_id, attribute, value): the fair sample lacks them.
    Read-only like `read_decisions`; a file written before skips were recorded has none."""
    with _read_only(path) as c:
        return _fair_skips(c, kind)


def read_review_state(path: str | Path, kind: str = "suggestion"
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`read_decisions` and `read_fair_skips` from one read-only snapshot: a reviewer deciding a
    skipped item between two reads cannot make it count in both or in neither."""
    with _read_only(path) as c:
        return _decisions(c, kind), _fair_skips(c, kind)


__all__ = ["ACTIONS", "ADDED_COLUMNS", "DEFAULT_LEASE_SECONDS", "Filters", "Leased", "LoadSummary",
           "NotFound", "NothingToUndo", "ReviewDB", "ReviewError", "SCHEMA", "read_decisions",
           "read_fair_skips", "read_review_state"]
