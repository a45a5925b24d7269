"""What the gallery needs of its persistent form: the :class:`GalleryStore` protocol, and the
records it returns.

A store holds identities, their exemplar embeddings (with the face each came from, for
re-embedding), appearances, "not this person" marks and cannot-link pairs (identities seen on
screen together). Every method is its own transaction unless called inside
:meth:`GalleryStore.transaction`, so a process killed at any moment leaves the store as of its
last completed change. A store knows nothing of FAISS or the models:
:class:`stream.identity.gallery.Gallery` keeps its index in step with the store, and learns of
the changes others made through :meth:`GalleryStore.changes_since`. A write the store cannot
make now (a full disk) raises :class:`~stream.errors.StorageError` and keeps nothing of it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from stream.types import FloatArray


@dataclass(frozen=True)
class Exemplar:
    """One stored embedding of an identity, with the JPEG of the face it came from if kept."""

    id: int
    identity: int
    vector: FloatArray
    quality: float
    source: str
    created: float
    face: bytes | None


@dataclass(frozen=True)
class IdentityRecord:
    """One identity with counts of what it holds."""

    id: int
    name: str | None
    created: float
    last_seen: float
    exemplars: int
    appearances: int
    seen_s: float  # total time of the recorded appearances


@dataclass(frozen=True)
class AppearanceRecord:
    """A span of time an identity was seen on a source (``camera:door``, ``file:a.mp4``)."""

    id: int
    identity: int
    source: str
    start: float
    end: float


@dataclass(frozen=True)
class IndexRows:
    """What an index needs of every exemplar, one array per field (no faces)."""

    ids: npt.NDArray[np.int64]  # (N,)
    identities: npt.NDArray[np.int64]  # (N,)
    vectors: FloatArray  # (N, D)
    qualities: FloatArray  # (N,)


def exact_nearest(rows: IndexRows, vectors: FloatArray, k: int
                  ) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """:meth:`GalleryStore.nearest` by brute force over ``rows`` (a store without an index)."""
    distances = np.full((len(vectors), k), np.inf, np.float32)
    identities = np.full((len(vectors), k), -1, np.int64)
    if len(rows.ids):
        squared = (np.sum(vectors ** 2, axis=1)[:, None] - 2 * vectors @ rows.vectors.T
                   + np.sum(rows.vectors ** 2, axis=1)[None])
        all_distances = np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)
        order = np.argsort(all_distances, axis=1)[:, :k]
        found = order.shape[1]
        distances[:, :found] = np.take_along_axis(all_distances, order, axis=1)
        identities[:, :found] = rows.identities[order]
    return distances, identities


@dataclass(frozen=True)
class Changes:
    """What others committed after a token: the identities whose exemplars, marks, name or
    existence changed (``None``: too much to list, reload everything), and the token to ask
    with next time."""

    token: int
    identities: frozenset[int] | None


class GalleryStore(Protocol):
    """The persistent gallery. Use one from one thread at a time; several stores (processes,
    machines) may share one gallery and learn of each other's changes by polling
    :meth:`changes_since`."""

    @property
    def location(self) -> str:
        """Where the gallery is, as the user names it (a file path, a database URL)."""
        ...

    @property
    def gallery_id(self) -> str:
        """The gallery's own ID (a uuid made with it, kept with it: every store of this gallery
        gives the same, another gallery another), naming it where galleries meet (MQTT)."""
        ...

    @property
    def dim(self) -> int:
        """The dimension of the exemplar vectors."""
        ...

    @property
    def embedder(self) -> tuple[str, str]:
        """The embedder (name, version) the exemplars were computed with."""
        ...

    def set_embedder(self, embedder: str, version: str, dim: int) -> None:
        """Record that the exemplars are now of another embedder (after re-embedding them)."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Several changes as one: all or none of them are committed. Nests."""
        ...

    def close(self) -> None:
        """Release the store; closing twice is harmless."""
        ...

    def backup(self, path: Path) -> None:
        """Write a consistent copy of the whole gallery to the new file ``path``."""
        ...

    def changes_since(self, token: int) -> Changes:
        """The committed changes made by other stores after ``token`` (this store's own are
        left out). Ask first with :meth:`change_token`."""
        ...

    def change_token(self) -> int:
        """A token for "now", for :meth:`changes_since`."""
        ...

    def lock_creation(self) -> None:
        """Inside a transaction: until it ends, no other store sharing the gallery creates an
        identity (or changes one), and what they committed before is visible here; so a
        creation that searches the store again first makes no second identity of one person."""
        ...

    def nearest(self, vectors: FloatArray, k: int, *, exact: bool = False
                ) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """The ``k`` nearest exemplars of each of ``vectors`` (Q, D) in the store as committed
        now: Euclidean distances (Q, k) ascending and their identities, ``inf`` and -1 where
        there are fewer. What a cache that may be stale searches instead of itself. A store
        with an approximate index uses it unless ``exact`` (slower: every exemplar)."""
        ...

    # Identities

    def create_identity(self, now: float | None = None) -> int:
        """A new identity; its number is never given out again, even once it is deleted."""
        ...

    def identity_ids(self) -> list[int]:
        """The numbers of every identity, ascending."""
        ...

    def identity(self, identity: int) -> IdentityRecord:
        """One identity; :class:`~stream.errors.NotFoundError` when there is none."""
        ...

    def identities(self) -> list[IdentityRecord]:
        """Every identity, in order of creation."""
        ...

    def rename(self, identity: int, name: str | None) -> None:
        """Give the identity a name, or take it away with ``None``."""
        ...

    def seen(self, identity: int, when: float) -> None:
        """The identity was seen at ``when`` (last seen only moves forward)."""
        ...

    def merge(self, keep: int, gone: int) -> None:
        """Everything of ``gone`` becomes ``keep``'s, and ``gone`` is deleted."""
        ...

    def split(self, identity: int, exemplars: list[int], appearances: list[int]) -> int:
        """A new identity holding the given exemplars and appearances of ``identity``."""
        ...

    def delete_identity(self, identity: int) -> None:
        """Remove the identity and everything of it (exemplars, faces, appearances, marks)."""
        ...

    def erase(self, identity: int) -> None:
        """As :meth:`delete_identity`, and the space it took is overwritten, so nothing of it
        can be recovered from the store (privacy requests). When other readers keep the old
        data alive, the overwrite is left pending for :meth:`complete_erasures`."""
        ...

    def complete_erasures(self, *, wait_ms: int = 100) -> bool:
        """Finish the pending overwrites of earlier erasures (waiting up to ``wait_ms`` for
        readers); returns whether none is pending now."""
        ...

    def unnamed_unseen_since(self, cutoff: float) -> list[int]:
        """Unnamed identities last seen before ``cutoff`` (for retention)."""
        ...

    # Exemplars

    def add_exemplar(self, identity: int, vector: FloatArray, *, quality: float, source: str,
                     face: bytes | None = None, now: float | None = None) -> int:
        """Store an embedding of ``identity``; returns the exemplar's number."""
        ...

    def remove_exemplar(self, exemplar: int) -> None:
        """Evict one exemplar."""
        ...

    def exemplars(self, identity: int | None = None) -> list[Exemplar]:
        """The exemplars of ``identity`` (of everyone with ``None``), with their faces."""
        ...

    def set_vector(self, exemplar: int, vector: FloatArray) -> None:
        """Replace an exemplar's embedding (re-embedding its face)."""
        ...

    def index_rows(self) -> IndexRows:
        """Every exemplar as arrays, without the faces (what an index is built from)."""
        ...

    # Appearances

    def add_appearance(self, identity: int, source: str, start: float, end: float) -> int:
        """Record that ``identity`` was seen on ``source`` from ``start`` to ``end``
        (:class:`~stream.errors.NotFoundError` when the identity is gone)."""
        ...

    def extend_appearance(self, appearance: int, end: float) -> None:
        """The appearance lasted until ``end`` (it may have been merged away or forgotten)."""
        ...

    def appearances(self, identity: int | None = None) -> list[AppearanceRecord]:
        """The appearances of ``identity`` (of everyone with ``None``), by start time."""
        ...

    # Seen together: two people

    def add_cannot_link(self, first: int, second: int) -> None:
        """``first`` and ``second`` were on screen together (one frame of one camera): they are
        two people, never to be merged. Recording a pair again is harmless."""
        ...

    def cannot_link(self, identity: int) -> frozenset[int]:
        """The identities seen on screen together with ``identity``. A merge gives the kept
        identity those of the one merged into it."""
        ...

    # "Not this person"

    def add_rejection(self, identity: int, vector: FloatArray) -> None:
        """Faces like ``vector`` are not ``identity``."""
        ...

    def rejections(self) -> list[tuple[int, FloatArray]]:
        """Every "not this person" mark: (identity, template)."""
        ...

    def clear_rejections(self) -> None:
        """Forget every mark (their vectors are of a replaced embedder)."""
        ...
