"""The gallery's REST API on the real service (``facestream run`` on the demo video, looped, with
a gallery file and a token), with a real WebSocket client: each change is answered with its
``identity.*`` event, which also reaches the WebSocket, and the model thread reconciles what it
tracks.

The tests share one service and run in file order: each finds the people's current IDs from
the events, and the last one stops the service and checks the gallery file.
"""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute

from benchmarks.synthetic import PERSONS, GroundTruth, make_sprite
from stream.config import EngineSettings, EventSettings, ServerSettings
from stream.identity.gallery import Gallery
from stream.identity.track import box_iou
from stream.pipeline.live import Engine, Preview
from stream.service.bus import EventBus
from stream.service.http import Health, build_app
from stream.service.http.cameras import CameraInfo, render_preview
from stream.service.http.persons import Person, PersonSummary
from stream.service.metrics import Metrics
from stream.storage import open_gallery
from stream.vision.executor import VisionWorker
from tests.fixtures import free_port
from tests.integration.live import Event, EventClient, Service

pytestmark = pytest.mark.slow
TOKEN = "rest-s3cret"
HEALTHY = Health(status="ok", uptime_s=1.0, cameras={}, identities=0, present=0)
CAMERA = "cam1"  # the name `facestream run VIDEO` gives its one camera
P03, P17, P12 = "p03", "p17", "p12"  # the demo's people: p17 is on screen all the time


@dataclass
class Live:
    service: Service
    client: EventClient
    truth: GroundTruth
    gallery: Path

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
             data: bytes | None = None) -> tuple[int, Any]:
        """One request to the service; the status and the JSON answer (bytes if not JSON)."""
        if body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.service.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, kind, content = (response.status, response.headers.get_content_type(),
                                         response.read())
        except urllib.error.HTTPError as error:
            status, kind, content = error.code, error.headers.get_content_type(), error.read()
        return int(status), json.loads(content) if kind == "application/json" else content

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        assert status == 200, (method, path, status, answer)
        return answer

    def people(self) -> dict[str, dict[str, Any]]:
        return {person["id"]: person for person in self.ok("GET", "/api/persons")}

    def actor(self, event: Event) -> str | None:
        """Who of the video the event's face is: the true face its box overlaps most."""
        t = event["frame_time"] % (len(self.truth.frames) / self.truth.fps)
        frame = min(self.truth.frames, key=lambda candidate: abs(candidate.t - t))
        box = tuple(event["box"])
        overlaps = [(box_iou(face.box, box), face.person) for face in frame.faces]
        overlap, person = max(overlaps, default=(0.0, None))
        return person if overlap > 0.3 else None

    def faces(self, after: int = 0) -> list[tuple[str | None, Event]]:
        """The face events (appeared, updated) from index ``after``, with who each face is."""
        return [(self.actor(event), event) for event in self.client.events[after:]
                if event["type"] in ("person.appeared", "person.updated")]

    def current(self, who: str) -> str:
        """The ID the service last gave ``who``'s face."""
        person: str = [event for actor, event in self.faces() if actor == who][-1]["person"]
        return person

    def wait_for_face(self, who: str, after: int, timeout_s: float = 30.0) -> Event:
        """The first ``person.appeared`` of ``who``'s face from index ``after``."""
        return self.client.wait_for(lambda e: e["type"] == "person.appeared"
                                    and self.actor(e) == who, timeout_s, after)

    def present(self, who: str) -> str | None:
        """The ID of ``who`` when their appearance on the camera is open now."""
        faces = [event for actor, event in self.faces() if actor == who]
        if not faces:
            return None
        person: str = faces[-1]["person"]
        later = self.client.events[self.client.events.index(faces[-1]):]
        return None if [e for e in later if e["type"] == "person.left"
                        and e["person"] == person] else person

    def heard(self, answer: Event) -> int:
        """Where the event ``answer`` (a change's response) is among the WebSocket's events."""
        self.client.wait_for(lambda e: e == answer, 10)
        return self.client.events.index(answer)

    def ids_so_far(self) -> set[int]:
        return {Gallery.number(event[key]) for event in self.client.events
                for key in ("person", "merged", "new_person") if key in event} | {
                    Gallery.number(person) for person in self.people()}

    def assert_retired(self, person: str, announcement: Event) -> None:
        """``person``'s appearance ended before the event that removed them was announced,
        and no event names them after it."""
        at = self.heard(announcement)
        before = [e["type"] for e in self.client.events[:at] if mentions(e, person)]
        assert before and before[-1] == "person.left", before
        assert not [e for e in self.client.events[at + 1:] if mentions(e, person)]


def mentions(event: Event, person: str) -> bool:
    return person in (event.get("person"), event.get("merged"), event.get("new_person"))


def served(app: Starlette) -> set[tuple[str, str]]:
    """The paths and methods an app serves (a WebSocket route as GET, the upgrade)."""
    routes: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            routes.add((route.path, "GET"))
        elif isinstance(route, Mount):
            continue  # the dashboard's static files, not part of the API
        else:
            assert isinstance(route, Route) and route.methods is not None
            routes |= {(route.path, method) for method in route.methods - {"HEAD"}}
    return routes


@pytest.fixture(scope="module")
def live(demo_video: tuple[Path, GroundTruth], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Live]:
    video, truth = demo_video
    gallery = tmp_path_factory.mktemp("rest") / "gallery.db"
    service = Service([str(video), "--loop", "--gallery", str(gallery), "--token", TOKEN],
                      free_port())
    try:
        client = EventClient(f"ws://127.0.0.1:{service.port}/events?replay=100&token={TOKEN}")
        state = Live(service, client, truth, gallery)
        for who in (P03, P17, P12):
            state.wait_for_face(who, 0, 40)
        yield state
        client.close()
    finally:
        service.kill()


def test_the_openapi_document_describes_every_route_and_no_other(live: Live) -> None:
    document = live.ok("GET", "/api/openapi.json")
    assert document["openapi"].startswith("3.1")
    pytest.importorskip("openapi_spec_validator").validate(document)
    documented = {(path, method.upper()) for path, item in document["paths"].items()
                  for method in item}
    # The same app as the service's, in this process: its routes, as Starlette serves them.
    worker = VisionWorker(embedder="dlib-resnet", device=torch.device("cpu"))
    embedder = worker.embedder
    engine = Engine(worker, [], threading.Event(),
                    gallery=open_gallery(None, dim=embedder.dim, embedder=embedder.name,
                                         version=embedder.version),
                    engine=EngineSettings(), events=EventSettings(), emit=lambda _: None,
                    metrics=Metrics())

    def app(engine: Engine | None) -> Starlette:
        return build_app(EventBus(), ServerSettings(), Metrics(), replay_limit=10,
                         health=lambda: HEALTHY, engine=engine)[0]

    assert served(app(engine)) == documented
    assert served(app(None)) == {(path, method) for path, method in documented
                                 if not path.startswith(("/api/persons", "/api/cameras",
                                                         "/api/recognize"))}
    # Every schema it refers to is in it.
    text = json.dumps(document)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs and refs <= set(document["components"]["schemas"])
    person = document["paths"]["/api/persons/{id}"]
    assert person["patch"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Rename"}
    assert set(person["patch"]["responses"]) >= {"200", "400", "401", "404"}


def test_refusals_are_json_with_the_right_status(live: Live) -> None:
    someone = live.current(P03)
    for token in (None, "wrong"):
        status, answer = live.call("GET", "/api/persons", token=token)
        assert status == 401 and "token" in answer["error"]
        status, answer = live.call("PATCH", f"/api/persons/{someone}", {"name": "Eve"},
                                   token=token)
        assert status == 401
    status, _ = live.call("GET", f"/api/persons?token={TOKEN}", token=None)
    assert status == 200
    unknown = f"p{max(live.ids_so_far()) + 100}"
    cases: list[tuple[str, str, Any, bytes | None, int, str]] = [
        ("GET", f"/api/persons/{unknown}", None, None, 404, unknown),
        ("GET", "/api/persons/nobody", None, None, 404, "not a person ID"),
        ("GET", f"/api/persons/{unknown}/thumbnail.jpg", None, None, 404, unknown),
        ("PATCH", f"/api/persons/{unknown}", {"name": "Eve"}, None, 404, unknown),
        ("DELETE", f"/api/persons/{unknown}", None, None, 404, unknown),
        ("POST", f"/api/persons/{unknown}/forget", None, None, 404, unknown),
        ("POST", f"/api/persons/{someone}/merge", {"other": unknown}, None, 404, unknown),
        ("POST", f"/api/persons/{someone}/merge", {"other": someone}, None, 409, "itself"),
        ("POST", f"/api/persons/{someone}/merge", {"other": live.current(P17)}, None, 409,
         "on screen together"),  # p17 is beside p03 all the time
        ("POST", f"/api/persons/{someone}/merge", None, b"{not json", 400, "JSON"),
        ("POST", f"/api/persons/{someone}/merge", [someone], None, 400, "JSON object"),
        ("POST", f"/api/persons/{someone}/merge", {"other": "x1"}, None, 400, "x1"),
        ("PATCH", f"/api/persons/{someone}", {"name": 7}, None, 400, "name"),
        ("PATCH", f"/api/persons/{someone}", {}, None, 400, "name"),
        ("PATCH", f"/api/persons/{someone}", {"name": "  "}, None, 400, "1 to 200"),
        ("POST", f"/api/persons/{someone}/split", {"exemplars": ["a"]}, None, 400, "exemplars"),
        ("POST", f"/api/persons/{someone}/split", {"exemplars": [10**9]}, None, 400,
         "not of"),
        ("POST", f"/api/persons/{someone}/reject", {"camera": "door"}, None, 404, "door"),
        ("POST", f"/api/persons/{someone}/reject", {}, None, 400, "camera"),
    ]
    mark = len(live.client.events)
    for method, path, body, data, expected, words in cases:
        status, answer = live.call(method, path, body, data=data)
        assert (status, type(answer)) == (expected, dict), (method, path, body, answer)
        assert words in answer["error"], (method, path, answer)
    status, _ = live.call("PUT", f"/api/persons/{someone}", {"name": "Eve"})
    assert status == 405
    assert someone in live.people() and live.people()[someone]["name"] is None
    assert not [e for e in live.client.events[mark:] if e["type"].startswith("identity.")]


def test_list_show_thumbnail_and_rename(live: Live) -> None:
    people = live.people()
    ids = {live.current(who) for who in (P03, P17, P12)}
    assert len(ids) == 3 and ids <= set(people)
    ada = live.current(P03)
    shown = live.ok("GET", f"/api/persons/{ada}")
    assert shown["id"] == ada and len(shown["exemplar_list"]) == shown["exemplars"] >= 1
    # The documented response types are what the API sends.
    Person.model_validate(shown)
    for summary in people.values():
        PersonSummary.model_validate(summary)
    thumbnail = live.ok("GET", f"/api/persons/{ada}/thumbnail.jpg")
    assert isinstance(thumbnail, bytes) and thumbnail[:3] == b"\xff\xd8\xff"

    mark = len(live.client.events)
    renamed = live.ok("PATCH", f"/api/persons/{ada}", {"name": " Ada "})
    assert renamed == {**renamed, "type": "identity.renamed", "person": ada, "name": "Ada"}
    heard = live.client.wait_for(lambda e: e["type"] == "identity.renamed", 10, mark)
    assert heard == renamed  # the response is the event as published
    assert live.people()[ada]["name"] == "Ada"
    assert "warning" not in renamed
    cleared = live.ok("PATCH", f"/api/persons/{ada}", {"name": None})
    assert cleared["name"] is None and live.people()[ada]["name"] is None
    live.ok("PATCH", f"/api/persons/{ada}", {"name": "Ada"})
    # A second Ada: made, with a warning for the one who renamed (not in the event)
    other = live.current(P17)
    mark = len(live.client.events)
    twin = live.ok("PATCH", f"/api/persons/{other}", {"name": "Ada"})
    assert twin["warning"] == f"{ada} is also named Ada; if they are one person, merge them"
    heard = live.client.wait_for(
        lambda e: e["type"] == "identity.renamed" and e["person"] == other, 10, mark)
    assert heard == {key: value for key, value in twin.items() if key != "warning"}
    assert live.people()[other]["name"] == "Ada"
    live.ok("PATCH", f"/api/persons/{other}", {"name": None})


def test_a_rename_reaches_the_persons_next_event_and_the_log(live: Live) -> None:
    ada = live.current(P03)  # she leaves and comes back every loop of the video
    mark = len(live.client.events)
    live.ok("PATCH", f"/api/persons/{ada}", {"name": "Ada King"})
    at = live.heard(live.client.wait_for(lambda e: e["type"] == "identity.renamed", 10, mark))
    before = [e for e in live.client.events[:at]
              if e["type"].startswith("person.") and e["person"] == ada][-1]
    after = live.client.wait_for(
        lambda e: e["type"].startswith("person.") and e["person"] == ada, 30, at + 1)
    assert after["name"] == "Ada King"
    if before["type"] != "person.left":  # the same appearance, now under her new name
        assert after["appearance"] == before["appearance"]
    appeared = live.client.wait_for(
        lambda e: e["type"] == "person.appeared" and e["person"] == ada, 30, at + 1)
    assert appeared["name"] == "Ada King" and appeared["new"] is False
    assert appeared["distance"] is not None and 0 < appeared["confidence"] <= 1
    live.service.wait_for_log(f"{ada} (Ada King) appeared on {CAMERA}", 10)
    live.ok("PATCH", f"/api/persons/{ada}", {"name": "Ada"})


def test_enroll_from_photos_over_rest(live: Live, tmp_path: Path) -> None:
    photo = tmp_path / "grace.jpg"
    make_sprite(PERSONS["p08"][0]).image.convert("RGB").save(photo)
    encoded = base64.b64encode(photo.read_bytes()).decode()
    mark = len(live.client.events)
    status, created = live.call("POST", "/api/persons", {"name": "Grace", "photos": [encoded]})
    assert status == 201, created
    assert created == {**created, "type": "identity.created", "name": "Grace", "exemplars": 1}
    assert live.client.wait_for(lambda e: e["type"] == "identity.created", 10, mark) == created
    assert live.people()[created["person"]]["name"] == "Grace"
    status, again = live.call("POST", "/api/persons", {"name": "Grace", "photos": [encoded]})
    assert status == 400 and f"this is already {created['person']} (Grace)" in again["error"]
    # the API's advice, not the command line's
    assert again["error"].endswith(f'PATCH /api/persons/{created["person"]} to name them '
                                   'instead, or send "force": true to add a new person anyway')
    assert "--" not in again["error"]
    not_image = base64.b64encode(b"just text").decode()
    status, refused = live.call("POST", "/api/persons", {"photos": [encoded, not_image]})
    assert status == 400 and "photo1" not in refused["error"]
    assert refused["error"] == ("uploaded photo2: not an image (or a damaged one); give a JPEG "
                                "or PNG photo")
    status, refused = live.call("POST", "/api/persons", {"photos": [not_image]})
    assert status == 400 and "photo1" in refused["error"]
    status, _ = live.call("POST", "/api/persons", {"photos": "not a list"})
    assert status == 400


def test_cameras_and_their_previews(live: Live) -> None:
    cameras = live.ok("GET", "/api/cameras")
    assert [camera["name"] for camera in cameras] == ["cam1"]
    camera = cameras[0]
    CameraInfo.model_validate(camera)
    assert camera["status"] == "streaming" and camera["frames_analyzed"] > 0
    assert 0 < camera["analyzed_fps"] <= 5.5
    preview = live.ok("GET", "/api/cameras/cam1/preview.jpg")
    image = Image.open(io.BytesIO(preview))
    assert image.format == "JPEG" and image.width == 640
    status, missing = live.call("GET", "/api/cameras/nowhere/preview.jpg")
    assert status == 404 and "nowhere" in missing["error"]
    status, _ = live.call("GET", "/api/cameras", token=None)
    assert status == 401


def test_preview_labels_are_readable_and_carry_the_name() -> None:
    faces: list[tuple[tuple[float, float, float, float], str | None]] = [
        ((100.0, 100.0, 200.0, 200.0), "p1")]
    preview = Preview(np.zeros((360, 640, 3), np.uint8), faces, None)

    def label(picture: bytes) -> tuple[int, int]:
        """Height and width of the filled label above the box."""
        drawn = np.asarray(Image.open(io.BytesIO(picture)).convert("RGB"))[:100, :, 1] > 100
        rows, columns = np.nonzero(drawn)
        return int(rows.max() - rows.min() + 1), int(columns.max() - columns.min() + 1)

    height, width = label(render_preview(preview))
    named_height, named_width = label(render_preview(preview, names={"p1": "Ada Lovelace"}))
    assert height >= 22 and named_height == height  # was 14 px: unreadable on a tile
    assert named_width > width + 80  # "p1 Ada Lovelace"


def test_merge_ends_the_merged_persons_appearance_and_their_id_is_never_seen_again(
        live: Live) -> None:
    keep = live.current(P03)
    # Merged while p12 is on screen, the model thread has a track of theirs to decide again
    # and an appearance to end.
    gone = live.present(P12) or live.wait_for_face(P12, len(live.client.events), 30)["person"]
    exemplars_of_gone = {e["id"] for e in live.ok("GET", f"/api/persons/{gone}")["exemplar_list"]}
    before = live.people()
    # p03 and p12 were on screen together: two people, merged only by force
    merged = live.ok("POST", f"/api/persons/{keep}/merge", {"other": gone, "force": True})
    assert merged == {**merged, "type": "identity.merged", "person": keep, "merged": gone}
    after = live.people()
    # Everyone but the merged person is still there. Someone new may have been created
    # meanwhile: the merged person's live face, on screen with the kept one, cannot be them.
    assert gone not in after and set(before) - {gone} <= set(after)
    highest = max(map(Gallery.number, before))
    assert all(Gallery.number(p) > highest for p in set(after) - set(before))
    assert after[keep]["name"] == before[keep]["name"]
    kept = {e["id"] for e in live.ok("GET", f"/api/persons/{keep}")["exemplar_list"]}
    assert exemplars_of_gone <= kept
    status, _ = live.call("GET", f"/api/persons/{gone}")
    assert status == 404
    # p12's face is decided again (and by then the service has moved on a while).
    live.wait_for_face(P12, live.heard(merged), 30)
    live.assert_retired(gone, merged)


def test_split_makes_a_new_person_with_what_was_moved_and_delete_removes_them(live: Live) -> None:
    source = max(live.people().values(), key=lambda person: person["exemplars"])
    assert source["exemplars"] >= 2, "nobody has two exemplars to split"
    shown = live.ok("GET", f"/api/persons/{source['id']}")
    moved = shown["exemplar_list"][-1]["id"]
    highest = max(live.ids_so_far())
    mark = len(live.client.events)
    split = live.ok("POST", f"/api/persons/{source['id']}/split", {"exemplars": [moved]})
    new = split["new_person"]
    assert split == {**split, "type": "identity.split", "person": source["id"],
                     "exemplars": [moved], "appearances": []}
    assert Gallery.number(new) > highest
    assert live.client.wait_for(lambda e: e["type"] == "identity.split", 10, mark) == split
    assert [e["id"] for e in live.ok("GET", f"/api/persons/{new}")["exemplar_list"]] == [moved]
    assert moved not in {e["id"] for e in live.ok(
        "GET", f"/api/persons/{source['id']}")["exemplar_list"]}
    # The new person has no track on the camera: there is nothing to reject.
    status, answer = live.call("POST", f"/api/persons/{new}/reject", {"camera": CAMERA})
    assert status == 409 and new in answer["error"]
    deleted = live.ok("DELETE", f"/api/persons/{new}")
    assert deleted == {**deleted, "type": "identity.deleted", "person": new, "forgotten": False}
    assert new not in live.people()
    live.heard(deleted)


def test_not_this_person_gives_the_face_another_id_for_good(live: Live) -> None:
    rejected = live.current(P17)
    mark = len(live.client.events)
    answer = live.ok("POST", f"/api/persons/{rejected}/reject", {"camera": CAMERA})
    assert answer == {**answer, "type": "identity.rejected", "person": rejected,
                      "camera": CAMERA}
    assert answer["tracks"] >= 1
    assert live.client.wait_for(lambda e: e["type"] == "identity.rejected", 10, mark) == answer
    ended = live.client.wait_for(lambda e: e["type"] == "person.left"
                                 and e["person"] == rejected, 10, mark)
    other = live.wait_for_face(P17, live.client.events.index(ended), 30)
    assert other["person"] != rejected
    # The video loops: once p12 came back (a while later), p17's face still is not the
    # rejected person, who remains in the gallery.
    live.wait_for_face(P12, live.client.events.index(other), 30)
    assert rejected in live.people()
    assert {event["person"] for actor, event in live.faces(live.client.events.index(ended))
            if actor == P17} == {other["person"]}


def test_forgotten_people_seen_again_get_a_new_id(live: Live) -> None:
    forgotten = live.current(P17)
    highest = max(live.ids_so_far())
    mark = len(live.client.events)
    answer = live.ok("POST", f"/api/persons/{forgotten}/forget")
    assert answer == {**answer, "type": "identity.deleted", "person": forgotten,
                      "forgotten": True}
    assert forgotten not in live.people()
    again = live.wait_for_face(P17, mark, 30)
    assert Gallery.number(again["person"]) > highest
    live.assert_retired(forgotten, answer)


def test_concurrent_calls_leave_a_consistent_gallery(live: Live) -> None:
    ada = live.current(P03)
    names = [f"Ada {n}" for n in range(25)]
    mark = len(live.client.events)

    def work(n: int) -> tuple[int, Any]:
        if n % 2:
            return live.call("GET", "/api/persons")
        return live.call("PATCH", f"/api/persons/{ada}", {"name": names[n // 2]})

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(work, range(50)))
    assert [status for status, _ in results] == [200] * 50
    for n, (_, answer) in enumerate(results):
        if n % 2:
            assert ada in {person["id"] for person in answer}
        else:
            assert answer["name"] == names[n // 2]
    final = live.people()[ada]["name"]
    assert final in names
    live.client.wait_for(lambda e: e["type"] == "identity.renamed" and e["name"] == final, 10,
                         mark)
    renamed = [e for e in live.client.events[mark:] if e["type"] == "identity.renamed"]
    # The events came in the order the changes were made: the last one names the final name.
    assert sorted(e["name"] for e in renamed) == sorted(names)
    assert renamed[-1]["name"] == final
    status, _ = live.call("GET", "/healthz")
    assert status == 200

    assert live.service.terminate() == 0
    with sqlite3.connect(live.gallery) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = dict(db.execute("SELECT id, name FROM identities").fetchall())
    assert stored[Gallery.number(ada)] == final
