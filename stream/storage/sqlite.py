"""The embedded gallery store: one SQLite file (WAL), or a database in memory.

Changes are logged (which identity, by which store) in the ``changes`` table, so other stores on
the same file, in this process or another, learn of them: ``PRAGMA data_version`` tells cheaply
whether any other connection committed since the last look.

Writes that the file system refuses (a full disk, a read-only or locked file) raise
:class:`~stream.errors.StorageError`, with nothing of the change kept.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream.errors import GalleryError, NotFoundError, StorageError
from stream.storage.base import (
    AppearanceRecord,
    Changes,
    Exemplar,
    IdentityRecord,
    IndexRows,
    exact_nearest,
)
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
CREATE TABLE IF NOT EXISTS cannot_link (  -- seen on screen together: two people
    first INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    second INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    PRIMARY KEY (first, second),
    CHECK (first < second)
);
CREATE INDEX IF NOT EXISTS cannot_link_second ON cannot_link(second);
CREATE TABLE IF NOT EXISTS changes (  -- no foreign key: deleted identities are changes too
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    identity INTEGER NOT NULL,
    writer TEXT NOT NULL  -- the store that made the change, which is not told of it
);
"""
KEEP_CHANGES = 10_000  # a store further behind than this reloads everything
PRUNE_EVERY = 1_000
# An erasure waits this long for other connections still reading the old pages; when they are
# still there, it is finished later (complete_erasures), by this store or the next to open.
ERASE_WAIT_MS = 100
CLOSE_WAIT_MS = 5_000
BUSY_TIMEOUT_MS = 5_000  # sqlite3's default: a write waits this long for another writer
PENDING = "erase_pending"  # meta key: "vacuum", then "checkpoint", until the erasure is done
log = logging.getLogger(__name__)


class SQLiteStore:
    """A :class:`~stream.storage.base.GalleryStore` in one SQLite file (``None``: in memory).
    Use from one thread at a time (the model thread owns it in a run)."""

    def __init__(self, path: Path | None, *, embedder: str, version: str, dim: int,
                 create: bool = True) -> None:
        self.path = path
        if path is not None:
            if not path.exists() and not create:
                raise GalleryError(f"there is no gallery at {path}; give the path of an "
                                   "existing gallery file")
            if path.exists() and not path.is_file():
                raise GalleryError(f"{path} is not a file; give the path of a gallery file")
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(":memory:" if path is None else path,
                                       isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("integrity check failed")
            self._db.executescript(SCHEMA)
        except (sqlite3.DatabaseError, OSError) as error:
            raise GalleryError(
                f"the gallery {path} cannot be opened ({error}); it is damaged or not a gallery. "
                "Nothing was changed: restore it from a backup (an export of it), or give "
                "another --gallery path to start a new one") from None
        self._depth = 0  # of nested transaction() blocks
        self._writer = uuid.uuid4().hex
        self._polled = (-1, -1)  # (data_version, token) of the last look that found nothing
        self._closed = False
        try:
            self._check_meta(embedder, version, dim)
        except GalleryError:
            self._db.close()  # the refusal leaves the file to the command it suggests
            raise
        self._dim = dim
        try:
            self.complete_erasures()  # one that another process could not finish
        except StorageError as error:
            log.warning("%s", error)

    def _check_meta(self, embedder: str, version: str, dim: int) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            with self.transaction():
                self._db.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("schema", str(SCHEMA_VERSION)), ("embedder", embedder),
                    ("embedder_version", version), ("dim", str(dim)),
                    ("gallery_id", uuid.uuid4().hex)])
            return
        if int(meta.get("schema", "0")) > SCHEMA_VERSION:
            raise GalleryError(f"the gallery {self.location} was written by a newer facestream "
                               f"(schema {meta['schema']}); upgrade facestream to use it")
        if meta.get("embedder") != embedder or meta.get("embedder_version") != version:
            raise GalleryError(
                f"the gallery {self.location} was built with {meta.get('embedder')} "
                f"({meta.get('embedder_version')}), not {embedder} ({version}); run with "
                f"--embedder {meta.get('embedder')}, or convert it with `facestream gallery "
                f"{self.location} reembed --embedder {embedder}`")
        if "gallery_id" not in meta:  # made by an older facestream
            with self.transaction():
                self._db.execute("INSERT INTO meta VALUES ('gallery_id', ?)",
                                 (uuid.uuid4().hex,))

    @property
    def location(self) -> str:
        """The file's path (``:memory:`` for a gallery in memory)."""
        return ":memory:" if self.path is None else str(self.path)

    @property
    def gallery_id(self) -> str:
        """The uuid made with the file (or the memory gallery), in its ``meta`` table."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'gallery_id'").fetchone()
        return str(row[0])

    @property
    def dim(self) -> int:
        """The dimension of the exemplar vectors."""
        return self._dim

    @property
    def embedder(self) -> tuple[str, str]:
        """The embedder (name, version) recorded in the file."""
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        return meta["embedder"], meta["embedder_version"]

    def set_embedder(self, embedder: str, version: str, dim: int) -> None:
        """Record that the exemplars are now of another embedder (after re-embedding them)."""
        with self.transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                ("embedder", embedder), ("embedder_version", version), ("dim", str(dim))])
        self._dim = dim

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several changes as one: all or none of them survive a crash. Nests (the outermost
        block commits)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                if self._db.in_transaction:  # a full disk may have rolled it back already
                    self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0
        except sqlite3.OperationalError as error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise self._unwritable(error) from error

    def _unwritable(self, error: sqlite3.OperationalError) -> StorageError:
        return StorageError(f"the gallery {self.location} cannot be written now ({error}); "
                            "free space on its disk (or let the program locking it finish) "
                            "and try again")

    def close(self) -> None:
        """Close the file (idempotent), after finishing a pending erasure if the readers that
        held it up are gone within a few seconds."""
        if not self._closed:
            try:
                if not self.complete_erasures(wait_ms=CLOSE_WAIT_MS):
                    log.warning("the gallery %s still holds erased data: another program is "
                                "reading it; the next facestream to open the gallery "
                                "overwrites it", self.location)
            except StorageError as error:
                log.warning("%s", error)
            finally:
                self._closed = True
                self._db.close()

    def backup(self, path: Path) -> None:
        """A consistent copy of the gallery in the new file ``path``."""
        target = sqlite3.connect(path)
        try:
            self._db.backup(target)
        finally:
            target.close()

    # Change notifications

    def change_token(self) -> int:
        """A token for "now", for :meth:`changes_since`."""
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])

    def lock_creation(self) -> None:
        """Nothing more to do: a transaction here holds the file's write lock (``BEGIN
        IMMEDIATE``) from its start."""

    def nearest(self, vectors: FloatArray, k: int, *, exact: bool = False
                ) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """The ``k`` nearest exemplars as committed now, by brute force: always exact (see
        the protocol)."""
        return exact_nearest(self.index_rows(), vectors, k)

    def changes_since(self, token: int) -> Changes:
        """The identities other stores changed after ``token`` (see the protocol)."""
        data_version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if self._polled == (data_version, token):
            return Changes(token, frozenset())  # no other connection has committed since
        rows = self._db.execute("SELECT seq, identity, writer FROM changes WHERE seq > ?",
                                (token,)).fetchall()
        oldest = self._db.execute("SELECT MIN(seq) FROM changes").fetchone()[0]
        latest = max((row[0] for row in rows), default=token)
        self._polled = (data_version, latest)
        if oldest is not None and token < oldest - 1:
            return Changes(latest, None)  # the log no longer reaches back to the token
        return Changes(latest, frozenset(row[1] for row in rows if row[2] != self._writer))

    def _touch(self, *identities: int) -> None:
        """Log a change of ``identities`` (inside the transaction that makes it)."""
        for identity in identities:
            cursor = self._db.execute("INSERT INTO changes (identity, writer) VALUES (?, ?)",
                                      (identity, self._writer))
            seq = cursor.lastrowid or 0
            if seq % PRUNE_EVERY == 0:
                self._db.execute("DELETE FROM changes WHERE seq <= ?", (seq - KEEP_CHANGES,))

    # Identities

    def create_identity(self, now: float | None = None) -> int:
        """A new identity; its number is never given out again."""
        now = time.time() if now is None else now
        with self.transaction():
            cursor = self._db.execute(
                "INSERT INTO identities (created, last_seen) VALUES (?, ?)", (now, now))
            assert cursor.lastrowid is not None
            self._touch(cursor.lastrowid)
        return int(cursor.lastrowid)

    def identity_ids(self) -> list[int]:
        """The numbers of every identity, ascending."""
        return [row[0] for row in self._db.execute("SELECT id FROM identities ORDER BY id")]

    def identity(self, identity: int) -> IdentityRecord:
        """One identity; :class:`NotFoundError` when there is none."""
        records = self._identities(identity)
        if not records:
            raise NotFoundError(f"there is no person p{identity} in the gallery; "
                                f"`facestream gallery {self.location} list` shows who is")
        return records[0]

    def identities(self) -> list[IdentityRecord]:
        """Every identity, in order of creation."""
        return self._identities(None)

    def _identities(self, only: int | None) -> list[IdentityRecord]:
        rows = self._db.execute(
            "SELECT i.id, i.name, i.created, i.last_seen,"
            " (SELECT COUNT(*) FROM exemplars e WHERE e.identity = i.id),"
            " (SELECT COUNT(*) FROM appearances a WHERE a.identity = i.id)"
            " FROM identities i WHERE ? IS NULL OR i.id = ? ORDER BY i.id", (only, only)).fetchall()
        seen = _seen_s(self._db.execute(
            "SELECT identity, source, start, end FROM appearances"
            " WHERE ? IS NULL OR identity = ? ORDER BY identity, source, start", (only, only)))
        return [IdentityRecord(number, name, created, last_seen, exemplars, appearances,
                               seen.get(number, 0.0))
                for number, name, created, last_seen, exemplars, appearances in rows]

    def rename(self, identity: int, name: str | None) -> None:
        """Give the identity a name, or take it away with ``None``."""
        self.identity(identity)
        with self.transaction():
            self._db.execute("UPDATE identities SET name = ? WHERE id = ?", (name, identity))
            self._touch(identity)

    def seen(self, identity: int, when: float) -> None:
        """The identity was seen at ``when`` (last seen only moves forward)."""
        self._db.execute("UPDATE identities SET last_seen = MAX(last_seen, ?) WHERE id = ?",
                         (when, identity))

    def merge(self, keep: int, gone: int) -> None:
        """Everything of ``gone`` becomes ``keep``'s, and ``gone`` is deleted."""
        with self.transaction():
            last_seen = self.identity(gone).last_seen
            for table in ("exemplars", "appearances", "rejections"):
                self._db.execute(f"UPDATE {table} SET identity = ? WHERE identity = ?",
                                 (keep, gone))
            self._db.execute(
                "INSERT OR IGNORE INTO cannot_link SELECT MIN(?1, other), MAX(?1, other) FROM"
                " (SELECT IIF(first = ?2, second, first) AS other FROM cannot_link"
                "  WHERE ?2 IN (first, second)) WHERE other != ?1", (keep, gone))
            self.seen(keep, last_seen)
            self.delete_identity(gone)
            self._touch(keep)

    def split(self, identity: int, exemplars: list[int], appearances: list[int]) -> int:
        """A new identity holding the given exemplars and appearances of ``identity``."""
        with self.transaction():
            new = self.create_identity()
            self._db.executemany(
                "UPDATE exemplars SET identity = ? WHERE id = ? AND identity = ?",
                [(new, exemplar, identity) for exemplar in exemplars])
            self._db.executemany(
                "UPDATE appearances SET identity = ? WHERE id = ? AND identity = ?",
                [(new, appearance, identity) for appearance in appearances])
            self._touch(identity)
        return new

    def delete_identity(self, identity: int) -> None:
        """Remove the identity and everything of it (exemplars, faces, appearances)."""
        self.identity(identity)
        with self.transaction():
            self._db.execute("DELETE FROM identities WHERE id = ?", (identity,))
            self._touch(identity)

    def erase(self, identity: int) -> None:
        """As :meth:`delete_identity`, and the file is rewritten (``VACUUM``) and its
        write-ahead log emptied, so their embeddings, faces and name cannot be recovered from
        the gallery's files. Not inside a transaction: ``VACUUM`` cannot run in one.

        Another connection in a read transaction keeps old pages alive: then the erasure is
        recorded in the file as pending and finished by :meth:`complete_erasures` (this store
        or the next one to open the file) once that reader is gone."""
        before = int(self._db.execute("PRAGMA secure_delete").fetchone()[0])
        self._db.execute("PRAGMA secure_delete = ON")
        try:
            with self.transaction():
                self.delete_identity(identity)
                self._set_pending("vacuum")
        finally:
            self._db.execute(f"PRAGMA secure_delete = {before}")
        try:
            if not self.complete_erasures():
                log.warning("p%d is deleted, but another program reading the gallery %s keeps "
                            "old pages of it; they are overwritten once it stops reading",
                            identity, self.location)
        except StorageError as error:  # the person is deleted: the overwrite is retried
            log.warning("p%d is deleted; overwriting its old pages is retried: %s", identity,
                        error)

    def erasure_pending(self) -> bool:
        """Whether an erasure still waits for other connections to stop reading."""
        return self._pending() is not None

    def complete_erasures(self, *, wait_ms: int = ERASE_WAIT_MS) -> bool:
        """Finish a pending erasure (see :meth:`erase`), waiting up to ``wait_ms`` for other
        connections' reads; returns whether none is pending now."""
        if self.path is None:
            return True
        stage = self._pending()
        if stage is None:
            return True
        try:
            if stage == "vacuum":
                self._db.execute("VACUUM")
                with self.transaction():
                    self._set_pending("checkpoint")
            if not self._checkpoint(wait_ms):
                return False
            with self.transaction():
                self._db.execute("DELETE FROM meta WHERE key = ?", (PENDING,))
            self._checkpoint(wait_ms)  # the log held only the flag's removal
        except sqlite3.OperationalError as error:
            raise self._unwritable(error) from error
        return True

    def _pending(self) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (PENDING,)).fetchone()
        return None if row is None else str(row[0])

    def _set_pending(self, stage: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (PENDING, stage))

    def _checkpoint(self, wait_ms: int) -> bool:
        """Copy the write-ahead log into the file and empty it; false when a reader of older
        pages stopped it (the busy flag of ``wal_checkpoint``)."""
        self._db.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
        try:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return not busy

    def unnamed_unseen_since(self, cutoff: float) -> list[int]:
        """Unnamed identities last seen before ``cutoff`` (for retention)."""
        return [row[0] for row in self._db.execute(
            "SELECT id FROM identities WHERE name IS NULL AND last_seen < ?", (cutoff,))]

    # Exemplars

    def add_exemplar(self, identity: int, vector: FloatArray, *, quality: float, source: str,
                     face: bytes | None = None, now: float | None = None) -> int:
        """Store an embedding of ``identity``; returns the exemplar's number."""
        with self.transaction():
            cursor = self._db.execute(
                "INSERT INTO exemplars (identity, vector, quality, source, created, face)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (identity, np.asarray(vector, np.float32).tobytes(), quality, source,
                 time.time() if now is None else now, face))
            self._touch(identity)
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def remove_exemplar(self, exemplar: int) -> None:
        """Evict one exemplar."""
        with self.transaction():
            row = self._db.execute("DELETE FROM exemplars WHERE id = ? RETURNING identity",
                                   (exemplar,)).fetchone()
            if row is not None:
                self._touch(row[0])

    def exemplars(self, identity: int | None = None) -> list[Exemplar]:
        """The exemplars of ``identity`` (of everyone with ``None``), with their faces."""
        rows = self._db.execute(
            "SELECT id, identity, vector, quality, source, created, face FROM exemplars"
            " WHERE ? IS NULL OR identity = ? ORDER BY id", (identity, identity))
        return [Exemplar(row[0], row[1], np.frombuffer(row[2], np.float32).copy(), row[3],
                         row[4], row[5], row[6]) for row in rows]

    def set_vector(self, exemplar: int, vector: FloatArray) -> None:
        """Replace an exemplar's embedding (re-embedding its face)."""
        with self.transaction():
            row = self._db.execute("UPDATE exemplars SET vector = ? WHERE id = ?"
                                   " RETURNING identity",
                                   (np.asarray(vector, np.float32).tobytes(), exemplar)).fetchone()
            if row is not None:
                self._touch(row[0])

    def index_rows(self) -> IndexRows:
        """Every exemplar as arrays, without the faces, which start-up does not need."""
        rows = self._db.execute(
            "SELECT id, identity, vector, quality FROM exemplars ORDER BY id").fetchall()
        vectors = np.frombuffer(b"".join(row[2] for row in rows), np.float32)
        return IndexRows(np.asarray([row[0] for row in rows], np.int64),
                         np.asarray([row[1] for row in rows], np.int64),
                         vectors.reshape(len(rows), self.dim),
                         np.asarray([row[3] for row in rows], np.float32))

    # Appearances

    def add_appearance(self, identity: int, source: str, start: float, end: float) -> int:
        """Record that ``identity`` was seen on ``source`` from ``start`` to ``end``;
        :class:`NotFoundError` when the identity is gone (another process removed it)."""
        with self.transaction():
            try:
                cursor = self._db.execute(
                    "INSERT INTO appearances (identity, source, start, end) VALUES (?, ?, ?, ?)",
                    (identity, source, start, end))
            except sqlite3.IntegrityError:
                raise NotFoundError(f"there is no person p{identity} in the gallery") from None
            self.seen(identity, end)
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def extend_appearance(self, appearance: int, end: float) -> None:
        """The appearance lasted until ``end`` (it may have been merged away or forgotten)."""
        with self.transaction():
            self._db.execute("UPDATE appearances SET end = MAX(end, ?) WHERE id = ?",
                             (end, appearance))
            self._db.execute(
                "UPDATE identities SET last_seen = MAX(last_seen, ?) WHERE id ="
                " (SELECT identity FROM appearances WHERE id = ?)", (end, appearance))

    def appearances(self, identity: int | None = None) -> list[AppearanceRecord]:
        """The appearances of ``identity`` (of everyone with ``None``), by start time."""
        rows = self._db.execute(
            "SELECT id, identity, source, start, end FROM appearances"
            " WHERE ? IS NULL OR identity = ? ORDER BY start", (identity, identity))
        return [AppearanceRecord(*row) for row in rows]

    # Seen together: two people

    def add_cannot_link(self, first: int, second: int) -> None:
        """``first`` and ``second`` were on screen together: two people, never to be merged
        (not recorded when one of them is gone: another process removed them)."""
        if first == second:
            raise ValueError(f"p{first} cannot be kept apart from themselves")
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO cannot_link SELECT ?1, ?2"
                " WHERE (SELECT COUNT(*) FROM identities WHERE id IN (?1, ?2)) = 2",
                (min(first, second), max(first, second)))

    def cannot_link(self, identity: int) -> frozenset[int]:
        """The identities seen on screen together with ``identity``."""
        return frozenset(row[0] for row in self._db.execute(
            "SELECT IIF(first = ?1, second, first) FROM cannot_link"
            " WHERE ?1 IN (first, second)", (identity,)))

    # "Not this person"

    def add_rejection(self, identity: int, vector: FloatArray) -> None:
        """Faces like ``vector`` are not ``identity``."""
        with self.transaction():
            self._db.execute("INSERT INTO rejections (identity, vector) VALUES (?, ?)",
                             (identity, np.asarray(vector, np.float32).tobytes()))
            self._touch(identity)

    def rejections(self) -> list[tuple[int, FloatArray]]:
        """Every "not this person" mark: (identity, template)."""
        return [(row[0], np.frombuffer(row[1], np.float32).copy())
                for row in self._db.execute("SELECT identity, vector FROM rejections")]

    def clear_rejections(self) -> None:
        """Forget every mark (their vectors are of a replaced embedder)."""
        with self.transaction():
            marked = self._db.execute("DELETE FROM rejections RETURNING identity").fetchall()
            self._touch(*{row[0] for row in marked})


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


def _seen_s(spans: Iterable[tuple[int, str, float, float]]) -> dict[int, float]:
    """Time seen per identity from its appearances ordered by (identity, source, start):
    the union of their spans on each source, so that overlapping ones (two tracks of one
    person, merged) count once."""
    seen: dict[int, float] = {}
    key: tuple[int, str] | None = None
    end = 0.0
    for identity, source, start, stop in spans:
        if (identity, source) != key:
            key, end = (identity, source), start
        seen[identity] = seen.get(identity, 0.0) + max(0.0, stop - max(start, end))
        end = max(end, stop)
    return seen


def _unreadable(path: Path, why: str) -> GalleryError:
    return GalleryError(f"the gallery {path} cannot be read ({why}); it is damaged or not a "
                        "gallery. Nothing was changed: restore it from a backup "
                        "(an export of it)")
