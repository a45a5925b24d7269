"""Two real nodes on one PostgreSQL gallery: a burst of new people seen by both at once, and how
fast a change made on one node reaches the other's events.

``python -m benchmarks.nodes [--scenario crowd] [--renames 20] [--sample-fps 5]``

A PostgreSQL with pgvector is started from PyPI's ``pgserver`` (as in
:mod:`benchmarks.gallery_scale`). The scenario's video is played live (``--loop``) by:

- one ``facestream run`` on a gallery of its own (the reference: the IDs one node gives the
  scenario's people in one pass, splits included);
- two ``facestream run`` processes started together on one new gallery, both on the same video:
  each new person is met by both nodes at once. After one pass: the IDs in the gallery and
  how many each node created, conflicts avoided (a node about to create someone the other had
  just created joins them under the creation lock: the log's "just created elsewhere"), pairs
  merged by the partition check (``identity.merged``), and duplicates left (IDs beyond the
  reference's);
- then ``--renames`` times: a person who just appeared on B is renamed through node A's REST
  API, and the delay is from just before the request to the ``time`` of node B's first event
  that carries the new name (B takes in the change, then names the person in their next event:
  events come at most every ``events.update_interval_s``, set to ``--update-interval``, and only
  when the face moved or got better); beside it, the gaps between B's events of that person,
  and how often B's first event made after A answered already had the name.

Also, in this process, store to store: a rename through one store and the moment another
store's gallery has it (its ``refresh`` after the NOTIFY), without the engines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from benchmarks.accuracy import bench_dir
from benchmarks.gallery import p50_p95
from benchmarks.gallery_scale import server
from benchmarks.synthetic import build
from stream.identity.gallery import Gallery
from stream.storage.postgres import PostgresStore
from tests.fixtures import free_port
from tests.integration.live import EventClient, Service

JOINED = "just created elsewhere"  # the log line of a creation that joined another node's


def database(url: str, name: str) -> str:
    """The URL of the new database ``name`` on the server at ``url``."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}".encode())
    return url.replace("/postgres?", f"/{name}?")


def start(names: Sequence[str], url: str, config: Path) -> list[tuple[Service, EventClient]]:
    """Nodes ``names`` of ``config`` on the gallery at ``url``, started together; each with
    its events."""
    def node(name: str) -> Service:
        return Service([str(config), "--gallery", url, "--node", name], free_port())

    with ThreadPoolExecutor(len(names)) as pool:
        services = list(pool.map(node, names))
    return [(service, EventClient(f"ws://127.0.0.1:{service.port}/events?replay=1000"))
            for service in services]


def one_pass(nodes: list[tuple[Service, EventClient]], duration_s: float, url: str
             ) -> tuple[int, dict[str, str]]:
    """The IDs in the gallery after the first pass of the video, and the other figures."""
    time.sleep(duration_s + 2.0)
    with psycopg.connect(url) as db:
        created = sorted(int(row[0]) for row in db.execute(
            "SELECT count(*) FROM facestream.identities GROUP BY writer").fetchall())
    return sum(created), {
        "IDs created by each node": " + ".join(map(str, created)),
        "conflicts avoided (joins under the lock)": str(sum(
            sum(JOINED in line for line in service.log) for service, _ in nodes)),
        "merged by the partition check": str(sum(
            len(client.of_type("identity.merged")) for _, client in nodes))}


def rename(node: Service, person: str, name: str) -> None:
    """Rename ``person`` through ``node``'s REST API."""
    request = urllib.request.Request(f"{node.base}/api/persons/{person}", method="PATCH",
                                     data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def moment(event: dict[str, Any]) -> float:
    """When ``event`` was made (its ISO ``time``), in seconds since the epoch."""
    return datetime.fromisoformat(event["time"]).timestamp()


def rename_delays(nodes: list[tuple[Service, EventClient]], renames: int
                  ) -> tuple[list[float], list[float], int]:
    """Delays (ms) from a rename through A's REST to B's first event with the name, the gaps
    (ms) between B's events of the renamed people, and how many of B's first events of them
    made after the rename's answer carried the name."""
    (a, _), (_, events_b) = nodes
    delays: list[float] = []
    gaps: list[float] = []
    named_next = 0
    for i in range(renames):
        delay, between, next_named = rename_delay(a, events_b, f"renamed-{i}")
        delays.append(delay)
        gaps += between
        named_next += next_named
    return delays, gaps, named_next


def rename_delay(a: Service, events_b: EventClient, name: str
                 ) -> tuple[float, list[float], bool]:
    """One rename to ``name`` of someone B sees now: its delay and the gaps between B's events
    of them meanwhile (ms), and whether B's next event of them had the name."""
    after = len(events_b.events)
    # Someone who just came: they stay for some seconds, and so have more events.
    person = events_b.wait_for(lambda event: event["type"] == "person.appeared", 30,
                               after)["person"]
    before = time.time()
    rename(a, person, name)
    answered = time.time()
    named = events_b.wait_for(
        lambda event: (event.get("person"), event.get("name")) == (person, name), 30, after)
    following = events_b.wait_for(
        lambda event: event.get("person") == person and moment(event) > answered, 30, after)
    theirs = [event for event in events_b.events[after:] if event.get("person") == person]
    times = [moment(event) for event in theirs if event["type"] != "person.left"]
    return ((moment(named) - before) * 1000,
            [(later - earlier) * 1000 for earlier, later in itertools.pairwise(times)],
            following.get("name") == name)


def store_to_store(url: str, samples: int) -> list[float]:
    """Delays (ms) from a rename committed through one store to another store's gallery
    having it."""
    ours = PostgresStore(url, embedder="bench", version="1", dim=8)
    theirs = Gallery(PostgresStore(url, embedder="bench", version="1", dim=8))
    person = ours.create_identity()
    ours.add_exemplar(person, np.eye(8, dtype=np.float32)[0], quality=1.0, source="")
    while person not in theirs:
        theirs.refresh()
    delays = []
    for i in range(samples):
        before = time.perf_counter()
        ours.rename(person, f"n{i}")
        while person not in theirs.refresh():
            time.sleep(0.0005)
        delays.append((time.perf_counter() - before) * 1000)
    ours.close()
    theirs.store.close()
    return delays


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; prints the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nodes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="crowd", help="the burst (default crowd)")
    parser.add_argument("--renames", type=int, default=20)
    parser.add_argument("--sample-fps", type=float, default=5.0)
    parser.add_argument("--update-interval", type=float, default=0.2,
                        help="events.update_interval_s of the nodes (default 0.2)")
    args = parser.parse_args(argv)
    video, truth = build(args.scenario, bench_dir())
    print(f"{args.scenario}: {len(truth.persons)} people, {truth.duration_s:g} s, "
          f"{args.sample_fps:g} fps analysed per node", flush=True)
    with server() as url, tempfile.TemporaryDirectory() as folder:
        direct = store_to_store(database(url, "direct"), 50)
        print(f"rename through one store to another's gallery (ms, p50 / p95, 50): "
              f"{p50_p95(direct)}", flush=True)
        config = Path(folder) / "node.yaml"
        config.write_text(json.dumps({  # YAML
            "cameras": [{"name": "door", "url": str(video), "loop": True,
                         "sample_fps": args.sample_fps}],
            "events": {"update_interval_s": args.update_interval}}))
        alone_url = database(url, "alone")
        alone = start(["solo"], alone_url, config)
        try:
            reference, _ = one_pass(alone, truth.duration_s, alone_url)
        finally:
            alone[0][0].kill()
        print(f"one node alone: {reference} IDs", flush=True)
        shared_url = database(url, "shared")
        nodes = start(["a", "b"], shared_url, config)
        try:
            ids, figures = one_pass(nodes, truth.duration_s, shared_url)
            print(f"two nodes: {ids} IDs")
            for name, value in figures.items():
                print(f"two nodes, {name}: {value}")
            print(f"two nodes, duplicates left: {max(0, ids - reference)}", flush=True)
            delays, gaps, named_next = rename_delays(nodes, args.renames)
        finally:
            for service, _ in nodes:
                service.kill()
    print(f"rename on A to B's first event with the name (ms, p50 / p95, {len(delays)}): "
          f"{p50_p95(delays)}; B's events of a person come every {p50_p95(gaps)} ms; "
          f"B's next event after A's answer named them in {named_next} of {len(delays)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
