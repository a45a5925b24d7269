"""The shared gallery store: PostgreSQL with pgvector, for several nodes on one gallery.

Everything lives in the ``facestream`` schema of the database the URL names, created and
migrated by the store itself (``schema_version`` records how far). Exemplars are ``vector(D)``
columns with an HNSW index, so the database can search them too (:meth:`PostgresStore.nearest`).

Changes are logged in ``changes`` like the SQLite store's, under one advisory lock per gallery
(:data:`WRITE_LOCK`): the log's numbers are then in commit order, and a node that creates an
identity under the same lock sees every identity created before it. Each commit that logs a
change also sends a ``NOTIFY``; a listening connection (a thread) tells the store, so
:meth:`PostgresStore.changes_since` reads the log only when there is news (or while not
listening, after a lost connection).

The password is never in the URL: libpq takes it from ``$PGPASSWORD`` or a password file
(``~/.pgpass``, ``$PGPASSFILE``, or ``?passfile=`` in the URL).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector
from psycopg import errors as pg_errors

from stream.errors import GalleryError, NotFoundError, StorageError
from stream.identity.track import template
from stream.storage.base import AppearanceRecord, Changes, Exemplar, IdentityRecord, IndexRows
from stream.storage.sqlite import SQLiteStore, _seen_s
from stream.types import FloatArray

SCHEMA = "facestream"
CHANNEL = "facestream_changes"
WRITE_LOCK = 0x66616365  # pg_advisory_xact_lock key: every change of the gallery, and creation
# MIGRATIONS[n] takes the schema from version n to n + 1 ({dim}: the exemplars' dimension).
MIGRATIONS: tuple[str, ...] = ("""
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE identities (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- a sequence: never given out twice
    name text,
    created double precision NOT NULL,
    last_seen double precision NOT NULL
);
CREATE TABLE exemplars (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identity bigint NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector vector({dim}) NOT NULL,
    quality real NOT NULL,
    source text NOT NULL,
    created double precision NOT NULL,
    face bytea
);
CREATE INDEX exemplars_identity ON exemplars(identity);
CREATE INDEX exemplars_vector ON exemplars USING hnsw (vector vector_l2_ops);
CREATE TABLE appearances (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identity bigint NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    source text NOT NULL,
    start double precision NOT NULL,
    "end" double precision NOT NULL
);
CREATE INDEX appearances_identity ON appearances(identity);
CREATE TABLE rejections (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identity bigint NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector vector({dim}) NOT NULL
);
CREATE INDEX rejections_identity ON rejections(identity);
CREATE TABLE cannot_link (  -- seen on screen together: two people
    first bigint NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    second bigint NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    PRIMARY KEY (first, second),
    CHECK (first < second)
);
CREATE INDEX cannot_link_second ON cannot_link(second);
CREATE TABLE changes (  -- no foreign key: deleted identities are changes too
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identity bigint NOT NULL,
    writer text NOT NULL
);
""", """
ALTER TABLE identities ADD COLUMN writer text;  -- the store that created it (NULL: before 2)
CREATE INDEX identities_created ON identities(created);
""")
SCHEMA_VERSION = len(MIGRATIONS)
# The tables that hold a person's data: what an erasure rewrites (VACUUM FULL).
PERSONAL = ("identities", "exemplars", "appearances", "rejections", "cannot_link", "changes")
# What a backup copies into a SQLite gallery file, table by table (the same columns there).
BACKUP = {"identities": ("id", "name", "created", "last_seen"),
          "exemplars": ("id", "identity", "vector", "quality", "source", "created", "face"),
          "appearances": ("id", "identity", "source", "start", "end"),
          "rejections": ("id", "identity", "vector"),
          "cannot_link": ("first", "second")}
KEEP_CHANGES = 10_000  # a store further behind than this reloads everything
PRUNE_EVERY = 1_000
EF_SEARCH = 400  # HNSW candidates per search: recall against exact in benchmarks/gallery_scale
ERASE_WAIT_MS = 100
CLOSE_WAIT_MS = 5_000
CONNECT_TIMEOUT_S = 5
PENDING = "erase_pending"  # meta key while an erasure's rewrite waits for other sessions' locks
log = logging.getLogger(__name__)


def check_url(url: str) -> None:
    """Refuse a URL that holds a password (it would show in configs and process lists)."""
    if urlsplit(url).password is not None:
        raise GalleryError("the gallery URL holds a password: take it out, and give it in "
                           "$PGPASSWORD or a password file (~/.pgpass)")


def connect(url: str) -> psycopg.Connection[Any]:
    """A connection to the gallery's database, with pgvector; :class:`GalleryError` (one line,
    no password) when the server cannot be reached or lacks pgvector."""
    check_url(url)
    try:
        db = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                             application_name="facestream")
    except psycopg.Error as error:
        raise GalleryError(f"the gallery {url} cannot be reached ({_first_line(error)}); "
                           "start the server, or check the URL and the password in $PGPASSWORD "
                           "or ~/.pgpass") from None
    try:
        installed = db.execute(
            "SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is not None
        if not installed:
            if db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
                          ).fetchone() is None:
                raise GalleryError(f"the server of the gallery {url} has no pgvector extension; "
                                   "install it there (the pgvector/pgvector image has it)")
            try:
                with db.transaction():  # nodes starting together on a new database
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.errors.InsufficientPrivilege:
                raise GalleryError(
                    f"the database of the gallery {url} lacks the pgvector extension and this "
                    "user may not add it; as a superuser run: psql -d "
                    f"{_database(url)} -c 'CREATE EXTENSION vector'") from None
        register_vector(db)
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            db.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        db.execute(f"SET search_path = {SCHEMA}, public")
    except BaseException:
        db.close()
        raise
    return db


def recorded_embedder(url: str) -> tuple[str, str, int]:
    """The embedder (name, version, dimension) the gallery at ``url`` was built with (read
    without loading any model)."""
    with connect(url) as db:
        if db.execute("SELECT to_regclass('meta')").fetchone() == (None,):
            raise GalleryError(f"there is no gallery at {url}; give the URL of an existing "
                               "gallery")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    return meta["embedder"], meta["embedder_version"], int(meta["dim"])


def _first_line(error: Exception) -> str:
    """The first line of a driver's message (libpq's run over several), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _database(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


class PostgresStore:
    """A :class:`~stream.storage.base.GalleryStore` in a PostgreSQL database, shared by any
    number of processes and machines. Use from one thread at a time."""

    def __init__(self, url: str, *, embedder: str, version: str, dim: int,
                 create: bool = True) -> None:
        self.url = url
        self._db = connect(url)
        self._depth = 0
        self._writer = uuid.uuid4().hex
        self._closed = False
        self._polled = -1  # the token of the last look at the log
        self._news = threading.Event()  # another store committed since the last look
        self._news.set()
        self._listening = False
        try:
            self._migrate(dim, create=create)
            self._check_meta(embedder, version, dim)
        except BaseException:
            self._db.close()
            raise
        self._dim = dim
        self._db.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
        self._listener = threading.Thread(target=self._listen, name="gallery-listener",
                                          daemon=True)
        self._listener.start()
        try:
            self.complete_erasures()  # one that another node could not finish
        except StorageError as error:
            log.warning("%s", error)

    def _migrate(self, dim: int, *, create: bool) -> None:
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            exists = self._db.execute("SELECT to_regclass('schema_version')").fetchone()
            row = (self._db.execute("SELECT version FROM schema_version").fetchone()
                   if exists != (None,) else None)
            current = 0 if row is None else int(row[0])
            if current == 0 and not create:
                raise GalleryError(f"there is no gallery at {self.url}; give the URL of an "
                                   "existing gallery")
            if current > SCHEMA_VERSION:
                raise GalleryError(f"the gallery {self.url} was written by a newer facestream "
                                   f"(schema {current}); upgrade facestream to use it")
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer)")
            for migration in MIGRATIONS[current:]:
                self._db.execute(migration.format(dim=int(dim)).encode())
            self._db.execute("DELETE FROM schema_version")
            self._db.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))

    def _check_meta(self, embedder: str, version: str, dim: int) -> None:
        with self.transaction():
            self.lock_creation()  # nodes starting together on a new gallery make one
            meta = self._meta()
            if not meta:
                self._db.cursor().executemany("INSERT INTO meta VALUES (%s, %s)", [
                    ("embedder", embedder), ("embedder_version", version), ("dim", str(dim)),
                    ("gallery_id", uuid.uuid4().hex)])
                return
        if meta.get("embedder") != embedder or meta.get("embedder_version") != version:
            raise GalleryError(
                f"the gallery {self.url} was built with {meta.get('embedder')} "
                f"({meta.get('embedder_version')}), not {embedder} ({version}); run with "
                f"--embedder {meta.get('embedder')}")

    def _meta(self) -> dict[str, str]:
        return dict(self._query("SELECT key, value FROM meta"))

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows of ``sql``; a lost server is a :class:`StorageError` (retried later)."""
        try:
            return self._db.execute(sql.encode(), params).fetchall()
        except psycopg.OperationalError as error:
            raise self._unwritable(error) from error

    def _write(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` in the current transaction (or its own); returns its rows, if any."""
        with self.transaction():
            cursor = self._db.execute(sql.encode(), params)
            return cursor.fetchall() if cursor.description else []

    def _unwritable(self, error: Exception) -> StorageError:
        return StorageError(f"the gallery {self.url} cannot be written now "
                            f"({_first_line(error)}); "
                            "check that its server is up, and try again")

    @property
    def location(self) -> str:
        """The database's URL (it never holds the password)."""
        return self.url

    @property
    def gallery_id(self) -> str:
        """The uuid made with the gallery, in its ``meta`` table."""
        return self._meta()["gallery_id"]

    @property
    def dim(self) -> int:
        """The dimension of the exemplar vectors."""
        return self._dim

    @property
    def embedder(self) -> tuple[str, str]:
        """The embedder (name, version) recorded in the database."""
        meta = self._meta()
        return meta["embedder"], meta["embedder_version"]

    def set_embedder(self, embedder: str, version: str, dim: int) -> None:
        """Record that the exemplars are now of another embedder; a new dimension retypes the
        vector columns (they must all be of it, or empty)."""
        with self.transaction():
            self._db.cursor().executemany(
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value ="
                " EXCLUDED.value", [("embedder", embedder), ("embedder_version", version),
                                    ("dim", str(dim))])
            if dim != self._dim:
                for table in ("exemplars", "rejections"):
                    self._write(f"ALTER TABLE {table} ALTER COLUMN vector TYPE vector({dim})")
        self._dim = dim

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several changes as one: all or none of them are committed. Nests (the outermost
        block commits)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            with self._db.transaction():
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
        except psycopg.OperationalError as error:
            raise self._unwritable(error) from error

    @contextmanager
    def _change(self) -> Iterator[None]:
        """A transaction that changes the gallery: the write lock comes first, before any row
        lock, so two changing transactions never wait for each other in a cycle."""
        with self.transaction():
            self.lock_creation()
            yield

    def close(self) -> None:
        """Close the connections (idempotent), after finishing a pending erasure if the others'
        locks allow it within a few seconds."""
        if self._closed:
            return
        try:
            if not self.complete_erasures(wait_ms=CLOSE_WAIT_MS):
                log.warning("the gallery %s still holds erased data on disk: other sessions "
                            "held its tables; the next facestream to open it rewrites them",
                            self.url)
        except StorageError as error:
            log.warning("%s", error)
        finally:
            self._closed = True
            self._listener.join()
            self._db.close()

    def backup(self, path: Path) -> None:
        """A consistent copy of the gallery in the new SQLite gallery file ``path`` (the same
        numbers; ``facestream gallery FILE`` reads it, ``gallery import`` takes it in)."""
        name, version = self.embedder
        SQLiteStore(path, embedder=name, version=version, dim=self.dim).close()
        target = sqlite3.connect(path)
        try:
            with self._db.transaction():
                self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                for table, columns in BACKUP.items():
                    rows = [tuple(_sqlite_value(value) for value in row) for row in
                            self._db.execute(f"SELECT {', '.join(map(_quoted, columns))}"
                                             f" FROM {table} ORDER BY 1".encode())]
                    target.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES"
                                       f" ({', '.join('?' * len(columns))})", rows)
            target.commit()
        finally:
            target.close()

    # Change notifications

    def _listen(self) -> None:
        """The listener thread: tell the store of others' commits; reconnect when the server
        was lost (the store reads the log at every look meanwhile)."""
        failing = False  # said once per outage
        while not self._closed:
            try:
                with psycopg.connect(self.url, autocommit=True,
                                     connect_timeout=CONNECT_TIMEOUT_S) as db:
                    db.execute(f"LISTEN {CHANNEL}")
                    self._listening, failing = True, False
                    self._news.set()  # what was committed while no one listened
                    while not self._closed:
                        for note in db.notifies(timeout=0.2):
                            if note.payload != self._writer:
                                self._news.set()
            except psycopg.Error as error:
                if not self._closed and not failing:
                    log.warning("gallery %s: listening for changes failed (%s); the gallery "
                                "is read for them at every look until it works again",
                                self.url, _first_line(error))
                failing = True
                time.sleep(0.0 if self._closed else 1.0)
            finally:
                self._listening = False
                self._news.set()

    def change_token(self) -> int:
        """A token for "now", for :meth:`changes_since`."""
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM changes")[0][0])

    def changes_since(self, token: int) -> Changes:
        """The identities other stores changed after ``token`` (see the protocol). Without
        news from the listener the log is not read; inside a transaction (under the write
        lock, say) it always is."""
        if (token == self._polled and not self._news.is_set() and self._listening
                and not self._depth):
            return Changes(token, frozenset())
        self._news.clear()  # before reading: a commit from now on is news again
        rows = self._query("SELECT seq, identity, writer FROM changes WHERE seq > %s ORDER BY seq",
                           (token,))
        oldest = self._query("SELECT MIN(seq) FROM changes")[0][0]
        latest = max((int(row[0]) for row in rows), default=token)
        self._polled = latest
        if oldest is not None and token < oldest - 1:
            return Changes(latest, None)
        return Changes(latest, frozenset(int(row[1]) for row in rows if row[2] != self._writer))

    def lock_creation(self) -> None:
        """Hold off every other store's changes until the transaction this is called in
        ends (the lock each change takes anyway)."""
        self._write("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))

    def _touch(self, *identities: int) -> None:
        """Log a change of ``identities`` (inside the :meth:`_change` that makes it: under the
        write lock, so in commit order), and notify the listeners at commit."""
        if not identities:
            return
        rows = self._write("INSERT INTO changes (identity, writer) SELECT unnest(%s::bigint[]),"
                           " %s RETURNING seq", (list(identities), self._writer))
        self._write("SELECT pg_notify(%s, %s)", (CHANNEL, self._writer))
        seq = max(int(row[0]) for row in rows)
        if any(number % PRUNE_EVERY == 0 for number in range(seq - len(rows) + 1, seq + 1)):
            self._write("DELETE FROM changes WHERE seq <= %s", (seq - KEEP_CHANGES,))

    # Identities

    def create_identity(self, now: float | None = None) -> int:
        """A new identity; its number is never given out again."""
        now = time.time() if now is None else now
        with self._change():
            identity = int(self._write("INSERT INTO identities (created, last_seen, writer)"
                                       " VALUES (%s, %s, %s) RETURNING id",
                                       (now, now, self._writer))[0][0])
            self._touch(identity)
        return identity

    def duplicates(self, within: float, since: float) -> list[tuple[int, int]]:
        """Pairs (kept, gone) of identities that look like one person given two IDs by two
        stores that could not see each other's writes (a partition): created after ``since``
        by different stores, their templates (the unit mean of their exemplars) nearer than
        ``within``, never seen on screen together. The older is kept; nearest pairs first, each
        identity in one pair at most (a third ID of them is found at the next look)."""
        rows = self._query(
            "SELECT i.id, i.writer, AVG(e.vector) FROM identities i"
            " JOIN exemplars e ON e.identity = i.id"
            " WHERE i.created > %s AND i.writer IS NOT NULL GROUP BY i.id ORDER BY i.id",
            (since,))
        if len({row[1] for row in rows}) < 2:
            return []
        numbers = [int(row[0]) for row in rows]
        templates = np.stack([template([_array(row[2])]) for row in rows])
        distances = np.linalg.norm(templates[:, None] - templates[None], axis=2)
        kept_apart = {(int(first), int(second)) for first, second in self._query(
            "SELECT first, second FROM cannot_link WHERE first = ANY(%s) AND second = ANY(%s)",
            (numbers, numbers))}
        candidates = sorted(
            (float(distances[i, j]), numbers[i], numbers[j])
            for i in range(len(rows)) for j in range(i + 1, len(rows))
            if rows[i][1] != rows[j][1] and distances[i, j] < within
            and (numbers[i], numbers[j]) not in kept_apart)
        pairs: list[tuple[int, int]] = []
        taken: set[int] = set()
        for _, kept, gone in candidates:
            if not {kept, gone} & taken:
                pairs.append((kept, gone))
                taken |= {kept, gone}
        return pairs

    def identity_ids(self) -> list[int]:
        """The numbers of every identity, ascending."""
        return [int(row[0]) for row in self._query("SELECT id FROM identities ORDER BY id")]

    def identity(self, identity: int) -> IdentityRecord:
        """One identity; :class:`NotFoundError` when there is none."""
        records = self._identities(identity)
        if not records:
            raise NotFoundError(f"there is no person p{identity} in the gallery; "
                                f"`facestream gallery {self.url} list` shows who is")
        return records[0]

    def identities(self) -> list[IdentityRecord]:
        """Every identity, in order of creation."""
        return self._identities(None)

    def _identities(self, only: int | None) -> list[IdentityRecord]:
        rows = self._query(
            "SELECT i.id, i.name, i.created, i.last_seen,"
            " (SELECT COUNT(*) FROM exemplars e WHERE e.identity = i.id),"
            " (SELECT COUNT(*) FROM appearances a WHERE a.identity = i.id)"
            " FROM identities i WHERE %s::bigint IS NULL OR i.id = %s ORDER BY i.id",
            (only, only))
        seen = _seen_s(self._query(
            'SELECT identity, source, start, "end" FROM appearances'
            " WHERE %s::bigint IS NULL OR identity = %s ORDER BY identity, source, start",
            (only, only)))
        return [IdentityRecord(int(number), name, created, last_seen, int(exemplars),
                               int(appearances), seen.get(number, 0.0))
                for number, name, created, last_seen, exemplars, appearances in rows]

    def rename(self, identity: int, name: str | None) -> None:
        """Give the identity a name, or take it away with ``None``."""
        self.identity(identity)
        with self._change():
            self._write("UPDATE identities SET name = %s WHERE id = %s", (name, identity))
            self._touch(identity)

    def seen(self, identity: int, when: float) -> None:
        """The identity was seen at ``when`` (last seen only moves forward)."""
        self._write("UPDATE identities SET last_seen = GREATEST(last_seen, %s) WHERE id = %s",
                    (when, identity))

    def merge(self, keep: int, gone: int) -> None:
        """Everything of ``gone`` becomes ``keep``'s, and ``gone`` is deleted."""
        with self._change():
            last_seen = self.identity(gone).last_seen
            for table in ("exemplars", "appearances", "rejections"):
                self._write(f"UPDATE {table} SET identity = %s WHERE identity = %s", (keep, gone))
            self._write("INSERT INTO cannot_link SELECT LEAST(%s, other), GREATEST(%s, other)"
                        " FROM (SELECT CASE WHEN first = %s THEN second ELSE first END AS other"
                        " FROM cannot_link WHERE %s IN (first, second)) AS pairs"
                        " WHERE other != %s ON CONFLICT DO NOTHING", (keep, keep, gone, gone, keep))
            self.seen(keep, last_seen)
            self.delete_identity(gone)
            self._touch(keep)

    def split(self, identity: int, exemplars: list[int], appearances: list[int]) -> int:
        """A new identity holding the given exemplars and appearances of ``identity``."""
        with self._change():
            new = self.create_identity()
            self._write("UPDATE exemplars SET identity = %s WHERE id = ANY(%s) AND identity = %s",
                        (new, exemplars, identity))
            self._write("UPDATE appearances SET identity = %s"
                        " WHERE id = ANY(%s) AND identity = %s", (new, appearances, identity))
            self._touch(identity)
        return new

    def delete_identity(self, identity: int) -> None:
        """Remove the identity and everything of it (exemplars, faces, appearances, marks)."""
        with self._change():
            if not self._write("DELETE FROM identities WHERE id = %s RETURNING id", (identity,)):
                raise NotFoundError(f"there is no person p{identity} in the gallery; "
                                    f"`facestream gallery {self.url} list` shows who is")
            self._touch(identity)

    def erase(self, identity: int) -> None:
        """As :meth:`delete_identity`, and the tables that held the person are rewritten
        (``VACUUM FULL``: new files without their rows, indexes rebuilt), so nothing of them
        is left in the database's tables. What the server keeps elsewhere is the operator's to
        purge: its write-ahead log (``pg_wal``, until checkpoints recycle it) and WAL
        archives, base backups and dumps, and replicas' copies.

        The rewrite needs the tables to itself: when other sessions hold them for longer than
        :data:`ERASE_WAIT_MS`, it is left pending for :meth:`complete_erasures`."""
        with self.transaction():
            self.delete_identity(identity)
            self._write("INSERT INTO meta VALUES (%s, 'vacuum') ON CONFLICT (key) DO NOTHING",
                        (PENDING,))
        try:
            if not self.complete_erasures():
                log.warning("p%d is deleted; rewriting the gallery's tables waits for other "
                            "sessions holding them", identity)
        except StorageError as error:
            log.warning("p%d is deleted; rewriting the tables is retried: %s", identity, error)

    def complete_erasures(self, *, wait_ms: int = ERASE_WAIT_MS) -> bool:
        """Finish a pending erasure's rewrite (see :meth:`erase`), waiting up to ``wait_ms``
        for other sessions' locks; returns whether none is pending now."""
        if self._depth:
            return not self._query("SELECT 1 FROM meta WHERE key = %s", (PENDING,))
        if not self._query("SELECT 1 FROM meta WHERE key = %s", (PENDING,)):
            return True
        try:
            self._db.execute(f"SET lock_timeout = {max(1, int(wait_ms))}".encode())
            try:
                for table in PERSONAL:
                    self._db.execute(f"VACUUM FULL {SCHEMA}.{table}".encode())
            finally:
                self._db.execute(b"RESET lock_timeout")
        except pg_errors.LockNotAvailable:
            return False
        except psycopg.OperationalError as error:
            raise self._unwritable(error) from error
        self._write("DELETE FROM meta WHERE key = %s", (PENDING,))
        return True

    def unnamed_unseen_since(self, cutoff: float) -> list[int]:
        """Unnamed identities last seen before ``cutoff`` (for retention)."""
        return [int(row[0]) for row in self._query(
            "SELECT id FROM identities WHERE name IS NULL AND last_seen < %s ORDER BY id",
            (cutoff,))]

    # Exemplars

    def add_exemplar(self, identity: int, vector: FloatArray, *, quality: float, source: str,
                     face: bytes | None = None, now: float | None = None) -> int:
        """Store an embedding of ``identity``; returns the exemplar's number."""
        with self._change():
            try:  # in a savepoint: the refusal leaves an enclosing transaction usable
                with self._db.transaction():
                    exemplar = int(self._write(
                        "INSERT INTO exemplars (identity, vector, quality, source, created, face)"
                        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                        (identity, np.asarray(vector, np.float32), quality, source,
                         time.time() if now is None else now, face))[0][0])
            except pg_errors.ForeignKeyViolation:
                raise NotFoundError(f"there is no person p{identity} in the gallery") from None
            self._touch(identity)
        return exemplar

    def remove_exemplar(self, exemplar: int) -> None:
        """Evict one exemplar."""
        with self._change():
            rows = self._write("DELETE FROM exemplars WHERE id = %s RETURNING identity",
                               (exemplar,))
            self._touch(*{int(row[0]) for row in rows})

    def exemplars(self, identity: int | None = None) -> list[Exemplar]:
        """The exemplars of ``identity`` (of everyone with ``None``), with their faces."""
        rows = self._query(
            "SELECT id, identity, vector, quality, source, created, face FROM exemplars"
            " WHERE %s::bigint IS NULL OR identity = %s ORDER BY id", (identity, identity))
        return [Exemplar(int(row[0]), int(row[1]), _array(row[2]), row[3],
                         row[4], row[5], None if row[6] is None else bytes(row[6]))
                for row in rows]

    def set_vector(self, exemplar: int, vector: FloatArray) -> None:
        """Replace an exemplar's embedding (re-embedding its face)."""
        with self._change():
            rows = self._write("UPDATE exemplars SET vector = %s WHERE id = %s RETURNING identity",
                               (np.asarray(vector, np.float32), exemplar))
            self._touch(*{int(row[0]) for row in rows})

    def index_rows(self) -> IndexRows:
        """Every exemplar as arrays, without the faces (read in binary: start-up at scale)."""
        try:
            with self._db.cursor(binary=True) as cursor:
                rows = cursor.execute(
                    "SELECT id, identity, vector, quality FROM exemplars ORDER BY id").fetchall()
        except psycopg.OperationalError as error:
            raise self._unwritable(error) from error
        vectors = (np.stack([_array(row[2]) for row in rows]) if rows
                   else np.zeros((0, self.dim), np.float32))
        return IndexRows(np.asarray([row[0] for row in rows], np.int64),
                         np.asarray([row[1] for row in rows], np.int64), vectors,
                         np.asarray([row[3] for row in rows], np.float32))

    def nearest(self, vectors: FloatArray, k: int, *, exact: bool = False
                ) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """The ``k`` nearest exemplars of each of ``vectors`` as committed now: by the HNSW
        index (:data:`EF_SEARCH` candidates; its recall falls with the gallery's size, see
        ``benchmarks/gallery_scale.py``), or with ``exact`` by a scan of every exemplar.
        (distances, identities), ``inf`` and -1 past the end."""
        distances = np.full((len(vectors), k), np.inf, np.float32)
        identities = np.full((len(vectors), k), -1, np.int64)
        with self.transaction():
            if exact:
                self._write("SET LOCAL enable_indexscan = off")
            for i, vector in enumerate(np.asarray(vectors, np.float32)):
                rows = self._query("SELECT identity, vector <-> %s FROM exemplars"
                                   " ORDER BY vector <-> %s LIMIT %s", (vector, vector, k))
                for j, (identity, distance) in enumerate(rows):
                    identities[i, j], distances[i, j] = identity, distance
        return distances, identities

    # Appearances

    def add_appearance(self, identity: int, source: str, start: float, end: float) -> int:
        """Record that ``identity`` was seen on ``source`` from ``start`` to ``end``;
        :class:`NotFoundError` when the identity is gone (another node removed it)."""
        with self.transaction():
            try:  # in a savepoint, as in add_exemplar
                with self._db.transaction():
                    appearance = int(self._write(
                        'INSERT INTO appearances (identity, source, start, "end")'
                        " VALUES (%s, %s, %s, %s) RETURNING id",
                        (identity, source, start, end))[0][0])
            except pg_errors.ForeignKeyViolation:
                raise NotFoundError(f"there is no person p{identity} in the gallery") from None
            self.seen(identity, end)
        return appearance

    def extend_appearance(self, appearance: int, end: float) -> None:
        """The appearance lasted until ``end`` (it may have been merged away or forgotten)."""
        with self.transaction():
            rows = self._write('UPDATE appearances SET "end" = GREATEST("end", %s) WHERE id = %s'
                               " RETURNING identity", (end, appearance))
            for (identity,) in rows:
                self.seen(int(identity), end)

    def appearances(self, identity: int | None = None) -> list[AppearanceRecord]:
        """The appearances of ``identity`` (of everyone with ``None``), by start time."""
        rows = self._query('SELECT id, identity, source, start, "end" FROM appearances'
                           " WHERE %s::bigint IS NULL OR identity = %s ORDER BY start, id",
                           (identity, identity))
        return [AppearanceRecord(int(row[0]), int(row[1]), row[2], row[3], row[4])
                for row in rows]

    # Seen together: two people

    def add_cannot_link(self, first: int, second: int) -> None:
        """``first`` and ``second`` were on screen together: two people, never to be merged
        (not recorded when one of them is gone: another node removed them)."""
        if first == second:
            raise ValueError(f"p{first} cannot be kept apart from themselves")
        self._write("INSERT INTO cannot_link SELECT %s, %s WHERE (SELECT COUNT(*) FROM identities"
                    " WHERE id IN (%s, %s)) = 2 ON CONFLICT DO NOTHING",
                    (min(first, second), max(first, second), first, second))

    def cannot_link(self, identity: int) -> frozenset[int]:
        """The identities seen on screen together with ``identity``."""
        return frozenset(int(row[0]) for row in self._query(
            "SELECT CASE WHEN first = %s THEN second ELSE first END FROM cannot_link"
            " WHERE %s IN (first, second)", (identity, identity)))

    # "Not this person"

    def add_rejection(self, identity: int, vector: FloatArray) -> None:
        """Faces like ``vector`` are not ``identity``."""
        with self._change():
            self._write("INSERT INTO rejections (identity, vector) VALUES (%s, %s)",
                        (identity, np.asarray(vector, np.float32)))
            self._touch(identity)

    def rejections(self) -> list[tuple[int, FloatArray]]:
        """Every "not this person" mark: (identity, template)."""
        return [(int(row[0]), _array(row[1]))
                for row in self._query("SELECT identity, vector FROM rejections ORDER BY id")]

    def clear_rejections(self) -> None:
        """Forget every mark (their vectors are of a replaced embedder)."""
        with self._change():
            marked = self._write("DELETE FROM rejections RETURNING identity")
            self._touch(*{int(row[0]) for row in marked})


def _array(value: Vector) -> FloatArray:
    """A vector column's value as float32."""
    return np.asarray(value.to_numpy(), np.float32)


def _quoted(column: str) -> str:
    return f'"{column}"'


def _sqlite_value(value: object) -> object:
    """A PostgreSQL value as the SQLite file keeps it (vectors as float32 bytes)."""
    if isinstance(value, Vector):
        return _array(value).tobytes()
    if isinstance(value, memoryview):
        return bytes(value)
    return value
