"""``POST /api/recognize`` on the real service (``facestream run`` with a token, a gallery file
and a camera showing no one, so that the gallery holds only whom the tests enroll), with the
real models and the sample photos: a person enrolled from one photo is recognised in another,
with their name; strangers are nobody; the gallery is never changed; bad uploads are one clear
4xx message.

The tests share one service and run in file order.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from benchmarks.synthetic import PERSONS, make_sprite
from stream.identity.track import box_iou
from stream.service.http.recognize import Recognized, _form_file
from stream.vision.models import fetch
from tests.fixtures import free_port
from tests.integration.live import EventClient, Service, write_config
from tests.media import write_video

pytestmark = pytest.mark.slow
TOKEN = "recognize-s3cret"
MAX_BODY = 2_000_000  # the sample photos are 150-300 KB


@dataclass
class Live:
    service: Service
    client: EventClient

    def post(self, *, image: bytes | None = None, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None, token: str | None = TOKEN
             ) -> tuple[int, Any]:
        """``POST /api/recognize``: ``image`` as the multipart field ``file``, ``body`` as JSON
        or ``raw`` as it is; the status and the JSON answer."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        response = requests.post(
            self.service.base + "/api/recognize", headers=sent, data=raw, json=body,
            files={"file": ("photo.jpg", image, "image/jpeg")} if image is not None else None,
            timeout=60)
        assert response.headers["Content-Type"] == "application/json", response.text
        return response.status_code, response.json()

    def people(self) -> list[dict[str, Any]]:
        response = requests.get(self.service.base + "/api/persons", timeout=30,
                                headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        people: list[dict[str, Any]] = response.json()
        return people


def sample(name: str) -> bytes:
    """A sample photo's JPEG bytes, as taken (1920 px wide)."""
    return (fetch("face-api-samples") / name).read_bytes()


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.fixture(scope="module")
def live(weights: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("recognize")
    # A camera that shows no face: the gallery holds only the people the tests enroll.
    gradient = np.linspace(40, 200, 320, dtype=np.uint8)[None, :, None].repeat(240, 0)
    video = write_video(folder / "empty.mp4", [np.repeat(gradient + i, 3, axis=2)
                                               for i in range(25)])
    config = write_config(folder / "service.yaml", f"""\
cameras:
  - name: hall
    url: {video}
    loop: true
    sample_fps: 2
gallery:
  path: {folder / "gallery.db"}
server:
  token: {TOKEN}
  max_body_bytes: {MAX_BODY}
""")
    service = Service([str(config)], free_port())
    try:
        client = EventClient(f"ws://127.0.0.1:{service.port}/events?token={TOKEN}")
        yield Live(service, client)
        client.close()
    finally:
        service.kill()


def test_a_photo_with_no_face_is_an_empty_list(live: Live) -> None:
    status, answer = live.post(image=jpeg(Image.new("RGB", (640, 480), (90, 120, 150))))
    assert status == 200, answer
    assert answer["faces"] == [] and 0 < answer["threshold"] < 2


def test_an_enrolled_person_is_recognised_by_name_in_another_photo(live: Live) -> None:
    ada = base64.b64encode(jpeg(make_sprite(PERSONS["p03"][0]).image)).decode()
    response = requests.post(live.service.base + "/api/persons", json={
        "name": "Ada", "photos": [ada]}, headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60)
    assert response.status_code == 201, response.text
    person = response.json()["person"]
    people = live.people()
    events = len(live.client.events)

    # sample3: Ada (another photo of her) and two people nobody enrolled
    status, answer = live.post(image=sample("sample3.jpg"))
    assert status == 200, answer
    Recognized.model_validate(answer)
    faces = answer["faces"]
    assert len(faces) == 3, faces
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in (face["box"] for face in faces)]
    assert areas == sorted(areas, reverse=True)
    threshold = answer["threshold"]
    # Boxes are in the photo's own pixels (it was scaled down to be analysed).
    truth = {who: PERSONS[who][-1].box for who in ("p03", "p06", "p07")}
    by_person = {}
    for face in faces:
        who, overlap = max(((who, box_iou(box, tuple(face["box"]))) for who, box
                            in truth.items()), key=lambda pair: pair[1])
        assert overlap > 0.5, (face, truth)
        assert face["score"] > 0.9
        by_person[who] = face
    assert by_person["p03"]["person"] == {"id": person, "name": "Ada"}
    assert by_person["p03"]["distance"] < threshold
    for stranger in ("p06", "p07"):
        assert by_person[stranger]["person"] is None
        assert by_person[stranger]["distance"] >= threshold

    # The JSON form gives the same answer; the gallery and the events are as they were.
    encoded = base64.b64encode(sample("sample3.jpg")).decode()
    assert live.post(body={"image": encoded}) == (200, answer)
    assert live.people() == people
    assert [event["type"] for event in live.client.events[events:]
            if event["type"].startswith("identity.")] == []


def test_a_stranger_alone_is_nobody(live: Live) -> None:
    status, answer = live.post(image=jpeg(make_sprite(PERSONS["p08"][0]).image))
    assert status == 200, answer
    [face] = answer["faces"]
    assert face["person"] is None and face["distance"] >= answer["threshold"]


def test_bad_uploads_are_one_clear_4xx(live: Live, tmp_path: Path) -> None:
    people = live.people()
    status, answer = live.post(image=b"just text, not a picture")
    assert (status, answer) == (400, {"error": "uploaded photo1: not an image (or a damaged "
                                      "one); give a JPEG or PNG photo"})
    status, answer = live.post(body={"image": "%%% not base64"})
    assert (status, answer) == (400, {"error": '"image" must be a base64-encoded image'})
    usage = ('send the image as the multipart field "file", or as JSON {"image": "<base64 '
             'image>"}')
    for body in ({"photo": "x"}, {"image": 3}):
        assert live.post(body=body) == (400, {"error": usage})
    assert live.post(body=[1, 2]) == (400, {"error": "the body must be a JSON object"})
    # a multipart form without the field
    response = requests.post(live.service.base + "/api/recognize", data={"other": "x"},
                             files={"picture": ("a.jpg", sample("sample1.jpg"))},
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert (response.status_code, response.json()) == (400, {"error": usage})
    # too big to send: refused before it is read
    status, answer = live.post(image=b"\xff" * (MAX_BODY + 1))
    assert status == 413 and "server.max_body_bytes" in answer["error"]
    # small to send, too many pixels to decode: refused before it is decoded
    huge = tmp_path / "huge.png"
    Image.new("1", (8000, 8000)).save(huge)
    status, answer = live.post(image=huge.read_bytes())
    assert status == 400 and "8000x8000 pixels is too large" in answer["error"], answer
    # other media types, and no token
    status, answer = live.post(raw=b"x", headers={"Content-Type": "text/plain"})
    assert status == 415 and "multipart/form-data" in answer["error"]
    status, answer = live.post(image=sample("sample1.jpg"), token=None)
    assert status == 401
    status, answer = live.post(image=sample("sample1.jpg"), token="wrong")
    assert status == 401
    assert live.people() == people


def test_the_openapi_document_describes_both_forms(live: Live) -> None:
    response = requests.get(live.service.base + "/api/openapi.json", timeout=30,
                            headers={"Authorization": f"Bearer {TOKEN}"})
    operation = response.json()["paths"]["/api/recognize"]["post"]
    content = operation["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    assert content["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RecognizeImage"}
    assert json.dumps(operation["responses"]["200"]).count("Recognized") == 1


def test_the_form_parser_finds_the_one_file_field() -> None:
    def form(*parts: tuple[str, bytes], boundary: str = "b0und") -> tuple[str, bytes]:
        body = b"".join(b"--%s\r\n%s\r\n\r\n%s\r\n" % (boundary.encode(), head.encode(), content)
                        for head, content in parts)
        return f'multipart/form-data; boundary="{boundary}"', body + b"--%s--\r\n" % (
            boundary.encode())

    image = b"\xff\xd8 bytes\r\n--b0un\r\n\r\n of a picture"
    named = 'Content-Disposition: form-data; name="file"; filename="a.jpg"'
    assert _form_file(*form(("Content-Disposition: form-data; name=k", b"v"),
                            (named + "\r\nContent-Type: image/jpeg", image))) == image
    # unquoted, any case; "filename" is not "name"
    assert _form_file(*form(("content-disposition: Form-Data; NAME=file", image))) == image
    assert _form_file(*form(('Content-Disposition: form-data; filename="file"', image))) is None
    assert _form_file(*form((named, image), (named, b"another"))) is None  # which one?
    kind, body = form((named, image))
    assert _form_file("multipart/form-data", body) is None  # no boundary
    assert _form_file(kind, b"") is None
