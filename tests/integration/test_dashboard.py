"""The dashboard in a real headless Chromium (Debian's ``chromium`` driven by Playwright) against
the real ``facestream run`` on the demo video, with a token: the token prompt, the camera tile
and its live preview, the people, a rename made in one page that reaches another page through
the event stream, screenshots at laptop and phone size, and the banner once the service stops.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.synthetic import PERSONS, GroundTruth, make_sprite
from tests.fixtures import free_port
from tests.integration.live import Service

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - reported by the test itself
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "dash-s3cret"
CAMERA = "cam1"
# Set to a directory to keep the screenshots there (docs/dashboard.png is made this way).
SCREENSHOTS = os.environ.get("FACESTREAM_SCREENSHOTS")
NEW_NAME = "Ada Lovelace"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        pytest.fail("Playwright is missing: pip install -e '.[dev]' (or pip install playwright)")
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium "
                    "(Debian's browser; `playwright install` is not used)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


def open_dashboard(browser: Browser, base: str, width: int, height: int) -> Page:
    """A fresh browser context on the dashboard, the token entered in its prompt."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(base + "/")
    expect(page.locator("#token-dialog")).to_be_visible(timeout=15_000)
    page.fill("#token-input", TOKEN)
    page.click("#token-submit")
    expect(page.locator("#token-dialog")).to_be_hidden()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected",
                                                          timeout=15_000)
    return page


def test_dashboard(demo_video: tuple[Path, GroundTruth], browser: Browser,
                   tmp_path: Path) -> None:
    video, _ = demo_video
    service = Service([str(video), "--loop", "--gallery", str(tmp_path / "g.db"),
                       "--token", TOKEN], free_port())
    try:
        laptop = open_dashboard(browser, service.base, 1280, 800)
        errors: list[str] = []
        laptop.on("pageerror", lambda error: errors.append(str(error)))

        # The camera's tile, with its status and a live preview that loads.
        tile = laptop.locator(f'.camera[data-camera="{CAMERA}"]')
        expect(tile).to_be_visible(timeout=20_000)
        expect(tile).to_have_attribute("data-status", "streaming", timeout=20_000)
        expect(tile).to_have_class("camera has-preview", timeout=30_000)
        laptop.wait_for_function(
            f"""() => {{ const img = document.querySelector('.camera[data-camera="{CAMERA}"] img');
                         return img && img.complete && img.naturalWidth > 0; }}""",
            timeout=10_000)
        first = tile.locator("img").get_attribute("src")
        laptop.wait_for_function(  # refreshed a few times a second
            f"""() => document.querySelector('.camera[data-camera="{CAMERA}"] img').src
                      !== {first!r}""", timeout=5_000)
        expect(tile.locator(".fps")).to_contain_text("fps analysed", timeout=10_000)

        # People appear, from the events and the gallery; the feed fills.
        people = laptop.locator(".person[data-person]")
        expect(people.first).to_be_visible(timeout=40_000)
        expect(laptop.locator("#feed .event").first).to_be_visible(timeout=20_000)
        phone = open_dashboard(browser, service.base, 390, 844)
        person = people.first.get_attribute("data-person")
        assert person is not None
        expect(phone.locator(f'.person[data-person="{person}"]')).to_be_visible(timeout=20_000)

        # Rename in the person view of one page: both pages show it, the other one through the
        # identity.renamed event it received (no reload).
        people.first.click()
        expect(laptop.locator("#person-dialog")).to_be_visible()
        expect(laptop.locator("#rename-input")).to_be_visible(timeout=10_000)
        expect(laptop.locator("#person-body .timeline .bar").first).to_be_attached(
            timeout=10_000)
        laptop.fill("#rename-input", NEW_NAME)
        laptop.click("#rename-submit")
        for page in (laptop, phone):
            expect(page.locator(f'.person[data-person="{person}"] .name')).to_have_text(
                NEW_NAME, timeout=10_000)
        renamed = phone.locator(f'#feed .event[data-type="identity.renamed"]'
                                f'[data-event-person="{person}"]')
        expect(renamed.first).to_contain_text(f"renamed “{NEW_NAME}”", timeout=10_000)
        # The feed names people beside their ID, in the rows before the rename too.
        expect(phone.locator(f'#feed .event[data-event-person="{person}"] .who').last
               ).to_have_text(f"{NEW_NAME} ({person})", timeout=10_000)
        expect(laptop.locator("#person-title")).to_contain_text(NEW_NAME, timeout=10_000)
        laptop.screenshot(path=str(tmp_path / "person.png"))
        laptop.keyboard.press("Escape")
        expect(laptop.locator("#person-dialog")).to_be_hidden()

        # Screenshots, in the test's directory unless $FACESTREAM_SCREENSHOTS names another.
        shots = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
        laptop.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0); }")
        laptop.wait_for_timeout(1500)
        laptop.screenshot(path=str(shots / "dashboard.png"))
        phone.screenshot(path=str(shots / "dashboard-phone.png"), full_page=True)

        # Enroll from an uploaded photo, merge and forget, each seen by the other page.
        laptop.on("dialog", lambda dialog: dialog.accept())  # the confirm() of merge and forget
        photo = tmp_path / "grace.jpg"
        make_sprite(PERSONS["p08"][0]).image.convert("RGB").save(photo)
        laptop.click("#enroll summary")
        laptop.fill("#enroll-name", "Grace Hopper")
        laptop.set_input_files("#enroll-photos", str(photo))
        laptop.click("#enroll-form button[type=submit]")
        grace = phone.locator(".person", has_text="Grace Hopper")
        expect(grace).to_be_visible(timeout=20_000)
        grace_id = grace.get_attribute("data-person")
        other = laptop.locator(f'.person[data-person]:not([data-person="{person}"])'
                               f':not([data-person="{grace_id}"])').first
        expect(other).to_be_visible(timeout=20_000)
        other_id = other.get_attribute("data-person")
        laptop.locator(f'.person[data-person="{person}"]').click()
        laptop.select_option("#merge-other", str(other_id))
        laptop.click("#merge-form button[type=submit]")
        expect(phone.locator(f'.person[data-person="{other_id}"]')).to_have_count(0,
                                                                                 timeout=10_000)
        # Split: the merged person's faces reload in the open view; one goes to a new person.
        faces = laptop.locator("#person-body input[data-exemplar]")
        # Wait for the view to show the merged faces (what the API has now), so that the face
        # ticked is not re-rendered away by the reload.
        status, body = service.get(f"/api/persons/{person}", TOKEN)
        assert status == 200, body
        expect(faces).to_have_count(json.loads(body)["exemplars"], timeout=15_000)
        faces.first.check()
        laptop.click("#split-button")
        expect(phone.locator(f'#feed .event[data-type="identity.split"]'
                             f'[data-event-person="{person}"]').first).to_be_attached(
            timeout=10_000)
        laptop.keyboard.press("Escape")
        laptop.locator(f'.person[data-person="{grace_id}"]').click()
        laptop.click("#forget-button")
        expect(phone.locator(f'.person[data-person="{grace_id}"]')).to_have_count(0,
                                                                                 timeout=10_000)
        expect(laptop.locator("#person-dialog")).to_be_hidden()
        kinds = set(phone.locator("#feed .event").evaluate_all(
            "(items) => items.map((item) => item.dataset.type)"))
        assert {"identity.created", "identity.merged", "identity.split",
                "identity.deleted"} <= kinds, kinds
        assert not errors, errors
    finally:
        code = service.terminate()
    assert code == 0, "\n".join(service.log)

    # The service is gone: the page says so, and keeps trying.
    for page in (laptop, phone):
        expect(page.locator("#connection")).to_have_attribute("data-state", "disconnected",
                                                              timeout=15_000)
        expect(page.locator("#connection")).to_contain_text("disconnected")

    # The service comes back on the same port: the pages reconnect by themselves.
    again = Service([str(video), "--loop", "--gallery", str(tmp_path / "g.db"),
                     "--token", TOKEN], service.port)
    try:
        for page in (laptop, phone):
            expect(page.locator("#connection")).to_have_attribute("data-state", "connected",
                                                                  timeout=30_000)
        expect(laptop.locator(f'.camera[data-camera="{CAMERA}"]')).to_have_attribute(
            "data-status", "streaming", timeout=30_000)
    finally:
        assert again.terminate() == 0
