"""The file report: ``report.json``, ``detections.jsonl``, ``persons/<id>.jpg``,
``appearances/<appearance>.jpg`` and ``index.html``.

``report.json`` is written last and atomically: its presence marks a complete report, and a run
that fails part-way removes the previous one instead of leaving it beside new, partial files.
Schema ``facestream.report/1`` only gains fields; it changes name on a change that breaks
readers.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.errors import OutputError
from stream.imaging import jpeg_bytes
from stream.types import ImageArray

SCHEMA = "facestream.report/1"


@dataclass(frozen=True)
class Detection:
    """One face on an analysed frame, as written to ``detections.jsonl``."""

    frame: int
    t: float
    box: tuple[float, float, float, float]
    score: float
    person: str | None

    def to_json(self) -> str:
        return json.dumps({"frame": self.frame, "t": round(self.t, 3),
                           "box": [round(v, 1) for v in self.box],
                           "score": round(self.score, 4), "person": self.person})


@dataclass(frozen=True)
class Appearance:
    """One appearance of a person: its ID (as in the ``person.*`` events), its span on the
    video's timeline and its best face."""

    id: str
    start_s: float
    end_s: float
    thumbnail: ImageArray
    quality: float  # of the face (higher is better)


@dataclass(frozen=True)
class Person:
    """One person of the report."""

    id: str
    name: str | None
    appearances: list[Appearance]  # sorted, none overlapping (see :func:`join_appearances`)
    detections: int
    thumbnail: ImageArray

    @property
    def first_seen_s(self) -> float:
        return self.appearances[0].start_s

    @property
    def last_seen_s(self) -> float:
        return self.appearances[-1].end_s

    @property
    def total_visible_s(self) -> float:
        return sum(a.end_s - a.start_s for a in self.appearances)


def merge_spans(spans: Iterable[tuple[float, float]], max_gap_s: float
                ) -> list[tuple[float, float]]:
    """Sorted union of time spans, joining those separated by at most ``max_gap_s``."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= max_gap_s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def join_appearances(appearances: list[Appearance]) -> list[Appearance]:
    """The appearances sorted, those that overlap or touch joined into one (under the earliest
    one's ID, with the better face), so that no moment is counted twice."""
    joined = []
    for start, end in merge_spans(((a.start_s, a.end_s) for a in appearances), 0.0):
        parts = [a for a in appearances if start <= a.start_s <= end]
        first = min(parts, key=lambda a: (a.start_s, a.id))
        best = max(parts, key=lambda a: a.quality)
        joined.append(Appearance(first.id, start, end, best.thumbnail, best.quality))
    return joined


def prepare_output(out: Path) -> None:
    """Create ``out`` if needed, check it can be written, and remove the report of a previous run
    so that nothing stale passes for complete while this one runs."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".facestream-write-test"
        probe.write_bytes(b"")
        probe.unlink()
        (out / "report.json").unlink(missing_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write to {out} ({error.strerror}); choose a writable --out"
                          ) from error


def report_document(*, source: Path, duration_s: float, fps: float, frames_decoded: int,
                    frames_analyzed: int, embedder: tuple[str, str], persons: list[Person],
                    problems: list[str]) -> dict[str, Any]:
    """The ``report.json`` document (persons ordered by first appearance). A person's ``share``
    is their time on screen over the video's duration."""
    ordered = sorted(persons, key=lambda p: (p.first_seen_s, p.id))
    return {
        "schema": SCHEMA,
        "source": str(source),
        "duration_s": round(duration_s, 3),
        "fps": round(fps, 3),
        "frames_decoded": frames_decoded,
        "frames_analyzed": frames_analyzed,
        "complete": not problems,
        "problems": problems,
        "embedder": {"name": embedder[0], "version": embedder[1]},
        "persons": [{
            "id": p.id,
            "name": p.name,
            "first_seen_s": round(p.first_seen_s, 3),
            "last_seen_s": round(p.last_seen_s, 3),
            "total_visible_s": round(p.total_visible_s, 3),
            "share": round(min(1.0, p.total_visible_s / duration_s) if duration_s > 0 else 0.0,
                           4),
            "appearances": [{"appearance": a.id, "start_s": round(a.start_s, 3),
                             "end_s": round(a.end_s, 3),
                             "thumbnail": f"appearances/{a.id}.jpg"} for a in p.appearances],
            "thumbnail": f"persons/{p.id}.jpg",
            "detections": p.detections,
        } for p in ordered],
    }


def write_report(out: Path, document: dict[str, Any], detections: Iterable[Detection],
                 persons: list[Person]) -> None:
    """Write every file of the report into ``out`` (prepared by :func:`prepare_output`)."""
    try:
        persons_dir, appearances_dir = out / "persons", out / "appearances"
        for directory in (persons_dir, appearances_dir):
            if directory.exists():
                shutil.rmtree(directory)
            directory.mkdir()
        thumbnails = {}
        for person in persons:
            data = jpeg_bytes(person.thumbnail)
            (persons_dir / f"{person.id}.jpg").write_bytes(data)
            thumbnails[person.id] = data
            for appearance in person.appearances:
                (appearances_dir / f"{appearance.id}.jpg").write_bytes(
                    jpeg_bytes(appearance.thumbnail))
        with (out / "detections.jsonl").open("w") as lines:
            for detection in detections:
                lines.write(detection.to_json() + "\n")
        (out / "index.html").write_text(render_html(document, thumbnails))
        partial = out / "report.json.partial"
        partial.write_text(json.dumps(document, indent=2) + "\n")
        partial.replace(out / "report.json")
    except OSError as error:
        raise OutputError(f"could not write the report to {out} ({error.strerror}); "
                          "free space or choose another --out") from error


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes}:{secs:04.1f}"


def render_html(document: dict[str, Any], thumbnails: dict[str, bytes]) -> str:
    """A self-contained page: each person with thumbnail, name and ID, time on screen and a
    timeline."""
    duration = max(float(document["duration_s"]), 1e-6)
    rows = []
    for person in document["persons"]:
        bars = "".join(
            f'<span class="bar" style="left:{100 * a["start_s"] / duration:.3f}%;'
            f'width:{max(0.3, 100 * (a["end_s"] - a["start_s"]) / duration):.3f}%"'
            f' title="{_clock(a["start_s"])} – {_clock(a["end_s"])}"></span>'
            for a in person["appearances"])
        image = base64.b64encode(thumbnails.get(person["id"], b"")).decode()
        who = html.escape(person["id"] if person["name"] is None
                          else f'{person["name"]} ({person["id"]})')
        rows.append(
            f'<li class="person"><img src="data:image/jpeg;base64,{image}" alt="face of {who}">'
            f'<div class="info"><h2>{who}</h2><p>{_clock(person["total_visible_s"])} on screen'
            f' ({100 * person["share"]:.0f} % of the video)'
            f' in {_count(len(person["appearances"]), "appearance")}, first at'
            f' {_clock(person["first_seen_s"])}</p>'
            f'<div class="timeline" role="img" aria-label="appearances of {who}">{bars}</div>'
            f'</div></li>')
    warning = ""
    if document["problems"]:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in document["problems"][:10])
        warning = (f'<div class="warning"><strong>The video was damaged; this report covers '
                   f'what could be decoded.</strong><ul>{items}</ul></div>')
    body = "\n".join(rows) or '<p class="empty">No faces were found in this video.</p>'
    count = len(document["persons"])
    people = "1 person" if count == 1 else f"{count} people"
    source = html.escape(Path(document["source"]).name)
    embedder = html.escape(f'{document["embedder"]["name"]} ({document["embedder"]["version"]})')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>facestream: {source}</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 960px; padding: 1rem;
       color: #1d1d1f; background: #fafafa; }}
header p {{ color: #555; margin: .2rem 0; }}
ul.people {{ list-style: none; padding: 0; }}
.person {{ display: flex; gap: 1rem; align-items: center; background: #fff; padding: .6rem;
          border-radius: 8px; margin-bottom: .6rem; box-shadow: 0 1px 2px #0002; }}
.person img {{ width: 96px; height: 96px; object-fit: cover; border-radius: 6px; }}
.info {{ flex: 1; min-width: 0; }} .info h2 {{ margin: 0; font-size: 1.1rem; }}
.info p {{ margin: .2rem 0 .4rem; color: #444; }}
.timeline {{ position: relative; height: 14px; background: #e6e6ea; border-radius: 3px; }}
.bar {{ position: absolute; top: 0; bottom: 0; background: #2f6fde; border-radius: 3px; }}
.axis {{ display: flex; justify-content: space-between; color: #777; font-size: .8rem;
         margin-left: calc(96px + 1.6rem); margin-right: .6rem; }}
.warning {{ background: #fff3cd; border: 1px solid #e0c060; padding: .5rem 1rem; }}
</style></head><body>
<header><h1>{people} in {source}</h1>
<p>{_clock(duration)} of video, {document["frames_analyzed"]} of {document["frames_decoded"]}
frames analysed; embedder {embedder}.</p>
<div class="axis"><span>0:00</span><span>{_clock(duration)}</span></div></header>
{warning}
<ul class="people">
{body}
</ul></body></html>
"""
