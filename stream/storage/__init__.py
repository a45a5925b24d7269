"""Where galleries are kept: the :class:`~stream.storage.base.GalleryStore` protocol and its
implementations (:mod:`stream.storage.sqlite`, the embedded default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stream.storage.base import GalleryStore
from stream.storage.sqlite import SQLiteStore

if TYPE_CHECKING:
    from stream.identity.gallery import Gallery

__all__ = ["GalleryStore", "open_gallery", "open_store"]


def open_store(path: Path | None, *, embedder: str, version: str, dim: int,
               create: bool = True) -> GalleryStore:
    """The gallery store at ``path`` (a SQLite file, created when missing unless ``create``
    is false), or one in memory for ``None``."""
    return SQLiteStore(path, embedder=embedder, version=version, dim=dim, create=create)


def open_gallery(path: Path | None, *, dim: int, embedder: str, version: str) -> Gallery:
    """The gallery in ``path`` (created when missing), or one in memory for ``None``."""
    from stream.identity.gallery import Gallery  # FAISS: only once a gallery is opened

    return Gallery(open_store(path, embedder=embedder, version=version, dim=dim))
