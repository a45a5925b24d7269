"""Several real ``facestream run`` processes on one real PostgreSQL gallery: the same people get
the same IDs on every node, two nodes seeing a new person at once make one ID, a rename on one
node reaches another's events, and a forget on one leaves nothing in the database."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from benchmarks.synthetic import GroundTruth, build
from tests.fixtures import free_port
from tests.fixtures.postgres import Postgres
from tests.integration.live import EventClient, Service

pytestmark = pytest.mark.slow


def call(service: Service, method: str, path: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(service.base + path, method=method,
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


def appeared(client: EventClient) -> set[str]:
    return {event["person"] for event in client.of_type("person.appeared")}


def wait_for_people(client: EventClient, count: int, timeout_s: float = 60.0) -> set[str]:
    deadline = time.monotonic() + timeout_s
    while len(appeared(client)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return appeared(client)


def test_nodes_on_one_gallery_agree_on_who_is_who(
        demo_video: tuple[Path, GroundTruth], videos: Path, postgres: Postgres,
        pg_url: str) -> None:
    video, truth = demo_video
    later, later_truth = build("two-people", videos)  # p03 and p12 of the demo, in other shots
    # Both nodes start together on the same video: they see each new person at the same time.
    nodes = [Service([f"door={video}", "--loop", "--gallery", pg_url, "--node", name],
                     free_port()) for name in ("a", "b")]
    third: Service | None = None
    try:
        clients = [EventClient(f"ws://127.0.0.1:{node.port}/events?replay=100")
                   for node in nodes]
        seen = [wait_for_people(client, len(truth.persons)) for client in clients]
        assert seen[0] == seen[1] and len(seen[0]) == len(truth.persons)
        identities = postgres.rows(pg_url, "SELECT id FROM identities ORDER BY id")
        assert {f"p{row[0]}" for row in identities} == seen[0], "one person, two IDs"
        status, metrics = nodes[0].get("/metrics")
        assert status == 200
        assert re.search(rb'facestream_gallery_searches_total\{by="index"\} [1-9]', metrics)

        # A third node, started later, knows the people the first two met.
        third = Service([f"car={later}", "--no-realtime", "--gallery", pg_url, "--node", "c"],
                        free_port())
        client_c = EventClient(f"ws://127.0.0.1:{third.port}/events?replay=100")
        met = wait_for_people(client_c, len(later_truth.persons))
        assert met <= seen[0]
        assert not [e for e in client_c.of_type("person.appeared") if e["new"]]

        # A rename on node a reaches node b's events.
        person = sorted(seen[0])[0]
        status, _ = call(nodes[0], "PATCH", f"/api/persons/{person}", {"name": "Ada"})
        assert status == 200
        renamed_at = time.monotonic()
        event = clients[1].wait_for(lambda e: e.get("person") == person
                                    and e.get("name") == "Ada", 30)
        assert event["type"].startswith("person.")
        assert time.monotonic() - renamed_at < 15  # the next event of theirs, named

        # Forget through node b: nothing of the person is left in the database, and node a
        # no longer knows them.
        status, _ = call(nodes[1], "POST", f"/api/persons/{person}/forget", {})
        assert status == 200
        number = int(person[1:])
        for table, column in (("identities", "id"), ("exemplars", "identity"),
                              ("appearances", "identity"), ("rejections", "identity"),
                              ("cannot_link", "first"), ("cannot_link", "second")):
            assert postgres.rows(pg_url, f"SELECT count(*) FROM {table}"
                                 f" WHERE {column} = {number}") == [(0,)], table
        assert postgres.rows(pg_url, "SELECT count(*) FROM meta WHERE key = 'erase_pending'"
                             ) == [(0,)]
        deadline = time.monotonic() + 5
        while nodes[0].get(f"/api/persons/{person}")[0] != 404 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert nodes[0].get(f"/api/persons/{person}")[0] == 404
    finally:
        for node in [*nodes, *([third] if third else [])]:
            node.kill()
