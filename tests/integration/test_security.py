"""Attacks on the real ``facestream run`` (the demo video, looped, with a gallery file and no
token, the default), all on loopback: a page of another origin in real Chromium reading
``/events`` and posting blind (``no-cors``) changes, DNS rebinding (a foreign ``Host``), bodies
that are not JSON or too large, the requests that used to answer 500, and a property-based fuzz
of every REST route; then the gallery file must be as it was, and consistent.

The tests share one service and run in file order; the last one stops the service.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import re
import select
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from benchmarks.synthetic import PERSONS, GroundTruth, make_sprite
from stream.service.http.cameras import render_preview
from tests.fixtures import free_port
from tests.integration.live import EventClient, Service, write_config

try:
    from playwright.sync_api import Browser, sync_playwright
except ImportError:  # pragma: no cover - reported by the test itself
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
MAX_BODY = 65536
Headers = dict[str, str]


@dataclass
class Live:
    service: Service
    client: EventClient
    gallery: Path

    @property
    def port(self) -> int:
        return self.service.port

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: Headers | None = None) -> tuple[int, Any]:
        """One request; the status and the JSON answer (or ``None`` when it is not JSON).
        ``body`` is sent as JSON; ``raw`` as it is, with the given headers only."""
        sent = {"Content-Type": "application/json"} if body is not None else {}
        data = json.dumps(body).encode() if body is not None else raw
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=data, headers={**sent, **(headers or {})})
            response = connection.getresponse()
            content = response.read()
            kind = response.getheader("Content-Type", "")
        finally:
            connection.close()
        answer = json.loads(content) if kind.startswith("application/json") else None
        return response.status, answer

    def people(self) -> dict[str, dict[str, Any]]:
        status, answer = self.call("GET", "/api/persons")
        assert status == 200, answer
        return {person["id"]: person for person in answer}

    def changes(self, after: int) -> list[dict[str, Any]]:
        """The identity.* events (published for changes only) from index ``after``."""
        return [event for event in self.client.events[after:]
                if event["type"].startswith("identity.")]


def stored(gallery: Path) -> dict[int, str | None]:
    """The gallery file's people and names, read while the service runs; it must be
    consistent."""
    with sqlite3.connect(f"file:{gallery}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        return dict(db.execute("SELECT id, name FROM identities").fetchall())


def photo() -> str:
    """A photo of someone the demo does not show, base64 JPEG."""
    out = io.BytesIO()
    make_sprite(PERSONS["p08"][0]).image.convert("RGB").save(out, "JPEG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.fixture(scope="module")
def live(demo_video: tuple[Path, GroundTruth], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Live]:
    video, _ = demo_video
    folder = tmp_path_factory.mktemp("security")
    config = write_config(folder / "service.yaml", f"""\
cameras:
  - name: cam1
    url: {video}
    loop: true
    sample_fps: 3
gallery:
  path: {folder / "gallery.db"}
server:
  max_body_bytes: {MAX_BODY}
""")
    service = Service([str(config)], free_port())
    try:
        client = EventClient(f"ws://127.0.0.1:{service.port}/events?replay=100")
        client.wait_for(lambda _: len({e["person"] for e in client.of_type(
            "person.appeared")}) >= 2, 60)
        yield Live(service, client, folder / "gallery.db")
        client.close()
    finally:
        service.kill()


class AttackPage(BaseHTTPRequestHandler):
    """The page of another origin: it reads /events and posts changes blindly, as a page of
    any site the user visits could; what it achieved ends in ``window.result``."""

    target = ""  # the service's base URL
    posts: ClassVar[list[tuple[str, str]]] = []  # (path, text/plain body)

    def do_GET(self) -> None:
        page = f"""<!doctype html><script>
const target = {json.dumps(self.target)}, posts = {json.dumps(self.posts)};
window.result = {{messages: 0, wsClosed: false, answered: 0, failed: 0, read: null}};
const socket = new WebSocket(target.replace("http", "ws") + "/events?replay=100");
socket.onmessage = () => {{ window.result.messages++; }};
socket.onclose = () => {{ window.result.wsClosed = true; }};
for (const [path, body] of posts) {{
  fetch(target + path, {{method: "POST", mode: "no-cors", body,
                         headers: {{"Content-Type": "text/plain"}}}})
    .then(() => window.result.answered++, () => window.result.failed++);
}}
fetch(target + "/api/persons").then(r => r.text()).then(t => {{ window.result.read = t; }},
                                                         () => {{ window.result.read = false; }});
</script>"""
        data = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        pytest.fail("Playwright is missing: pip install -e '.[dev]' (or pip install playwright)")
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


def test_a_page_of_another_origin_can_neither_read_events_nor_change_the_gallery(
        live: Live, browser: Browser) -> None:
    people = live.people()
    first, second = sorted(people)[:2]
    AttackPage.target = f"http://127.0.0.1:{live.port}"
    AttackPage.posts = [
        (f"/api/persons/{first}/forget", ""),
        (f"/api/persons/{first}/merge", json.dumps({"other": second})),
        (f"/api/persons/{second}/split", json.dumps({"exemplars": [1]})),
        ("/api/persons", json.dumps({"name": "Mallory", "photos": [photo()]})),
    ]
    mark = len(live.client.events)
    other_site = ThreadingHTTPServer(("127.0.0.1", 0), AttackPage)
    threading.Thread(target=other_site.serve_forever, daemon=True).start()
    try:
        page = browser.new_context().new_page()
        # localhost is another site than 127.0.0.1, and another port: another origin.
        page.goto(f"http://localhost:{other_site.server_address[1]}/")
        page.wait_for_function("""() => (window.result.wsClosed || window.result.messages > 0)
            && window.result.read !== null
            && window.result.answered + window.result.failed === 4""", timeout=20_000)
        page.wait_for_timeout(500)  # events the socket might still deliver
        result = page.evaluate("() => window.result")
        page.context.close()
    finally:
        other_site.shutdown()
    assert result["messages"] == 0, result  # it read no event
    assert result["answered"] == 4, result  # the posts were sent, and refused
    assert result["read"] is False, result  # and it cannot read the API either
    assert live.changes(mark) == []
    after = live.people()
    assert {who: after[who]["name"] for who in people} == {
        who: person["name"] for who, person in people.items()}
    assert "Mallory" not in {person["name"] for person in after.values()}
    assert any("refused" in line and "http://localhost" in line for line in live.service.log)


def test_foreign_origins_and_host_names_are_refused_and_the_own_ones_served(live: Live) -> None:
    port = live.port
    url = f"ws://127.0.0.1:{port}/events?replay=1"
    for origin, host in (("http://evil.example", "127.0.0.1"), ("null", "127.0.0.1"),
                         (f"http://localhost:{port}", "127.0.0.1"), (None, "evil.example"),
                         (f"http://rebound.example:{port}", "rebound.example")):
        # The URL's host is what the client sends as Host; it connects to 127.0.0.1 anyway.
        with pytest.raises(InvalidStatus) as refused, connect(
                f"ws://{host}:{port}/events?replay=1",
                origin=None if origin is None else Origin(origin),
                sock=socket.create_connection(("127.0.0.1", port)), open_timeout=10):
            pass
        assert refused.value.response.status_code == 403, (origin, host)
        assert "error" in json.loads(refused.value.response.body or b"{}"), (origin, host)
    # The service's own page, and clients that send no Origin, are served.
    for origin in (f"http://127.0.0.1:{port}", None):
        with connect(url, origin=None if origin is None else Origin(origin), open_timeout=10) as ok:
            assert json.loads(ok.recv(10))["seq"] >= 1
    # DNS rebinding: a page of evil.example whose name now points here sends its own Host.
    for host in ("evil.example", f"evil.example:{port}", "evil.localhost.example"):
        status, answer = live.call("GET", "/api/persons", headers={"Host": host})
        assert status == 403 and "allowed_hosts" in answer["error"], host
    status, _ = live.call("GET", "/", headers={"Host": "evil.example"})
    assert status == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1", f"[::1]:{port}"):
        status, _ = live.call("GET", "/api/persons", headers={"Host": host})
        assert status == 200, host
    someone = sorted(live.people())[0]
    mark = len(live.client.events)
    status, answer = live.call("POST", f"/api/persons/{someone}/forget",
                               headers={"Origin": "http://evil.example"})
    assert status == 403 and "allowed_origins" in answer["error"]
    assert live.changes(mark) == [] and someone in live.people()


def answered(raw: socket.socket) -> bytes:
    """What the server sent on ``raw`` until it closed the connection."""
    received = b""
    with contextlib.suppress(ConnectionResetError):  # what came before the reset is kept
        while chunk := raw.recv(65536):
            received += chunk
    return received


def test_changes_take_only_json_bodies_within_the_limit(live: Live) -> None:
    someone = sorted(live.people())[0]
    mark = len(live.client.events)
    rename = json.dumps({"name": "Eve"}).encode()
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                 None):
        headers = {"Content-Type": kind} if kind else {}
        status, answer = live.call("PATCH", f"/api/persons/{someone}", raw=rename,
                                   headers=headers)
        assert status == 415 and "application/json" in answer["error"], kind
        status, _ = live.call("POST", "/api/persons", raw=json.dumps(
            {"photos": [photo()]}).encode(), headers=headers)
        assert status == 415, kind
    assert live.changes(mark) == [] and live.people()[someone]["name"] != "Eve"

    # 50 MB announced: refused at once, without reading it.
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as raw:
        raw.sendall(b"POST /api/persons HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    b"application/json\r\nContent-Length: 50000000\r\n\r\n" + b"[" * 1024)
        answer = answered(raw)
    assert answer.startswith(b"HTTP/1.1 413") and b"max_body_bytes" in answer, answer
    assert time.monotonic() - started < 5
    # Sent in chunks, without a length: refused once past the limit.
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as raw:
        raw.sendall(b"POST /api/persons HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (4096, b" " * 4096)
        for _ in range(2 * MAX_BODY // 4096):
            raw.sendall(chunk)
            if select.select([raw], [], [], 0.05)[0]:  # it answered: send no more
                break
        answer = answered(raw)
    assert answer.startswith(b"HTTP/1.1 413"), answer


def test_bad_requests_are_json_4xx_never_500(live: Live) -> None:
    people = live.people()
    assert "p1" in people  # so that p١ and p１ would find someone if they meant p1
    someone = "p1"
    mark = len(live.client.events)
    huge = "p" + "1" * 5000
    cases: list[tuple[str, str, Any, bytes | None, int]] = [
        ("PATCH", f"/api/persons/{someone}", None,
         b'{"name": ' + b"[" * 20000 + b"]" * 20000 + b"}", 400),
        ("POST", "/api/persons", None, b'{"photos": ' + b"[" * 20000 + b"]" * 20000 + b"}", 400),
        ("PATCH", f"/api/persons/{someone}", None, b'{"name": "\\ud800"}', 400),
        ("POST", "/api/persons", None, b'{"name": "\\udfff", "photos": ["AAAA"]}', 400),
        ("GET", "/api/persons/p%C2%B2", None, None, 404),
        ("GET", "/api/persons/p%D9%A1", None, None, 404),  # p١ (Arabic-Indic one)
        ("GET", "/api/persons/p%EF%BC%91", None, None, 404),  # p１ (fullwidth one)
        ("PATCH", "/api/persons/p%EF%BC%91", {"name": "Eve"}, None, 404),
        ("GET", "/api/persons/p%ED%A0%80", None, None, 404),  # a surrogate, as UTF-8
        ("GET", "/api/persons/p%FF", None, None, 404),
        ("GET", f"/api/persons/{huge}", None, None, 404),
        ("DELETE", f"/api/persons/{huge}", None, None, 404),
        ("POST", f"/api/persons/{someone}/merge", {"other": huge}, None, 404),
        ("POST", f"/api/persons/{someone}/merge", {"other": "p１"}, None, 400),
        ("POST", f"/api/persons/{someone}/split", None,
         b'{"exemplars": [' + b"1" * 5000 + b"]}", 400),
        ("GET", "/api/cameras/%ED%A0%80/preview.jpg", None, None, 404),
        ("GET", "/api/nothing", None, None, 404),
        ("GET", "/no/such/file.js", None, None, 404),
        ("PUT", f"/api/persons/{someone}", {"name": "Eve"}, None, 405),
        ("DELETE", "/api/persons", None, None, 405),
        ("POST", "/healthz", None, None, 405),
    ]
    for method, path, body, raw, expected in cases:
        headers = {"Content-Type": "application/json"} if raw is not None else {}
        status, answer = live.call(method, path, body, raw=raw, headers=headers)
        assert status == expected and isinstance(answer, dict) and answer.get("error"), (
            method, path[:60], status, answer)
    assert live.changes(mark) == []
    assert live.people()[someone]["name"] == people[someone]["name"]


def test_a_split_naming_an_exemplar_twice_is_refused(live: Live) -> None:
    picture = photo()
    status, created = live.call("POST", "/api/persons", {"name": "Grace",
                                                          "photos": [picture, picture]})
    assert status == 201, created
    person = created["person"]
    status, shown = live.call("GET", f"/api/persons/{person}")
    exemplars = [exemplar["id"] for exemplar in shown["exemplar_list"]]
    assert len(exemplars) == 2
    first, second = exemplars
    for moved in ([first, second, first], [first, first]):
        status, answer = live.call("POST", f"/api/persons/{person}/split",
                                   {"exemplars": moved})
        assert status == 400 and "twice" in answer["error"], answer
    status, shown = live.call("GET", f"/api/persons/{person}")
    assert [exemplar["id"] for exemplar in shown["exemplar_list"]] == exemplars
    status, answer = live.call("POST", f"/api/persons/{person}/split",
                               {"exemplars": [first, second]})
    assert status == 400 and "at least one" in answer["error"]
    status, _ = live.call("POST", f"/api/persons/{person}/forget")
    assert status == 200


def test_the_preview_draws_faces_that_cross_the_frame_edge() -> None:
    from stream.pipeline.live import Preview

    image = np.zeros((360, 640, 3), np.uint8)
    faces = [((-30.0, -20.0, 60.0, 70.0), "p1"), ((600.0, 300.0, 700.0, 420.0), None),
             ((-50.0, 100.0, -10.0, 140.0), "p2"), ((10.0, 5.0, 80.0, 90.0), "p12345")]
    picture = Image.open(io.BytesIO(render_preview(Preview(image, faces, None))))
    assert picture.size == (640, 360)
    drawn = np.asarray(picture.convert("RGB"))
    assert drawn[0:14, 0:20].mean() > 60  # the label of p1, at the top edge, inside its box
    wide = render_preview(Preview(np.zeros((720, 1280, 3), np.uint8),
                                  [((1200.0, 650.0, 1400.0, 800.0), "p3")], None))
    assert Image.open(io.BytesIO(wide)).size == (640, 360)


def test_refusals_are_logged_at_a_bounded_rate(live: Live) -> None:
    before = len(live.service.log)
    for _ in range(20):
        with pytest.raises(InvalidStatus), connect(
                f"ws://127.0.0.1:{live.port}/events", origin=Origin("http://evil.example"),
                open_timeout=10):
            pass
        live.call("POST", "/api/persons", raw=b"x", headers={"Content-Type": "text/plain"})
    time.sleep(0.5)
    lines = live.service.log[before:]
    assert len([line for line in lines if "refused" in line]) <= 1, lines
    assert not [line for line in lines if "handshake" in line or "Traceback" in line], lines


def _nobody(label: str) -> bool:
    """Whether ``label`` cannot name anyone this service has met (so a change can't succeed)."""
    match = re.fullmatch(r"[pP]?([0-9]+)", label)
    return match is None or len(match[1]) > 5 or int(match[1]) == 0


IDS = st.one_of(
    st.sampled_from(["p999999", "0", "p0", "P999998", "p", "", "p-1", "p1.0", "p 1", "p+1",
                     "p١", "p１", "p²", "\ud800", "p%00", ".."]),
    st.text(max_size=12).filter(_nobody),
    st.integers(19, 5000).map(lambda digits: "p" + "7" * digits))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4), max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={
    key: JSON for key in ("name", "other", "exemplars", "appearances", "photos", "force",
                          "camera")})
BODIES = st.one_of(
    st.none(), FIELDS.map(lambda body: json.dumps(body).encode()),
    JSON.map(lambda body: json.dumps(body).encode()), st.binary(max_size=64),
    st.sampled_from([b"[" * 5000, b'{"name": "\\ud800"}', b"\xff\xfe", b'{"a": 1e999}']))


def _quote(text: str) -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def test_no_request_to_any_route_fails_or_changes_the_gallery(live: Live) -> None:
    _, document = live.call("GET", "/api/openapi.json")
    routes = [(path, method.upper()) for path, item in document["paths"].items()
              for method in item if path != "/events"]
    assert len(routes) >= 14
    people = live.people()
    before = stored(live.gallery)
    mark = len(live.client.events)

    @settings(max_examples=80, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(route=st.sampled_from(routes), person=IDS, camera=st.text(max_size=12),
           existing=st.sampled_from(sorted(people)), body=BODIES,
           kind=st.sampled_from(["application/json", "text/plain", None]),
           other_method=st.sampled_from([None, "PUT", "OPTIONS", "POST", "DELETE"]))
    def request(*, route: tuple[str, str], person: str, camera: str, existing: str,
                body: bytes | None, kind: str | None, other_method: str | None) -> None:
        path, method = route
        # Existing people only where nothing can change: anything else may be a real change.
        who = existing if method == "GET" and other_method is None else person
        target = path.replace("{id}", _quote(who)).replace("{name}", _quote(camera))
        headers = {"Content-Type": kind} if kind and body is not None else {}
        status, answer = live.call(other_method or method, target, raw=body, headers=headers)
        assert status < 500 or status == 503, (method, target[:80], body, status, answer)
        if status >= 400:
            assert isinstance(answer, dict) and answer.get("error"), (target[:80], answer)

    request()
    assert live.changes(mark) == []
    after = stored(live.gallery)
    assert {k: after.get(k) for k in before} == before


def test_the_service_stops_cleanly_and_the_gallery_is_consistent(live: Live) -> None:
    assert live.service.terminate() == 0
    stored(live.gallery)
    assert not [line for line in live.service.log if "Traceback" in line]


# --- the token and the address: checked before the models load -----------------------------


def run_cli(*args: str, env: Headers | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def test_an_open_address_without_a_token_is_refused_at_once(
        demo_video: tuple[Path, GroundTruth], tmp_path: Path) -> None:
    video, _ = demo_video
    started = time.monotonic()
    done = run_cli("run", str(video), "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "without a token" in done.stderr
    assert "--allow-open" in done.stderr and "FACESTREAM_TOKEN" in done.stderr
    assert time.monotonic() - started < 20  # before torch loads
    empty = tmp_path / "empty"
    empty.write_text("\n")
    done = run_cli("run", str(video), "--token-file", str(empty))
    assert done.returncode == 2 and "is empty" in done.stderr
    assert done.stderr.count("\n") == 1


def test_the_token_file_is_read_from_the_configuration(tmp_path: Path,
                                                       demo_video: tuple[Path, GroundTruth]
                                                       ) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    config = write_config(tmp_path / "c.yaml", f"""\
cameras:
  - name: cam1
    url: {demo_video[0]}
server:
  host: 0.0.0.0
  token_file: {secret}
""")
    done = run_cli("check-config", str(config))
    assert done.returncode == 0 and "token required" in done.stdout, done.stderr
    assert "from-a-file" not in done.stdout
    missing = write_config(tmp_path / "m.yaml", config.read_text().replace(
        str(secret), str(tmp_path / "nope")))
    done = run_cli("check-config", str(missing))
    assert done.returncode == 2 and "cannot read the token file" in done.stderr
    assert done.stderr.count("\n") == 1
