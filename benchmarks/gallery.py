"""Gallery at scale: build, start-up, memory and match latency for 1k to 100k identities.

``python -m benchmarks.gallery [--sizes 1000,10000,100000] [--exemplars 4] [--queries 100]
[--face-bytes 0] [--threads N]``

Synthetic dlib-resnet-like data (128-d unit vectors): identity centres scattered around one
common direction (two identities ~0.8 apart), each with ``--exemplars`` exemplars ~0.15 from
its centre (~0.2 from each other). A query track has 5 good faces ~0.25 from a centre, so its
template lies ~0.2 from the nearest exemplar: a known person under the 0.325 threshold. An
unknown face is a track around a fresh centre that is not in the gallery.

For each size the gallery file is built in one transaction through :class:`SQLiteStore`
(``Gallery.create`` commits once per identity: 0.4-0.75 ms each, about a minute for 100k), then a
fresh process opens it with :func:`open_gallery` (so its memory is not the builder's) and times
``search(query, 16)``, a full ``decide`` for known and unknown tracks, and, as the baselines,
brute-force numpy searches over the same exemplar matrix: the norm of every row's difference
(``numpy norm``) and one matrix-vector product (``numpy matmul``, 2 - 2 dot for unit vectors).
It also times the changes made while running: ``create`` of a new identity, ``add_exemplars``
without and with an eviction (the identity full at ``max_exemplars``), and ``forget``. Each
exemplar stores ``--face-bytes`` bytes as its face (real galleries keep a JPEG, ~5-15 KB).
``--threads`` sets FAISS's and OpenBLAS's threads in the measuring process. Prints one table:
latencies as p50/p95 in ms.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import ParamSpec, TypeVar

import faiss
import numpy as np

from stream.identity.gallery import Gallery
from stream.identity.matcher import MatchSettings, Verdict, decide
from stream.identity.track import Observation, Track
from stream.storage import open_gallery
from stream.storage.sqlite import SQLiteStore
from stream.types import FloatArray

DIM = 128
EMBEDDER, VERSION = "dlib-resnet", "synthetic"
SPREAD = 0.7  # centres: common direction + this much noise, ~0.8 apart
EXEMPLAR_RADIUS = 0.15  # exemplars around their centre
FACE_RADIUS = 0.25  # one face of a query track around its centre
TRACK_FACES = 5
K = 16
CHANGES = 30  # samples of each change (create, add, evict)
SETTINGS = MatchSettings(threshold=0.325)

T = TypeVar("T")
P = ParamSpec("P")


def unit(vectors: FloatArray) -> FloatArray:
    """Rows scaled to unit length."""
    scaled: FloatArray = (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(
        np.float32)
    return scaled


def scatter(rng: np.random.Generator, centres: FloatArray, radius: float) -> FloatArray:
    """One unit vector about ``radius`` from each of ``centres``."""
    noise = rng.standard_normal(centres.shape, np.float32) * np.float32(radius / np.sqrt(DIM))
    return unit(centres + noise)


def identity_centres(count: int, seed: int, *, strangers: bool = False) -> FloatArray:
    """The centres of ``count`` identities of the gallery, or of ``strangers`` (people not in
    it, around the same common direction); the same for the same seed."""
    common = unit(np.random.default_rng([seed, 0]).standard_normal((1, DIM), np.float32))
    rng = np.random.default_rng([seed, 3 if strangers else 1])
    return scatter(rng, np.repeat(common, count, axis=0), SPREAD)


def build(path: Path, count: int, exemplars: int, face_bytes: int, seed: int) -> float:
    """Write a gallery of ``count`` identities to ``path`` in one transaction; the seconds."""
    centres = identity_centres(count, seed)
    vectors = scatter(np.random.default_rng([seed, 2]), np.repeat(centres, exemplars, axis=0),
                      EXEMPLAR_RADIUS)
    face = bytes(face_bytes) if face_bytes else None
    start = time.perf_counter()
    store = SQLiteStore(path, embedder=EMBEDDER, version=VERSION, dim=DIM)
    with store.transaction():
        for i in range(count):
            identity = store.create_identity()
            for vector in vectors[i * exemplars:(i + 1) * exemplars]:
                store.add_exemplar(identity, vector, quality=1.0, source="synthetic", face=face)
    store.close()
    return time.perf_counter() - start


def file_mib(path: Path) -> float:
    """The size of the gallery file with its WAL, MiB."""
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


def memory_mib() -> tuple[float, float]:
    """This process's resident memory now and at its peak (VmRSS, VmHWM), MiB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                  if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def track_of(rng: np.random.Generator, centre: FloatArray) -> Track:
    """A track of good faces around ``centre``."""
    faces = scatter(rng, np.repeat(centre[None], TRACK_FACES, axis=0), FACE_RADIUS)
    return Track(1, [Observation(frame, frame * 0.2, np.zeros(4, np.float32), 1.0, face, 1.0,
                                 True) for frame, face in enumerate(faces)])


def timed(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[float, T]:
    """Milliseconds taken by ``call(*args, **kwargs)``, and its result."""
    start = time.perf_counter()
    result = call(*args, **kwargs)
    return (time.perf_counter() - start) * 1000, result


def p50_p95(samples: Sequence[float]) -> str:
    """``p50 / p95`` of millisecond samples."""
    p50, p95 = np.percentile(samples, [50, 95])
    return f"{p50:.3g} / {p95:.3g}"


def measure(path: Path, count: int, queries: int, seed: int) -> dict[str, str]:
    """Open the gallery at ``path`` (``count`` identities built by :func:`build`) and time it;
    the figures by table row. Run in a fresh process: its memory is then the opened gallery's."""
    before, _ = memory_mib()
    open_ms, gallery = timed(open_gallery, path, dim=DIM, embedder=EMBEDDER, version=VERSION)
    after, peak = memory_mib()
    check_ms, _ = timed(sqlite3.connect(path).execute, "PRAGMA quick_check")
    read_ms, rows = timed(gallery.store.exemplars)
    matrix = np.stack([row.vector for row in rows])
    owner = np.asarray([row.identity for row in rows])
    del rows
    identities = gallery.store.identity_ids()  # in creation order: centre i is identities[i]
    centres = identity_centres(count, seed)
    rng = np.random.default_rng([seed, 4])
    truth = rng.integers(0, count, queries)
    known = [track_of(rng, centres[i]) for i in truth]
    others = identity_centres(queries + CHANGES, seed, strangers=True)
    strangers = [track_of(rng, centre) for centre in others[:queries]]
    templates = [unit(track.embeddings(good_only=True).mean(axis=0)[None]) for track in known]

    def brute_force(query: FloatArray) -> int:
        distances = np.linalg.norm(matrix - query, axis=1)
        nearest = np.argpartition(distances, K)[:K]
        return int(owner[nearest[np.argmin(distances[nearest])]])

    def by_product(query: FloatArray) -> int:  # unit vectors: squared distance 2 - 2 dot
        similarity = matrix @ query
        nearest = np.argpartition(-similarity, K)[:K]
        return int(owner[nearest[np.argmax(similarity[nearest])]])

    brute_force(templates[0][0])  # warm-up
    by_product(templates[0][0])
    gallery.search(templates[0], K)
    times: dict[str, list[float]] = {"search": [], "decide known": [], "decide unknown": [],
                                     "numpy norm": [], "numpy matmul": []}
    right = dict.fromkeys(times, 0)
    for i, track, stranger, query in zip(truth, known, strangers, templates, strict=True):
        ms, found = timed(gallery.search, query, K)
        times["search"].append(ms)
        right["search"] += int(found.identities[0, 0]) == identities[i]
        ms, decision = timed(decide, gallery, track, SETTINGS, final=False, exclude=set())
        times["decide known"].append(ms)
        right["decide known"] += (decision.verdict is Verdict.KNOWN
                                  and decision.identity == identities[i])
        ms, decision = timed(decide, gallery, stranger, SETTINGS, final=False, exclude=set())
        times["decide unknown"].append(ms)
        right["decide unknown"] += decision.verdict is Verdict.NEW
        for name, search in (("numpy norm", brute_force), ("numpy matmul", by_product)):
            ms, nearest = timed(search, query[0])
            times[name].append(ms)
            right[name] += nearest == identities[i]

    figures = {
        "threads (FAISS, BLAS)": str(faiss.omp_get_max_threads()),
        "open_gallery s": f"{open_ms / 1000:.2f}",
        "  quick_check s": f"{check_ms / 1000:.2f}",
        "  exemplars() s": f"{read_ms / 1000:.2f}",
        "RSS after open MiB": f"{after:.0f}",
        "  open added MiB": f"{after - before:.0f}",
        "  peak MiB": f"{peak:.0f}",
    }
    figures |= {f"{name} ms": p50_p95(samples) for name, samples in times.items()}
    figures |= {f"{name} right": f"{right[name]}/{queries}" for name in times}
    return figures | changes(gallery, centres, others[queries:], identities, rng)


def changes(gallery: Gallery, centres: FloatArray, strangers: FloatArray, identities: list[int],
            rng: np.random.Generator) -> dict[str, str]:
    """Latencies of the changes a run makes: a new identity (around a stranger's centre), a new
    exemplar, one that evicts another (the identity full), and forgetting an identity."""
    create = [timed(gallery.create, scatter(rng, np.repeat(c[None], 4, axis=0),
                                            EXEMPLAR_RADIUS))[0] for c in strangers]
    add = [timed(gallery.add_exemplars, identities[j],
                 scatter(rng, centres[j][None], EXEMPLAR_RADIUS))[0]
           for j in range(1, len(strangers) + 1)]
    full, centre = identities[0], centres[0][None]
    while gallery.exemplar_count(full) < gallery.max_exemplars:
        gallery.add_exemplars(full, scatter(rng, centre, EXEMPLAR_RADIUS))
    # Farther from the centre than the others, so usually more useful: it makes way.
    evict = [timed(gallery.add_exemplars, full, scatter(rng, centre, 0.3))
             for _ in range(len(strangers))]
    forget = [timed(gallery.forget, identity)[0] for identity in identities[-len(strangers):]]
    return {"create ms": p50_p95(create), "add_exemplars ms": p50_p95(add),
            "  with eviction ms": p50_p95([ms for ms, _ in evict]),
            "  evictions": f"{sum(added for _, added in evict)}/{len(evict)}",
            "forget ms": p50_p95(forget)}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; prints the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gallery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="identity counts, comma-separated (default: 1000,10000,100000)")
    parser.add_argument("--exemplars", type=int, default=4, help="exemplars per identity")
    parser.add_argument("--queries", type=int, default=100, help="timed queries per size")
    parser.add_argument("--face-bytes", type=int, default=0,
                        help="bytes of face kept with each exemplar (default: 0, none)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of FAISS (OpenMP) and numpy (OpenBLAS) in the measuring "
                        "process (default: theirs, one per core)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.threads:  # read by the libraries when the measuring process imports them
        os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)

    columns: dict[int, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for count in sizes:
            start = time.perf_counter()
            path = Path(folder) / f"gallery-{count}.db"
            built = build(path, count, args.exemplars, args.face_bytes, args.seed)
            column = {"exemplars": f"{count * args.exemplars:,}",
                      "build s (1 transaction)": f"{built:.2f}",
                      "file MiB": f"{file_mib(path):.1f}"}
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                column |= pool.submit(measure, path, count, args.queries, args.seed).result()
            columns[count] = column
            print(f"{count:,} identities: {time.perf_counter() - start:.0f} s", flush=True)

    print(f"\n{args.exemplars} exemplars per identity, {args.face_bytes} face bytes each, "
          f"{args.queries} queries, k={K}; ms as p50 / p95")
    names = list(columns[sizes[0]])
    width = max(map(len, names))
    print(f"{'identities':{width}s}" + "".join(f"{count:>18,}" for count in sizes))
    for name in names:
        print(f"{name:{width}s}" + "".join(f"{columns[count][name]:>18s}" for count in sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
