"""Several real ``facestream run`` processes on one real PostgreSQL gallery and one real
mosquitto: the same people get the same IDs on every node, two nodes seeing a new person at once
make one ID, each node has its retained status and the person states are the gallery's (one
topic per person, whichever node speaks), a rename on one node reaches another's events and
states, a forget on one leaves nothing in the database, on the broker or on any node, two IDs of
one person made through two stores are merged with ``identity.merged``, and a node killed while
another changes the gallery is marked offline by its last will and catches up when it starts
again."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmarks.synthetic import PERSONS, GroundTruth, build, make_sprite
from stream.storage import open_store, recorded_embedder
from tests.fixtures import free_port
from tests.fixtures.mosquitto import Broker, Subscriber, on_topic
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


def on_screen(client: EventClient, people: set[str], timeout_s: float = 30.0) -> str:
    """One of ``people`` on the client's camera now (their latest event is not their leaving),
    waiting for one: their next event comes while they stay, or as they leave."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        latest = {event["person"]: event["type"] for event in client.events
                  if event["type"].startswith("person.") and event.get("person") in people}
        present = sorted(person for person, kind in latest.items() if kind != "person.left")
        if present:
            return str(present[0])
        time.sleep(0.05)
    raise AssertionError(f"none of {sorted(people)} on screen within {timeout_s} s")


def merges(clients: list[EventClient]) -> list[tuple[str, str]]:
    """The ``identity.merged`` events the clients got: (kept, gone)."""
    return [(event["person"], event["merged"]) for client in clients
            for event in client.of_type("identity.merged")]


def photo(person: str) -> str:
    """A photo of ``person`` of the sample set, base64 JPEG."""
    out = io.BytesIO()
    make_sprite(PERSONS[person][0]).image.convert("RGB").save(out, "JPEG")
    return base64.b64encode(out.getvalue()).decode()


def make_twins(url: str) -> tuple[int, int]:
    """One made-up person created twice, through two stores of their own (two nodes that could
    not see each other's writes): the two identities' numbers."""
    name, version, dim = recorded_embedder(url)
    face = np.random.default_rng(12).normal(size=dim).astype(np.float32)
    made = []
    for noise in (0.0, 0.01):
        store = open_store(url, embedder=name, version=version, dim=dim)
        vector = face + noise * np.ones(dim, np.float32)
        made.append(store.create_identity())
        store.add_exemplar(made[-1], vector / np.linalg.norm(vector), quality=1.0, source="")
        store.close()
    return made[0], made[1]


@dataclass(frozen=True)
class Site:
    """What the nodes share: the gallery's server and URL, the broker (and a subscriber to
    all of the product's topics there, from before the first node), a folder."""

    postgres: Postgres
    url: str
    broker: Broker
    watch: Subscriber
    folder: Path

    def node(self, name: str, camera: str, video: Path, *options: str) -> Service:
        """``facestream run`` as node ``name``, its camera ``camera`` playing ``video``, on the
        gallery, publishing to the broker (snapshots retained: a forget must clear them)."""
        config = self.folder / f"{name}.yaml"
        config.write_text(json.dumps({  # YAML holds JSON
            "cameras": [{"name": camera, "url": str(video)}],
            "mqtt": {"url": self.broker.url, "snapshots": True, "snapshot_retain": True}}))
        return Service([str(config), *options, "--gallery", self.url, "--node", name],
                       free_port())


@pytest.fixture
def site(postgres: Postgres, pg_url: str, mosquitto: Broker, tmp_path: Path) -> Iterator[Site]:
    with Subscriber(mosquitto, "facestream/#") as watch:
        yield Site(postgres, pg_url, mosquitto, watch, tmp_path)


def held_of(broker: Subscriber, person: str) -> list[str]:
    """The topics of ``person`` the broker keeps: their state and their snapshots."""
    return sorted(topic for topic in broker.retained()
                  if topic.endswith((f"/persons/{person}", f"/{person}/snapshot")))


def test_nodes_on_one_gallery_agree_on_who_is_who(
        demo_video: tuple[Path, GroundTruth], videos: Path, site: Site) -> None:
    video, truth = demo_video
    postgres, pg_url = site.postgres, site.url
    later, later_truth = build("two-people", videos)  # p03 and p12 of the demo, in other shots
    broker = site.watch
    # Both nodes start together on the same video: they see each new person at the same time.
    nodes: list[Service] = []
    third: Service | None = None
    try:
        for name, camera in (("a", "door"), ("b", "hall")):
            nodes.append(site.node(name, camera, video, "--loop"))
        clients = [EventClient(f"ws://127.0.0.1:{node.port}/events?replay=100")
                   for node in nodes]
        seen = [wait_for_people(client, len(truth.persons)) for client in clients]
        assert seen[0] == seen[1] and len(seen[0]) == len(truth.persons)
        identities = postgres.rows(pg_url, "SELECT id FROM identities ORDER BY id")
        assert {f"p{row[0]}" for row in identities} == seen[0], "one person, two IDs"

        # On the broker: each node's status, and one state per person of the gallery, under
        # the gallery's ID whichever node sent it.
        gallery = postgres.rows(pg_url, "SELECT value FROM meta WHERE key = 'gallery_id'")[0][0]
        persons = f"facestream/{gallery}/persons/"
        for person in seen[0]:
            broker.wait_for(on_topic(persons + person, person=person), 10)
        held = broker.retained()
        assert {held[f"facestream/status/{node}"].text for node in "ab"} == {"online"}
        assert {topic for topic in held if "/persons/" in topic} == {
            persons + person for person in seen[0]}
        assert {held[persons + person].json()["node"] for person in seen[0]} <= {"a", "b"}
        status, metrics = nodes[0].get("/metrics")
        assert status == 200
        assert re.search(rb'facestream_gallery_searches_total\{by="index"\} [1-9]', metrics)

        # A third node, started later, knows the people the first two met.
        third = site.node("c", "car", later, "--no-realtime")
        client_c = EventClient(f"ws://127.0.0.1:{third.port}/events?replay=100")
        met = wait_for_people(client_c, len(later_truth.persons))
        assert met <= seen[0]
        assert not [e for e in client_c.of_type("person.appeared") if e["new"]]
        broker.wait_for(on_topic("facestream/status/c", "online"), 10)

        # A rename on node a reaches node b's events: of someone on b's camera, whose next
        # event is then due within the bound (someone off it may be back only next loop).
        person = on_screen(clients[1], seen[0])
        status, _ = call(nodes[0], "PATCH", f"/api/persons/{person}", {"name": "Ada"})
        assert status == 200
        renamed_at = time.monotonic()
        event = clients[1].wait_for(lambda e: e.get("person") == person
                                    and e.get("name") == "Ada", 30)
        assert event["type"].startswith("person.")
        assert time.monotonic() - renamed_at < 15  # the next event of theirs, named
        # ... and their state: once each node's says Ada, no node's says otherwise.
        state = on_topic(persons + person, person=person)
        named = [broker.wait_for(on_topic(persons + person, node=node, name="Ada"), 15)
                 for node in "ab"]
        states = broker.matching(state)
        after = max(states.index(first) for first in named)
        assert {m.json()["name"] for m in states[after:]} == {"Ada"}

        # Forget through node b: nothing of the person is left in the database, on the broker
        # (their state and each camera's snapshot of them), or on either node.
        assert held_of(broker, person) == sorted([persons + person,
                                                  f"facestream/door/{person}/snapshot",
                                                  f"facestream/hall/{person}/snapshot"])
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
        assert [node.get(f"/api/persons/{person}")[0] for node in nodes] == [404, 404]
        deadline = time.monotonic() + 10  # node a clears its camera's snapshot once it knows
        while (remaining := held_of(broker, person)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert remaining == []

        # Two IDs of one person slipped through: a node notices, merges them and says so.
        kept, gone = make_twins(pg_url)
        deadline = time.monotonic() + 30
        while not (merged := merges(clients)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert postgres.rows(pg_url, f"SELECT id FROM identities WHERE id IN ({kept}, {gone})"
                             ) == [(kept,)]
        assert merged == merges(clients) == [(f"p{kept}", f"p{gone}")]  # by one node, once

        # Node b is killed; meanwhile a renames one person, forgets another and enrolls a
        # third; b, started again, knows all of it.
        nodes[1].process.kill()
        nodes[1].process.wait(10)
        broker.wait_for(on_topic("facestream/status/b", "offline"), 10)  # its last will
        grace, forgotten = sorted(seen[0] - {person})
        assert call(nodes[0], "PATCH", f"/api/persons/{grace}", {"name": "Grace"})[0] == 200
        assert call(nodes[0], "POST", f"/api/persons/{forgotten}/forget", {})[0] == 200
        status, created = call(nodes[0], "POST", "/api/persons",
                               {"name": "Mallory", "photos": [photo("p08")]})
        assert status == 201 and isinstance(created, dict)
        nodes[1] = site.node("b", "hall", video, "--loop")
        back = EventClient(f"ws://127.0.0.1:{nodes[1].port}/events?replay=100")
        event = back.wait_for(lambda e: e.get("person") == grace, 30)
        assert (event["type"], event["name"], event["new"]) == ("person.appeared", "Grace", False)
        for node in nodes:
            status, body = node.get(f"/api/persons/{grace}")
            assert status == 200 and json.loads(body)["name"] == "Grace"
            status, body = node.get(f"/api/persons/{created['person']}")
            assert status == 200 and json.loads(body)["name"] == "Mallory"
            assert node.get(f"/api/persons/{forgotten}")[0] == 404
            assert node.get(f"/api/persons/p{gone}")[0] == 404
        assert forgotten not in {e.get("person") for e in back.events}
        assert broker.retained()["facestream/status/b"].text == "online"
    finally:
        for node in [*nodes, *([third] if third else [])]:
            if node.process.poll() is not None:  # it was not meant to stop: say why it did
                print(f"node exited ({node.process.returncode}):", *node.log[-40:], sep="\n")
            node.kill()
