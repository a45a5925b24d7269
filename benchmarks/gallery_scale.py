"""The shared gallery at scale: match latency of the local FAISS index, pgvector's HNSW index
and pgvector's exact scan, HNSW's recall against exact, a node's start-up and the cost of one
forget, for 10k to 1M identities in PostgreSQL.

``python -m benchmarks.gallery_scale [--sizes 10000,100000,1000000] [--queries 200]
[--ef-search 100,400] [--maintenance-work-mem 2GB] [--url URL]``

The data are those of :mod:`benchmarks.gallery` (dlib-resnet-like 128-d unit vectors, one
exemplar per identity here): a query is the template of a track of a known person, ~0.2 from
their exemplar. Without ``--url`` a PostgreSQL with pgvector is started from PyPI's
``pgserver`` in a temporary folder (on a Unix socket). Each size is loaded with ``COPY`` into a
fresh gallery schema made by :class:`~stream.storage.postgres.PostgresStore`, its HNSW index
(pgvector's defaults, m=16, ef_construction=64) built after the load with
``maintenance_work_mem`` (the graph of 1M fits in 2GB; a smaller one spills to disk and the
build slows down many times), and then:

- ``start-up``: a :class:`~stream.identity.gallery.Gallery` opened on it (every exemplar read
  and indexed in FAISS), what a node does when it starts;
- ``FAISS``: ``Gallery.search(query, 16)`` on that index (what a node does while current);
- ``HNSW ef N``: ``PostgresStore.nearest(query, 16)`` with ``hnsw.ef_search`` N (the store
  uses :data:`~stream.storage.postgres.EF_SEARCH`): what a node does while its index is
  behind, and under the creation lock; its recall@1 and @16 are its neighbours among the
  exact ones;
- ``pgvector exact``: ``nearest(query, 16, exact=True)``, a scan of every exemplar (what a
  creation under the lock does when the node's index is behind);
- ``forget``: ``Gallery.forget(identity, erase=True)`` of one person, as the REST API and the
  CLI forget (``DELETE`` and ``VACUUM FULL`` of every table that held them, rebuilding their
  indexes, the HNSW one too, with the same ``maintenance_work_mem``), and ``delete only``,
  ``Gallery.forget`` of another without the rewrite.

Prints one table (latencies as p50 / p95 in ms), and the stages of each size as they end.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.gallery import (
    DIM,
    EMBEDDER,
    EXEMPLAR_RADIUS,
    FACE_RADIUS,
    TRACK_FACES,
    VERSION,
    identity_centres,
    p50_p95,
    scatter,
    timed,
    unit,
)
from stream.identity.gallery import Gallery
from stream.storage.postgres import EF_SEARCH, SCHEMA, PostgresStore
from stream.types import FloatArray

K = 16


@contextmanager
def server() -> Iterator[str]:
    """A PostgreSQL with pgvector in a temporary folder (pgserver); its URL."""
    from pgserver.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="facestream-bench-pg-") as folder:
        running = get_server(Path(folder), cleanup_mode="stop")
        try:
            running.psql("CREATE EXTENSION IF NOT EXISTS vector;")
            socket = running.get_uri().rsplit("host=", 1)[1]
            yield f"postgresql://postgres@/postgres?host={socket}"
        finally:
            running.cleanup()


def load(url: str, count: int, seed: int, work_mem: str) -> tuple[PostgresStore, float, float]:
    """A new gallery of ``count`` identities at ``url``; the seconds of the load and of the
    HNSW index build (with ``maintenance_work_mem`` ``work_mem``, kept by the store's
    connection for its erasures)."""
    store = PostgresStore(url, embedder=EMBEDDER, version=VERSION, dim=DIM)
    db = store._db  # the benchmark fills the store's own tables, as COPY does it fastest
    db.execute("SELECT set_config('maintenance_work_mem', %s, false)", (work_mem,))
    db.execute(f"TRUNCATE {SCHEMA}.identities, {SCHEMA}.changes RESTART IDENTITY CASCADE")
    db.execute("DROP INDEX IF EXISTS exemplars_vector")
    vectors = scatter(np.random.default_rng([seed, 2]), identity_centres(count, seed),
                      EXEMPLAR_RADIUS)
    start = time.perf_counter()
    with db.transaction():
        db.execute("INSERT INTO identities (created, last_seen)"
                   " SELECT 0, 0 FROM generate_series(1, %s)", (count,))
        with db.cursor().copy("COPY exemplars (identity, vector, quality, source, created)"
                              " FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector", "float4", "text", "float8"])
            for identity, vector in enumerate(vectors, start=1):
                copy.write_row((identity, vector, 1.0, "synthetic", 0.0))
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    db.execute("CREATE INDEX exemplars_vector ON exemplars USING hnsw (vector vector_l2_ops)")
    db.execute("ANALYZE exemplars")
    return store, loaded, time.perf_counter() - start


def queries(count: int, samples: int, seed: int) -> FloatArray:
    """Templates of tracks of known people (``samples`` of them)."""
    rng = np.random.default_rng([seed, 5])
    centres = identity_centres(count, seed)[rng.choice(count, samples, replace=False)]
    faces = [scatter(rng, np.repeat(centre[None], TRACK_FACES, axis=0), FACE_RADIUS)
             for centre in centres]
    return unit(np.stack([face.mean(axis=0) for face in faces]))


def measure(url: str, count: int, samples: int, seed: int, ef_search: Sequence[int], *,
            work_mem: str) -> dict[str, str]:
    """The figures of one size, by table row; each stage's printed as it ends (a run stopped
    before the table keeps them)."""
    began = time.perf_counter()
    figures: dict[str, str] = {}

    def stage(**found: str) -> None:
        figures.update(found)
        print(f"  {count:,} ({time.perf_counter() - began:.0f} s in): "
              + ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in found.items()),
              flush=True)

    store, loaded, indexed = load(url, count, seed, work_mem)
    stage(load_s=f"{loaded:.1f}", HNSW_build_s=f"{indexed:.1f}")
    asked = queries(count, samples, seed)
    start_ms, gallery = timed(Gallery, store)
    faiss_ms = [timed(gallery.search, query[None], K)[0] for query in asked]
    stage(node_startup_s=f"{start_ms / 1000:.2f}", FAISS_ms=p50_p95(faiss_ms))
    exact = [timed(store.nearest, query[None], K, exact=True) for query in asked]
    assert gallery.searches["store"] == 0, "the index was stale: FAISS was not measured"
    stage(pgvector_exact_ms=p50_p95([e[0] for e in exact]))
    for ef in ef_search:
        store._db.execute(f"SET hnsw.ef_search = {int(ef)}".encode())
        hnsw = [timed(store.nearest, query[None], K) for query in asked]
        top1 = np.mean([h[1][1][0, 0] == e[1][1][0, 0] for h, e in zip(hnsw, exact, strict=True)])
        at_k = np.mean([len(set(h[1][1][0]) & set(e[1][1][0])) / K
                        for h, e in zip(hnsw, exact, strict=True)])
        stage(**{f"HNSW_ef_{ef}_ms": p50_p95([h[0] for h in hnsw]),
                 f"HNSW_ef_{ef}_recall@1": f"{top1:.3f}",
                 f"HNSW_ef_{ef}_recall@{K}": f"{at_k:.3f}"})
    store._db.execute(f"SET hnsw.ef_search = {EF_SEARCH}".encode())
    deleted_ms, _ = timed(gallery.forget, 2)
    stage(forget_delete_only_s=f"{deleted_ms / 1000:.3f}")
    forget_ms, _ = timed(gallery.forget, 1, erase=True)
    assert store.complete_erasures(), "the erasure's rewrite was left pending"
    stage(forget_with_VACUUM_FULL_s=f"{forget_ms / 1000:.1f}")
    store.close()
    return {name.replace("_", " "): value for name, value in figures.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; prints the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gallery_scale",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="identity counts, comma-separated (default 10000,100000,1000000)")
    parser.add_argument("--queries", type=int, default=200, help="queries per size")
    parser.add_argument("--url", help="a PostgreSQL with pgvector to use (default: one started "
                        "from pgserver); its facestream schema is replaced")
    parser.add_argument("--ef-search", default=f"100,{EF_SEARCH}",
                        help="HNSW candidates per search to measure, comma-separated (default: "
                        f"pgvector's 100 and the store's {EF_SEARCH})")
    parser.add_argument("--maintenance-work-mem", default="2GB",
                        help="PostgreSQL's memory for the HNSW build and the erasures' index "
                        "rebuilds (default 2GB)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    ef_search = [int(ef) for ef in args.ef_search.split(",")]
    columns: dict[int, dict[str, str]] = {}
    with server() if args.url is None else _given(args.url) as url:
        for count in sizes:
            start = time.perf_counter()
            columns[count] = measure(url, count, args.queries, args.seed, ef_search,
                                     work_mem=args.maintenance_work_mem)
            print(f"{count:,} identities: {time.perf_counter() - start:.0f} s", flush=True)
            table(columns, args.queries)  # so far: a run stopped later keeps it
    return 0


def table(columns: dict[int, dict[str, str]], queries: int) -> None:
    """Print the figures, a column per size."""
    rows = next(iter(columns.values()))
    width = max(len(name) for name in rows) + 2
    print(f"\n{queries} queries of {K} neighbours, {DIM}-d, one exemplar per identity")
    print(f"{'identities':{width}s}" + "".join(f"{count:>18,}" for count in columns))
    for name in rows:
        print(f"{name:{width}s}" + "".join(f"{figures[name]:>18s}"
                                           for figures in columns.values()), flush=True)


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    raise SystemExit(main())
