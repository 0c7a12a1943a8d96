"""The ids a batch sweep has seen, in flat memory at any number of rows.

Duplicate detection and `resume` need every id seen so far, and a Python dict of them costs about
120 bytes a row: 120 MB at a million rows, 12 GB at a hundred million. `IdRegistry` keeps the
first `memory_limit` ids in a dict (fast, and most files are small) and then moves them to a
temporary SQLite file with the id as its primary key, where further ids go too; SQLite's page
cache is bounded, so memory stays flat from there on. The file is deleted on `close`.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

DEFAULT_MEMORY_LIMIT = 100_000


class IdRegistry:
    """A set of ids, each with the row number it was first seen at (0 when unknown)."""

    def __init__(self, memory_limit: int | None = None,
                 folder: str | os.PathLike | None = None):
        self.memory_limit = DEFAULT_MEMORY_LIMIT if memory_limit is None else memory_limit
        self.folder = folder
        self._memory: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None
        self._path: Path | None = None
        self._count = 0

    @property
    def on_disk(self) -> bool:
        return self._db is not None

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> int | None:
        """The row number `key` was first seen at; None when it was not seen."""
        if self._db is None:
            return self._memory.get(key)
        row = self._db.execute("SELECT n FROM ids WHERE id = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def add(self, key: str, number: int = 0) -> None:
        """Record `key` (a key already there keeps its first row number)."""
        if self._db is None:
            if key not in self._memory:
                self._memory[key] = number
                self._count += 1
                if self._count > self.memory_limit:
                    self._spill()
            return
        cur = self._db.execute("INSERT OR IGNORE INTO ids VALUES (?, ?)", (key, number))
        self._count += cur.rowcount

    def _spill(self) -> None:
        fd, name = tempfile.mkstemp(prefix="mjave-ids-", suffix=".sqlite", dir=self.folder)
        os.close(fd)
        self._path = Path(name)
        db = sqlite3.connect(name, isolation_level=None)   # autocommit: nothing to roll back
        # A scratch file deleted at the end: no journal, no fsync.
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-16384")             # 16 MiB page cache, the memory cap
        db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID")
        db.execute("BEGIN")
        db.executemany("INSERT INTO ids VALUES (?, ?)", self._memory.items())
        db.execute("COMMIT")
        self._memory = {}
        self._db = db

    def close(self) -> None:
        """Drop the temporary file (the registry is empty afterwards)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
        self._memory = {}
        self._count = 0

    def __enter__(self) -> "IdRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DEFAULT_MEMORY_LIMIT", "IdRegistry"]
