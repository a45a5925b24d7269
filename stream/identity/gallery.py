"""The gallery: identities, their exemplar embeddings, the FAISS index, and ID allocation."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from stream.types import FloatArray


@dataclass(frozen=True)
class Neighbours:
    """The k nearest exemplars of each query: Euclidean distances and the identity of each."""

    distances: FloatArray  # (Q, k), ascending; inf where fewer than k exemplars exist
    identities: npt.NDArray[np.int64]  # (Q, k); -1 where fewer than k exemplars exist


class Gallery:
    """Identities and their exemplars in an exact FAISS index (inner space of unit vectors).

    IDs are allocated here, by instance, as ``p1``, ``p2``, … in order of creation. Vectors of
    another embedder are refused: they are not comparable.
    """

    def __init__(self, dim: int, embedder: str, *, max_exemplars: int = 24,
                 min_exemplar_distance: float = 0.08) -> None:
        if max_exemplars < 1:
            raise ValueError(f"max_exemplars must be at least 1, got {max_exemplars}")
        self.dim = dim
        self.embedder = embedder
        self.max_exemplars = max_exemplars
        self.min_exemplar_distance = min_exemplar_distance
        self._index = faiss.IndexFlatL2(dim)
        self._owner: list[int] = []  # row of the index -> identity number
        self._count: dict[int, int] = {}

    def __len__(self) -> int:
        """The number of identities."""
        return len(self._count)

    @staticmethod
    def label(identity: int) -> str:
        """The public ID of identity number ``identity``."""
        return f"p{identity}"

    def exemplar_count(self, identity: int) -> int:
        """How many exemplars identity ``identity`` has."""
        return self._count.get(identity, 0)

    def create(self, embeddings: FloatArray) -> int:
        """A new identity holding (a diverse subset of) ``embeddings``; returns its number."""
        identity = len(self._count) + 1
        self._count[identity] = 0
        self.add_exemplars(identity, embeddings)
        return identity

    def add_exemplars(self, identity: int, embeddings: FloatArray) -> int:
        """Add those of ``embeddings`` that are not near-duplicates of the identity's exemplars,
        up to ``max_exemplars``; returns how many were added."""
        if identity not in self._count:
            raise KeyError(f"unknown identity {identity}")
        self._check(embeddings)
        added = 0
        for vector in embeddings:
            if self._count[identity] >= self.max_exemplars:
                break
            own = self._exemplars(identity)
            if len(own) and float(np.min(np.linalg.norm(own - vector, axis=1))) < (
                    self.min_exemplar_distance):
                continue
            self._index.add(vector[None].astype(np.float32))
            self._owner.append(identity)
            self._count[identity] += 1
            added += 1
        return added

    def search(self, queries: FloatArray, k: int) -> Neighbours:
        """The ``k`` nearest exemplars of each query."""
        self._check(queries)
        if self._index.ntotal == 0 or len(queries) == 0:
            shape = (len(queries), k)
            return Neighbours(np.full(shape, np.inf, np.float32), np.full(shape, -1, np.int64))
        squared, rows = self._index.search(np.ascontiguousarray(queries, np.float32), k)
        owners = np.asarray([*self._owner, -1], np.int64)  # row -1 (missing) maps to -1
        identities = owners[rows]
        distances = np.where(rows >= 0, np.sqrt(np.maximum(squared, 0.0)), np.inf)
        return Neighbours(distances.astype(np.float32), identities)

    def _exemplars(self, identity: int) -> FloatArray:
        rows = [row for row, owner in enumerate(self._owner) if owner == identity]
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        vectors: FloatArray = np.stack([self._index.reconstruct(row) for row in rows])
        return vectors

    def _check(self, vectors: FloatArray) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"the {self.embedder} gallery takes vectors of dimension {self.dim}, "
                             f"got shape {vectors.shape}")
