"""Where galleries are kept: the :class:`~stream.storage.base.GalleryStore` protocol and its
implementations (:mod:`stream.storage.sqlite`, the embedded default, and
:mod:`stream.storage.postgres`, one gallery shared by several nodes)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stream.storage.base import GalleryStore
from stream.storage.sqlite import SQLiteStore

if TYPE_CHECKING:
    from stream.identity.gallery import Gallery

__all__ = ["GalleryStore", "Location", "check_location", "is_url", "open_gallery", "open_store",
           "recorded_embedder"]

Location = Path | str | None  # a SQLite file, a postgresql:// URL, or None: in memory


def is_url(location: Location) -> bool:
    """Whether ``location`` names a PostgreSQL gallery rather than a file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_store(location: Location, *, embedder: str, version: str, dim: int,
               create: bool = True) -> GalleryStore:
    """The gallery store at ``location``: a PostgreSQL database for a ``postgresql://`` URL, a
    SQLite file for a path, or one in memory for ``None``; created when missing unless
    ``create`` is false."""
    if is_url(location):
        from stream.storage.postgres import PostgresStore  # psycopg: only for such a gallery

        return PostgresStore(str(location), embedder=embedder, version=version, dim=dim,
                             create=create)
    path = None if location is None else Path(location)
    return SQLiteStore(path, embedder=embedder, version=version, dim=dim, create=create)


def open_gallery(location: Location, *, dim: int, embedder: str, version: str) -> Gallery:
    """The gallery at ``location`` (created when missing), or one in memory for ``None``."""
    from stream.identity.gallery import Gallery  # FAISS: only once a gallery is opened

    return Gallery(open_store(location, embedder=embedder, version=version, dim=dim))


def recorded_embedder(location: Path | str) -> tuple[str, str, int]:
    """The embedder (name, version, dimension) the gallery at ``location`` (a file or a URL)
    was built with, read without loading any model."""
    if is_url(location):
        from stream.storage import postgres

        return postgres.recorded_embedder(str(location))
    from stream.storage import sqlite

    return sqlite.recorded_embedder(Path(location))


def check_location(location: Location) -> None:
    """Refuse a gallery that cannot be used before anything slow is loaded: a PostgreSQL server
    that cannot be reached or lacks pgvector (:class:`~stream.errors.GalleryError`)."""
    if is_url(location):
        from stream.storage.postgres import connect

        connect(str(location)).close()
