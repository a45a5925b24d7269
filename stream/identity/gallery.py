"""The gallery: identities, their exemplar embeddings, the FAISS index, and ID allocation.

The gallery's truth is its store (a :class:`~stream.storage.base.GalleryStore`, given by the
caller); the FAISS index is rebuilt from it when the gallery opens, kept in step with every
change made through the gallery, and brought up to date with others' changes by
:meth:`Gallery.refresh`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import faiss
import numpy as np
import numpy.typing as npt

from stream.errors import ConflictError, GalleryError, NotFoundError
from stream.types import FloatArray

if TYPE_CHECKING:
    from stream.storage.base import GalleryStore

log = logging.getLogger(__name__)


# An exemplar this near one of its identity's others adds nothing: it is not kept.
MIN_EXEMPLAR_GAP = 0.08


@contextlib.contextmanager
def _one_openmp_thread() -> Iterator[None]:
    """FAISS on one thread for a call: one query at a time gains nothing from threads, which
    only fight the models' threads for the cores (measured: 5-100x slower searches with FAISS's
    default). FAISS and torch share one OpenMP runtime, so the calling thread's count is put
    back after: set for good, it ran torch on one core in that thread."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@dataclass(frozen=True)
class Neighbours:
    """The k nearest exemplars of each query: Euclidean distances and the identity of each."""

    distances: FloatArray  # (Q, k), ascending; inf where fewer than k exemplars exist
    identities: npt.NDArray[np.int64]  # (Q, k); -1 where fewer than k exemplars exist


class Gallery:
    """Identities and their exemplars in an exact FAISS index (Euclidean, unit vectors).

    IDs (``p1``, ``p2``, …) are allocated by the store and never given out twice. Vectors of
    another embedder are refused: they are not comparable. Each identity keeps at most
    ``max_exemplars``: when full, the least useful one (lowest quality times distance to its
    nearest sibling) makes way, so a person seen for a week keeps a varied, bounded set.
    """

    def __init__(self, store: GalleryStore, *, max_exemplars: int = 24,
                 min_exemplar_distance: float = MIN_EXEMPLAR_GAP) -> None:
        if max_exemplars < 1:
            raise ValueError(f"max_exemplars must be at least 1, got {max_exemplars}")
        self.store = store
        self.dim = store.dim
        self.embedder = store.embedder[0]
        self.max_exemplars = max_exemplars
        self.min_exemplar_distance = min_exemplar_distance
        self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(self.dim))
        self._owner: dict[int, int] = {}  # exemplar id -> identity
        self._members: dict[int, list[int]] = {}  # identity -> its exemplar ids
        self._quality: dict[int, float] = {}  # exemplar id -> quality
        self._rejected: dict[int, list[FloatArray]] = {}  # identity -> "not this person"
        self.highest = 0  # the highest identity number in use (IDs only grow)
        # The distance at which the latest create() joined someone made elsewhere (None: made).
        self.joined: float | None = None
        self._token = 0  # how far the store's changes are reflected here
        self.searches = {"index": 0, "store": 0}  # where searches were answered
        self.reload()

    def reload(self) -> None:
        """Rebuild the index from the store."""
        self._token = self.store.change_token()  # before reading: later changes come again
        self._index.reset()
        self._owner.clear()
        self._quality.clear()
        self._members = {identity: [] for identity in self.store.identity_ids()}
        self.highest = max(self._members, default=0)
        rows = self.store.index_rows()
        if len(rows.ids):
            self._check(rows.vectors)
            self._index.add_with_ids(rows.vectors, rows.ids)
        for exemplar, identity, quality in zip(rows.ids.tolist(), rows.identities.tolist(),
                                               rows.qualities.tolist(), strict=True):
            self._owner[exemplar] = identity
            self._members[identity].append(exemplar)
            self._quality[exemplar] = quality
        self._rejected = {}
        for identity, vector in self.store.rejections():
            self._rejected.setdefault(identity, []).append(vector)

    def refresh(self, *, before_change: Callable[[], None] | None = None) -> frozenset[int]:
        """Bring the index up to date with the changes others (another process or machine
        sharing the store) committed since the last reload or refresh; returns the identities
        that changed (created, deleted, merged, split, renamed, exemplars or marks).
        ``before_change`` is called first when there is something to change."""
        changes = self.store.changes_since(self._token)
        if before_change is not None and (changes.identities is None or changes.identities):
            before_change()
        if changes.identities is None:
            before = set(self._members)
            self.reload()
            return frozenset(before | set(self._members))
        self._token = changes.token
        if not changes.identities:
            return changes.identities
        rejections = self.store.rejections()
        for identity in changes.identities & self._members.keys():
            self._drop(identity)  # all first: their exemplars may have moved between them
        for identity in changes.identities:
            self._load(identity, rejections)
        return changes.identities

    def _load(self, identity: int, rejections: list[tuple[int, FloatArray]]) -> bool:
        """Index ``identity`` as the store has it (``rejections``: the store's marks); false
        when the store has no such identity (deleted, or merged into another)."""
        try:
            self.store.identity(identity)
        except NotFoundError:
            return False
        self._members[identity] = []
        self.highest = max(self.highest, identity)
        for exemplar in self.store.exemplars(identity):
            self._index_exemplar(identity, exemplar.id, exemplar.vector, exemplar.quality)
        marks = [vector for owner, vector in rejections if owner == identity]
        if marks:
            self._rejected[identity] = marks
        return True

    def current(self) -> bool:
        """Whether the index holds everything the store does (no other store committed a
        change since the last reload or refresh)."""
        return self.store.changes_since(self._token).identities == frozenset()

    def __len__(self) -> int:
        """The number of identities."""
        return len(self._members)

    def __contains__(self, identity: int) -> bool:
        return identity in self._members

    @staticmethod
    def label(identity: int) -> str:
        """The public ID of identity number ``identity``."""
        return f"p{identity}"

    @staticmethod
    def number(label: str) -> int:
        """The identity number of a public ID (``p12`` or ``12``)."""
        digits = label[1:] if label[:1] in ("p", "P") else label
        if not digits.isdigit():
            raise GalleryError(f"{label!r} is not a person ID; IDs look like p12")
        return int(digits)

    def exemplar_count(self, identity: int) -> int:
        """How many exemplars identity ``identity`` has."""
        return len(self._members.get(identity, []))

    def create(self, embeddings: FloatArray, *, quality: float = 1.0, source: str = "",
               face: bytes | None = None, join_within: float | None = None) -> int:
        """A new identity holding (a diverse subset of) ``embeddings``; returns its number.

        With ``join_within``, the gallery is searched again under the store's creation lock
        (other stores sharing it may have just created this person): when an identity this
        gallery did not hold is found that near the first embedding, the embeddings join it
        instead, and its number is returned."""
        self._check(embeddings)
        highest, identity = self.highest, 0
        self.joined = None
        try:
            with self.store.transaction():
                if join_within is not None:
                    self.store.lock_creation()
                    # exact: an approximate index may miss the one person it must not
                    found = (self.search(embeddings[:1], 1) if self.current() else
                             Neighbours(*self.store.nearest(embeddings[:1], 1, exact=True)))
                    known = int(found.identities[0, 0])
                    # Only someone this gallery did not hold: those it holds, the matcher has
                    # judged already (a look-alike, or someone on screen beside this face).
                    if float(found.distances[0, 0]) < join_within and (
                            known not in self._members
                            and self._load(known, self.store.rejections())):
                        log.info("p%d was just created elsewhere: joined, not created again",
                                 known)
                        self._add(known, embeddings, quality, source, face)
                        self.joined = float(found.distances[0, 0])
                        return known
                identity = self.store.create_identity()
                self._members[identity] = []
                self.highest = max(self.highest, identity)
                self._add(identity, embeddings, quality, source, face)
        except BaseException:  # the store kept nothing (a full disk): neither does the index
            if identity in self._members:
                self._drop(identity)
            self.highest = highest
            raise
        return identity

    def add_exemplars(self, identity: int, embeddings: FloatArray, *, quality: float = 1.0,
                      source: str = "", face: bytes | None = None) -> int:
        """Add those of ``embeddings`` that are not near-duplicates of the identity's exemplars
        (making way for them when the identity is full); returns how many were added."""
        # An identity the index does not hold yet may be one a search of the store found.
        if identity not in self._members and not self._load(identity, self.store.rejections()):
            raise KeyError(f"unknown identity {identity}")
        self._check(embeddings)
        try:
            with self.store.transaction():
                return self._add(identity, embeddings, quality, source, face)
        except BaseException:  # the store kept none of it (a full disk): index it as stored
            self._drop(identity)
            self._members[identity] = []
            for exemplar in self.store.exemplars(identity):
                self._index_exemplar(identity, exemplar.id, exemplar.vector, exemplar.quality)
            raise

    def _add(self, identity: int, embeddings: FloatArray, quality: float, source: str,
             face: bytes | None) -> int:
        added = 0
        for vector in embeddings:
            own = self.vectors(identity)
            if len(own) and float(np.min(np.linalg.norm(own - vector, axis=1))) < (
                    self.min_exemplar_distance):
                continue
            if len(own) >= self.max_exemplars and not self._make_way(identity, vector, quality):
                continue
            exemplar = self.store.add_exemplar(identity, vector, quality=quality, source=source,
                                               face=face)
            self._index_exemplar(identity, exemplar, vector, quality)
            added += 1
        return added

    def _index_exemplar(self, identity: int, exemplar: int, vector: FloatArray,
                        quality: float) -> None:
        self._index.add_with_ids(vector[None].astype(np.float32),
                                 np.asarray([exemplar], np.int64))
        self._owner[exemplar] = identity
        self._members[identity].append(exemplar)
        self._quality[exemplar] = quality

    def _make_way(self, identity: int, vector: FloatArray, quality: float) -> bool:
        """Evict the identity's least useful exemplar if the new one is more useful."""
        members = self._members[identity]
        vectors = np.concatenate([self.vectors(identity), vector[None]])
        distances = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
        np.fill_diagonal(distances, np.inf)
        qualities = np.asarray([self._quality[m] for m in members] + [quality])
        usefulness = qualities * distances.min(axis=1)
        weakest = int(np.argmin(usefulness))
        if weakest == len(members):
            return False
        self._remove_exemplars([members[weakest]])
        return True

    def _remove_exemplars(self, exemplars: list[int]) -> None:
        for exemplar in exemplars:
            self.store.remove_exemplar(exemplar)
            self._members[self._owner.pop(exemplar)].remove(exemplar)
            self._quality.pop(exemplar)
        self._index.remove_ids(np.asarray(exemplars, np.int64))  # type: ignore[arg-type]

    def search(self, queries: FloatArray, k: int) -> Neighbours:
        """The ``k`` nearest exemplars of each query: from the index when it is
        :meth:`current`, else from the store (counted in :attr:`searches`)."""
        self._check(queries)
        if len(queries) and not self.current():
            # Others changed the gallery since the last refresh: the store has it all.
            log.debug("the index is behind the store's changes: searching the store")
            self.searches["store"] += 1
            distances, identities = self.store.nearest(queries, k)
            return Neighbours(distances, identities)
        self.searches["index"] += 1
        if self._index.ntotal == 0 or len(queries) == 0:
            shape = (len(queries), k)
            return Neighbours(np.full(shape, np.inf, np.float32), np.full(shape, -1, np.int64))
        with _one_openmp_thread():
            squared, ids = self._index.search(np.ascontiguousarray(queries, np.float32), k)
        identities = np.asarray([[self._owner.get(int(i), -1) for i in row] for row in ids],
                                np.int64).reshape(ids.shape)
        distances = np.where(ids >= 0, np.sqrt(np.maximum(squared, 0.0)), np.inf)
        return Neighbours(distances.astype(np.float32), identities)

    def rejected(self, identity: int, query: FloatArray, within: float) -> bool:
        """Whether a user marked a face like ``query`` (within ``within``) as not ``identity``."""
        return any(float(np.linalg.norm(vector - query)) < within
                   for vector in self._rejected.get(identity, []))

    # Changes by the user

    def reject(self, identity: int, template: FloatArray) -> None:
        """Remember that faces like ``template`` are not ``identity``."""
        self._require(identity)
        self.store.add_rejection(identity, template)
        self._rejected.setdefault(identity, []).append(template.astype(np.float32))

    def merge(self, keep: int, gone: int) -> None:
        """Make one person of two: ``gone``'s exemplars, appearances and marks become
        ``keep``'s, and ``gone`` is removed."""
        self._require(keep)
        self._require(gone)
        if keep == gone:
            raise ConflictError(f"cannot merge {self.label(keep)} with itself; give two "
                                "different people")
        self.store.merge(keep, gone)
        self._move(list(self._members[gone]), keep)
        del self._members[gone]
        self._rejected.setdefault(keep, []).extend(self._rejected.pop(gone, []))

    def split(self, identity: int, *, exemplars: list[int], appearances: list[int]) -> int:
        """Move the given exemplars and appearances of ``identity`` to a new identity."""
        self._require(identity)
        own_exemplars = set(self._members[identity])
        own_appearances = {a.id for a in self.store.appearances(identity)}
        strangers = ([f"exemplar {e}" for e in exemplars if e not in own_exemplars]
                     + [f"appearance {a}" for a in appearances if a not in own_appearances])
        if strangers:
            raise GalleryError(f"{', '.join(strangers)} not of {self.label(identity)}; "
                               f"`facestream gallery {self.store.location} show "
                               f"{self.label(identity)}` lists them")
        if len(set(exemplars)) < len(exemplars) or len(set(appearances)) < len(appearances):
            raise GalleryError("an exemplar or appearance is given twice; give each once")
        if not exemplars and not appearances:
            raise GalleryError("give the exemplars or appearances to split off")
        if exemplars and len(exemplars) == len(own_exemplars):
            raise GalleryError(f"{self.label(identity)} must keep at least one exemplar")
        new = self.store.split(identity, exemplars, appearances)
        self._members[new] = []
        self.highest = max(self.highest, new)
        self._move(exemplars, new)
        return new

    def forget(self, identity: int, *, erase: bool = False) -> None:
        """Remove a person completely: exemplars, faces, appearances, marks; with ``erase``,
        the store also overwrites the space they took (see :meth:`GalleryStore.erase`)."""
        self._require(identity)
        if erase:
            self.store.erase(identity)
        else:
            self.store.delete_identity(identity)
        self._drop(identity)

    def retire(self, unseen_since: float) -> list[int]:
        """Remove the unnamed identities not seen since ``unseen_since`` (retention); returns
        their numbers."""
        gone = self.store.unnamed_unseen_since(unseen_since)
        if gone:
            with self.store.transaction():
                for identity in gone:
                    self.store.delete_identity(identity)
            for identity in gone:
                self._drop(identity)
        return gone

    def _move(self, exemplars: list[int], identity: int) -> None:
        """The index's side of moving exemplars to another identity (the vectors stay)."""
        for exemplar in exemplars:
            self._members[self._owner[exemplar]].remove(exemplar)
            self._owner[exemplar] = identity
            self._members[identity].append(exemplar)

    def _drop(self, identity: int) -> None:
        """The index's side of deleting an identity (the store cascades by itself)."""
        exemplars = self._members.pop(identity)
        self._rejected.pop(identity, None)
        for exemplar in exemplars:
            del self._owner[exemplar]
            del self._quality[exemplar]
        if exemplars:
            self._index.remove_ids(np.asarray(exemplars, np.int64))  # type: ignore[arg-type]

    def _require(self, identity: int) -> None:
        if identity not in self._members:
            raise NotFoundError(f"there is no person {self.label(identity)} in the gallery; "
                                f"`facestream gallery {self.store.location} list` shows who is")

    def vectors(self, identity: int) -> FloatArray:
        """The exemplar vectors of ``identity`` (none for an identity it does not hold)."""
        members = self._members.get(identity, [])
        if not members:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._index.reconstruct(member) for member in members])

    def _check(self, vectors: FloatArray) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"the {self.embedder} gallery takes vectors of dimension {self.dim}, "
                             f"got shape {vectors.shape}")

