"""The gallery's persistent form: one SQLite file (WAL) with identities, their exemplar
embeddings (with the face each came from, for re-embedding), appearances and "not this person"
marks.

Every change is its own transaction, so a process killed at any moment leaves the file as of
its last completed change. Nothing here knows FAISS or the models; :class:`Gallery` keeps the
index in step with the store.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream.errors import GalleryError
from stream.types import FloatArray

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an ID is never given out twice
    name TEXT,
    created REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS exemplars (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    quality REAL NOT NULL,
    source TEXT NOT NULL,
    created REAL NOT NULL,
    face BLOB  -- JPEG of the face, when known: what `gallery reembed` embeds again
);
CREATE INDEX IF NOT EXISTS exemplars_identity ON exemplars(identity);
CREATE TABLE IF NOT EXISTS appearances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS appearances_identity ON appearances(identity);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class Exemplar:
    id: int
    identity: int
    vector: FloatArray
    quality: float
    source: str
    created: float
    face: bytes | None


@dataclass(frozen=True)
class IdentityRecord:
    id: int
    name: str | None
    created: float
    last_seen: float
    exemplars: int
    appearances: int
    seen_s: float  # total time of the recorded appearances


@dataclass(frozen=True)
class AppearanceRecord:
    id: int
    identity: int
    source: str
    start: float
    end: float


class GalleryStore:
    """One gallery file. Use from one thread at a time (the model thread owns it in a run)."""

    def __init__(self, path: Path, *, embedder: str, version: str, dim: int,
                 create: bool = True) -> None:
        self.path = path
        if not path.exists() and not create:
            raise GalleryError(f"there is no gallery at {path}; give the path of an existing "
                               "gallery file")
        if path.exists() and not path.is_file():
            raise GalleryError(f"{path} is not a file; give the path of a gallery file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("integrity check failed")
            self._db.executescript(SCHEMA)
        except (sqlite3.DatabaseError, OSError) as error:
            raise GalleryError(
                f"the gallery {path} cannot be opened ({error}); it is damaged or not a gallery. "
                "Nothing was changed: restore it from a backup (`facestream gallery export` "
                "writes one), or give another --gallery path to start a new one") from None
        self._check_meta(embedder, version, dim)
        self.dim = dim

    def _check_meta(self, embedder: str, version: str, dim: int) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            with self.transaction():
                self._db.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("schema", str(SCHEMA_VERSION)), ("embedder", embedder),
                    ("embedder_version", version), ("dim", str(dim))])
            return
        if int(meta.get("schema", "0")) > SCHEMA_VERSION:
            raise GalleryError(f"the gallery {self.path} was written by a newer facestream "
                               f"(schema {meta['schema']}); upgrade facestream to use it")
        if meta.get("embedder") != embedder or meta.get("embedder_version") != version:
            raise GalleryError(
                f"the gallery {self.path} was built with {meta.get('embedder')} "
                f"({meta.get('embedder_version')}), not {embedder} ({version}); run with "
                f"--embedder {meta.get('embedder')}, or convert it with `facestream gallery "
                f"{self.path} reembed --embedder {embedder}`")

    def set_embedder(self, embedder: str, version: str, dim: int) -> None:
        """Record that the exemplars are now of another embedder (after re-embedding them)."""
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
            ("embedder", embedder), ("embedder_version", version), ("dim", str(dim))])

    @property
    def embedder(self) -> tuple[str, str]:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        return meta["embedder"], meta["embedder_version"]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Several changes as one: all or none of them survive a crash."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @property
    def connection(self) -> sqlite3.Connection:
        """The SQLite connection (for backups and maintenance)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    # Identities

    def create_identity(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        cursor = self._db.execute("INSERT INTO identities (created, last_seen) VALUES (?, ?)",
                                  (now, now))
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def identity_ids(self) -> list[int]:
        return [row[0] for row in self._db.execute("SELECT id FROM identities ORDER BY id")]

    def identity(self, identity: int) -> IdentityRecord:
        records = self.identities(only=identity)
        if not records:
            raise GalleryError(f"there is no person p{identity} in the gallery; "
                               f"`facestream gallery {self.path} list` shows who is")
        return records[0]

    def identities(self, only: int | None = None) -> list[IdentityRecord]:
        rows = self._db.execute(
            "SELECT i.id, i.name, i.created, i.last_seen,"
            " (SELECT COUNT(*) FROM exemplars e WHERE e.identity = i.id),"
            " (SELECT COUNT(*) FROM appearances a WHERE a.identity = i.id),"
            " (SELECT COALESCE(SUM(a.end - a.start), 0) FROM appearances a"
            "  WHERE a.identity = i.id)"
            " FROM identities i WHERE ? IS NULL OR i.id = ? ORDER BY i.id", (only, only))
        return [IdentityRecord(*row) for row in rows]

    def rename(self, identity: int, name: str | None) -> None:
        self.identity(identity)
        self._db.execute("UPDATE identities SET name = ? WHERE id = ?", (name, identity))

    def seen(self, identity: int, when: float) -> None:
        self._db.execute("UPDATE identities SET last_seen = MAX(last_seen, ?) WHERE id = ?",
                         (when, identity))

    def delete_identity(self, identity: int) -> None:
        """Remove the identity and everything of it (exemplars, faces, appearances)."""
        self.identity(identity)
        self._db.execute("DELETE FROM identities WHERE id = ?", (identity,))

    # Exemplars

    def add_exemplar(self, identity: int, vector: FloatArray, *, quality: float, source: str,
                     face: bytes | None = None, now: float | None = None) -> int:
        cursor = self._db.execute(
            "INSERT INTO exemplars (identity, vector, quality, source, created, face)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (identity, np.asarray(vector, np.float32).tobytes(), quality, source,
             time.time() if now is None else now, face))
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def remove_exemplar(self, exemplar: int) -> None:
        self._db.execute("DELETE FROM exemplars WHERE id = ?", (exemplar,))

    def exemplars(self, identity: int | None = None) -> list[Exemplar]:
        rows = self._db.execute(
            "SELECT id, identity, vector, quality, source, created, face FROM exemplars"
            " WHERE ? IS NULL OR identity = ? ORDER BY id", (identity, identity))
        return [Exemplar(row[0], row[1], np.frombuffer(row[2], np.float32).copy(), row[3],
                         row[4], row[5], row[6]) for row in rows]

    def set_vector(self, exemplar: int, vector: FloatArray) -> None:
        """Replace an exemplar's embedding (re-embedding its face)."""
        self._db.execute("UPDATE exemplars SET vector = ? WHERE id = ?",
                         (np.asarray(vector, np.float32).tobytes(), exemplar))

    def index_rows(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray,
                                  FloatArray]:
        """What the index needs of every exemplar, as arrays: ids, identities, vectors (N, D)
        and qualities; without the faces, which start-up does not need."""
        rows = self._db.execute(
            "SELECT id, identity, vector, quality FROM exemplars ORDER BY id").fetchall()
        ids = np.asarray([row[0] for row in rows], np.int64)
        identities = np.asarray([row[1] for row in rows], np.int64)
        vectors = np.frombuffer(b"".join(row[2] for row in rows), np.float32)
        qualities = np.asarray([row[3] for row in rows], np.float32)
        return ids, identities, vectors.reshape(len(rows), self.dim), qualities

    def move_exemplars(self, exemplars: list[int], identity: int) -> None:
        self._db.executemany("UPDATE exemplars SET identity = ? WHERE id = ?",
                             [(identity, exemplar) for exemplar in exemplars])

    # Appearances

    def add_appearance(self, identity: int, source: str, start: float, end: float) -> int:
        cursor = self._db.execute(
            "INSERT INTO appearances (identity, source, start, end) VALUES (?, ?, ?, ?)",
            (identity, source, start, end))
        self.seen(identity, end)
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def extend_appearance(self, appearance: int, end: float) -> None:
        """The appearance lasted until ``end`` (it may have been merged away or forgotten)."""
        self._db.execute("UPDATE appearances SET end = MAX(end, ?) WHERE id = ?",
                         (end, appearance))
        self._db.execute("UPDATE identities SET last_seen = MAX(last_seen, ?) WHERE id ="
                         " (SELECT identity FROM appearances WHERE id = ?)", (end, appearance))

    def appearances(self, identity: int | None = None) -> list[AppearanceRecord]:
        rows = self._db.execute(
            "SELECT id, identity, source, start, end FROM appearances"
            " WHERE ? IS NULL OR identity = ? ORDER BY start", (identity, identity))
        return [AppearanceRecord(*row) for row in rows]

    def move_appearances(self, appearances: list[int], identity: int) -> None:
        self._db.executemany("UPDATE appearances SET identity = ? WHERE id = ?",
                             [(identity, appearance) for appearance in appearances])

    def move_all(self, source: int, target: int) -> None:
        """Everything of ``source`` becomes ``target``'s (for a merge)."""
        for table in ("exemplars", "appearances", "rejections"):
            self._db.execute(f"UPDATE {table} SET identity = ? WHERE identity = ?",
                             (target, source))

    # "Not this person"

    def add_rejection(self, identity: int, vector: FloatArray) -> None:
        self._db.execute("INSERT INTO rejections (identity, vector) VALUES (?, ?)",
                         (identity, np.asarray(vector, np.float32).tobytes()))

    def rejections(self) -> list[tuple[int, FloatArray]]:
        return [(row[0], np.frombuffer(row[1], np.float32).copy())
                for row in self._db.execute("SELECT identity, vector FROM rejections")]

    def clear_rejections(self) -> None:
        """Forget every "not this person" mark (their vectors are of a replaced embedder)."""
        self._db.execute("DELETE FROM rejections")

    def unnamed_unseen_since(self, cutoff: float) -> list[int]:
        """Unnamed identities last seen before ``cutoff`` (for retention)."""
        return [row[0] for row in self._db.execute(
            "SELECT id FROM identities WHERE name IS NULL AND last_seen < ?", (cutoff,))]


def recorded_embedder(path: Path) -> tuple[str, str, int]:
    """The embedder (name, version, dimension) the gallery file ``path`` was built with (read
    without loading any model)."""
    if not path.is_file():
        raise GalleryError(f"there is no gallery file at {path}; give the path of an existing "
                           "gallery file")
    try:
        db = sqlite3.connect(path)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        finally:
            db.close()
    except sqlite3.DatabaseError as error:
        raise _unreadable(path, str(error)) from None
    if not {"embedder", "embedder_version", "dim"} <= meta.keys() or not meta["dim"].isdigit():
        raise _unreadable(path, "no embedder recorded")
    return meta["embedder"], meta["embedder_version"], int(meta["dim"])


def _unreadable(path: Path, why: str) -> GalleryError:
    return GalleryError(f"the gallery {path} cannot be read ({why}); it is damaged or not a "
                        "gallery. Nothing was changed: restore it from a backup "
                        "(`facestream gallery export` writes one)")
