"""`facestream enroll` and `facestream gallery` as users run them, on galleries built by
`facestream analyze --gallery` on the demo video and by enrolling photos of real faces.

The galleries are made by the command in its own process; most commands on them run through
``main`` in this process, which spares each the seconds of importing torch again.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from benchmarks.synthetic import PERSONS, GroundTruth, make_sprite
from stream.cli import main
from stream.vision import models

pytestmark = pytest.mark.slow


def facestream(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The command in its own process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "stream", *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False)


def run(*args: str | Path) -> str:
    done = facestream(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ok(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    """What the command prints, run in this process; it must succeed."""
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def refused(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    """The one error line of a command the user got wrong (exit code 2, no traceback)."""
    code = main(["-q", *map(str, args)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


def query(path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows read straight from a gallery file, independently of facestream."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def on_disk(path: Path) -> bytes:
    """The bytes of a closed gallery file (a write-ahead log left behind would hold more)."""
    assert not Path(f"{path}-wal").exists()
    return path.read_bytes()


@pytest.fixture(scope="module")
def analyzed(demo_video: tuple[Path, GroundTruth], tmp_path_factory: pytest.TempPathFactory
             ) -> Path:
    """The gallery `facestream analyze --gallery` leaves after the demo video: three people,
    the woman of sample1/sample3 in two appearances; its report lies next to it."""
    directory = tmp_path_factory.mktemp("analyzed")
    run("-q", "analyze", demo_video[0], "--out", directory / "report", "--gallery",
        directory / "gallery.db", "--sample-fps", "5")
    return directory / "gallery.db"


@pytest.fixture
def gallery(analyzed: Path, tmp_path: Path) -> Path:
    """A copy of the analysed gallery for one test to change."""
    copy = tmp_path / "gallery.db"
    copy.write_bytes(on_disk(analyzed))
    return copy


@pytest.fixture(scope="module")
def woman(analyzed: Path) -> int:
    """The identity number of the woman who leaves and comes back in the demo video."""
    twice = query(analyzed, "SELECT identity FROM appearances GROUP BY identity"
                  " HAVING COUNT(*) = 2")
    assert len(twice) == 1
    return int(twice[0][0])


@pytest.fixture(scope="module")
def photos(weights: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Photos of real faces: single-face crops of the sample photos, a group photo, a photo
    with no face, and a text file named like a photo."""
    directory = tmp_path_factory.mktemp("photos")
    samples = models.spec("face-api-samples").directory
    paths = {name: directory / f"{name}.jpg" for name in
             ("woman", "woman-again", "stranger", "group", "wall", "notes")}
    make_sprite(PERSONS["p03"][0]).image.convert("RGB").save(paths["woman"])
    make_sprite(PERSONS["p03"][1]).image.convert("RGB").save(paths["woman-again"])
    make_sprite(PERSONS["p08"][0]).image.convert("RGB").save(paths["stranger"])
    shutil.copy(samples / "sample1.jpg", paths["group"])  # three people
    with Image.open(samples / "sample1.jpg") as photo:
        photo.crop((0, 700, 500, 1000)).save(paths["wall"])  # clothes below the faces
    paths["notes"].write_text("call Ada on monday\n")
    return paths


@pytest.fixture(scope="module")
def enrolled(photos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new gallery made by enrolling Ada from two photos of her."""
    path = tmp_path_factory.mktemp("enrolled") / "people.db"
    assert run("enroll", "--gallery", path, "--name", "Ada", photos["woman"],
               photos["woman-again"]) == "p1\n"
    return path


def test_list_and_show(capsys: pytest.CaptureFixture[str], analyzed: Path, woman: int) -> None:
    table = ok(capsys, "gallery", analyzed, "list").splitlines()
    assert table[0].split() == ["ID", "NAME", "LAST", "SEEN", "TIME", "SEEN", "EXEMPLARS"]
    people = query(analyzed, "SELECT i.id, COUNT(e.id) FROM identities i JOIN exemplars e"
                   " ON e.identity = i.id GROUP BY i.id ORDER BY i.id")
    assert len(people) == 3
    assert [(row.split()[0], row.split()[-1]) for row in table[1:]] == [
        (f"p{number}", str(count)) for number, count in people]
    seen = query(analyzed, "SELECT SUM(end - start) FROM appearances WHERE identity = ?",
                 woman)[0][0]
    assert seen == pytest.approx(10.0, abs=0.3)  # on screen 0-5 s and 7-12 s
    assert f" {seen:.1f} s " in next(row for row in table if row.startswith(f"p{woman} "))

    shown = json.loads(ok(capsys, "gallery", analyzed, "show", f"p{woman}", "--json"))
    faces = query(analyzed, "SELECT id, face FROM exemplars WHERE identity = ? ORDER BY id",
                  woman)
    assert [(e["id"], e["face"]) for e in shown["exemplar_list"]] == [
        (number, base64.b64encode(face).decode()) for number, face in faces]
    spans = [(a["start"], a["end"]) for a in shown["appearance_list"]]
    assert spans == [pytest.approx((0.0, 5.0), abs=0.3), pytest.approx((7.0, 12.0), abs=0.3)]

    page = ok(capsys, "gallery", analyzed, "show", f"p{woman}")
    assert f"exemplars ({len(faces)}):" in page and "appearances (2):" in page
    assert all(f"  {number} " in page for number, _ in faces)


def test_rename_split_merge_delete(capsys: pytest.CaptureFixture[str], gallery: Path,
                                   woman: int) -> None:
    exemplars = [row[0] for row in query(
        gallery, "SELECT id FROM exemplars WHERE identity = ? ORDER BY id", woman)]
    appearances = [row[0] for row in query(
        gallery, "SELECT id FROM appearances WHERE identity = ? ORDER BY start", woman)]
    assert len(exemplars) >= 2 and len(appearances) == 2
    others = [row[0] for row in query(gallery, "SELECT id FROM identities WHERE id != ?",
                                      woman)]
    her = f"p{woman}"

    said = ok(capsys, "gallery", gallery, "rename", her, " Ada Lovelace ")
    assert said == f"{her} is now Ada Lovelace\n"
    said = ok(capsys, "gallery", gallery, "split", her, "--exemplars", exemplars[-1],
              "--appearances", appearances[1])
    assert said == f"p4 split off {her}\n"
    assert query(gallery, "SELECT identity FROM exemplars WHERE id = ?", exemplars[-1]) == [(4,)]
    assert query(gallery, "SELECT identity FROM appearances WHERE id = ?",
                 appearances[1]) == [(4,)]
    assert ok(capsys, "gallery", gallery, "merge", her, "p4").startswith(f"p4 merged into {her}")
    assert ok(capsys, "gallery", gallery, "delete", f"p{others[0]}") == f"deleted p{others[0]}\n"

    people = {p["id"]: p for p in json.loads(ok(capsys, "gallery", gallery, "list", "--json"))}
    assert sorted(people) == sorted([her, f"p{others[1]}"])
    assert (people[her]["name"], people[her]["exemplars"], people[her]["appearances"]) == (
        "Ada Lovelace", len(exemplars), 2)
    assert query(gallery, "SELECT COUNT(*) FROM exemplars WHERE identity IN (?, 4)",
                 others[0]) == [(0,)]


def test_user_mistakes_are_one_line_and_change_nothing(
        capsys: pytest.CaptureFixture[str], gallery: Path, woman: int, tmp_path: Path) -> None:
    before = on_disk(gallery)
    done = facestream("gallery", gallery, "merge", f"p{woman}", f"p{woman}")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", (
        f"facestream: error: cannot merge p{woman} with itself; give two different people\n"))
    assert "there is no person p99 in the gallery" in refused(
        capsys, "gallery", gallery, "merge", f"p{woman}", "p99")
    assert "'Ada' is not a person ID" in refused(capsys, "gallery", gallery, "forget", "Ada")
    assert "there is no gallery file at" in refused(
        capsys, "gallery", tmp_path / "nope.db", "list")
    assert not (tmp_path / "nope.db").exists()
    assert on_disk(gallery) == before


def pieces(faces: list[bytes]) -> list[bytes]:
    """Bits of the compressed image data of JPEGs: unique to each face (their headers are
    alike), and short, as SQLite splits a face over pages."""
    return [face[i:i + 24] for face in faces for i in range(1024, len(face) - 24, 200)]


def test_forget_erases_the_faces_from_the_file(capsys: pytest.CaptureFixture[str],
                                               gallery: Path, woman: int) -> None:
    hers = pieces([row[0] for row in query(
        gallery, "SELECT face FROM exemplars WHERE identity = ?", woman)])
    theirs = pieces([row[0] for row in query(
        gallery, "SELECT face FROM exemplars WHERE identity != ?", woman)])
    before = on_disk(gallery)
    assert sum(piece in before for piece in hers) > 0.8 * len(hers) > 20
    exemplars = query(gallery, "SELECT COUNT(*) FROM exemplars WHERE identity = ?", woman)[0][0]

    said = ok(capsys, "gallery", gallery, "forget", f"p{woman}")
    assert said.startswith(f"erased p{woman}: {exemplars} exemplars with their faces and 2 "
                           "appearances")
    after = on_disk(gallery)
    assert not any(piece in after for piece in hers)
    assert sum(piece in after for piece in theirs) > 0.8 * len(theirs)
    assert query(gallery, "SELECT COUNT(*) FROM appearances WHERE identity = ?", woman) == [(0,)]


def test_a_damaged_gallery_is_refused_and_left_as_it_is(capsys: pytest.CaptureFixture[str],
                                                        gallery: Path) -> None:
    damaged = bytearray(on_disk(gallery))  # a real gallery, its pages after the first overwritten
    damaged[4096:] = b"\x5a" * (len(damaged) - 4096)
    garbage = b"this is not a gallery\n" * 4000
    for content in (bytes(damaged), garbage):
        gallery.write_bytes(content)
        line = refused(capsys, "gallery", gallery, "rename", "p1", "Ada")
        assert "it is damaged or not a gallery. Nothing was changed" in line
        assert gallery.read_bytes() == content


def test_enroll_from_photos(enrolled: Path) -> None:
    assert query(enrolled, "SELECT id, name FROM identities") == [(1, "Ada")]
    rows = query(enrolled, "SELECT source, vector, face FROM exemplars ORDER BY id")
    assert [row[0] for row in rows] == ["photo:woman.jpg", "photo:woman-again.jpg"]
    vectors = [np.frombuffer(row[1], np.float32) for row in rows]
    assert all(v.shape == (128,) and abs(float(np.linalg.norm(v)) - 1) < 1e-4 for v in vectors)
    assert float(np.linalg.norm(vectors[0] - vectors[1])) < 0.45  # one woman, two photos
    assert all(row[2][:3] == b"\xff\xd8\xff" for row in rows)
    assert query(enrolled, "SELECT value FROM meta WHERE key = 'embedder'") == [("dlib-resnet",)]


def test_enroll_refuses_a_known_face_unless_forced(
        capsys: pytest.CaptureFixture[str], gallery: Path, woman: int,
        photos: dict[str, Path]) -> None:
    line = refused(capsys, "enroll", "--gallery", gallery, "--name", "Ada", photos["woman"])
    assert f"this is already p{woman} (distance 0." in line and "--force" in line
    assert query(gallery, "SELECT COUNT(*) FROM identities") == [(3,)]
    said = ok(capsys, "-q", "enroll", "--gallery", gallery, "--name", "Ada", "--force",
              photos["woman"])
    assert said == "p4\n"
    assert ok(capsys, "-q", "enroll", "--gallery", gallery, photos["stranger"]) == "p5\n"
    assert query(gallery, "SELECT id, name FROM identities WHERE id > 3") == [
        (4, "Ada"), (5, None)]


@pytest.mark.parametrize(("photo", "why"), [
    ("group", "group.jpg: 3 faces found; crop it to the one person"),
    ("wall", "wall.jpg: no face found"),
    ("notes", "notes.jpg: not an image"),
])
def test_enroll_refuses_photos_without_exactly_one_face(
        capsys: pytest.CaptureFixture[str], photo: str, why: str, photos: dict[str, Path],
        tmp_path: Path) -> None:
    new = tmp_path / "new.db"
    assert why in refused(capsys, "enroll", "--gallery", new, photos[photo])
    assert not new.exists()  # no empty gallery is left behind


def test_export_then_import_copies_people_under_new_ids(
        capsys: pytest.CaptureFixture[str], enrolled: Path, gallery: Path,
        tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    said = ok(capsys, "gallery", enrolled, "export", backup)
    assert said == f"1 person exported to {backup}\n"
    columns = "identity, vector, quality, source, created, face"
    theirs = query(enrolled, f"SELECT {columns} FROM exemplars")
    assert query(backup, f"SELECT {columns} FROM exemplars") == theirs

    said = ok(capsys, "gallery", gallery, "import", backup)
    assert said == f"p1 (Ada) of {backup} is now p4\n1 person imported\n"
    assert query(gallery, "SELECT name FROM identities WHERE id = 4") == [("Ada",)]
    assert query(gallery, f"SELECT {columns} FROM exemplars WHERE identity = 4") == [
        (4, *row[1:]) for row in theirs]

    other = tmp_path / "other.db"  # as if built with another embedder
    shutil.copy(backup, other)
    db = sqlite3.connect(other)
    db.execute("UPDATE meta SET value = 'facenet-vggface2' WHERE key = 'embedder'")
    db.commit()
    db.close()
    assert "was built with facenet-vggface2" in refused(capsys, "gallery", gallery, "import",
                                                        other)


def test_reembed_recomputes_exemplars_from_their_faces(
        capsys: pytest.CaptureFixture[str], gallery: Path, analyzed: Path,
        demo_video: tuple[Path, GroundTruth], tmp_path: Path) -> None:
    # Make it a gallery of an older 64-d embedder: what reembed computes can only come from the
    # stored faces. One exemplar has lost its face: it cannot be recomputed.
    rng = np.random.default_rng(0)
    exemplars = [row[0] for row in query(gallery, "SELECT id FROM exemplars ORDER BY id")]
    firsts = {row[0] for row in query(gallery, "SELECT MIN(id) FROM exemplars GROUP BY identity")}
    faceless = min(set(exemplars) - firsts)
    db = sqlite3.connect(gallery)
    db.execute("UPDATE meta SET value = 'older' WHERE key = 'embedder_version'")
    db.execute("UPDATE meta SET value = '64' WHERE key = 'dim'")
    for exemplar in exemplars:
        db.execute("UPDATE exemplars SET vector = ? WHERE id = ?",
                   (rng.standard_normal(64).astype(np.float32).tobytes(), exemplar))
    db.execute("UPDATE exemplars SET face = NULL WHERE id = ?", (faceless,))
    db.execute("INSERT INTO rejections (identity, vector) VALUES (1, ?)",
               (rng.standard_normal(64).astype(np.float32).tobytes(),))
    db.commit()
    db.close()

    said = ok(capsys, "gallery", gallery, "reembed", "--embedder", "dlib-resnet")
    assert said == (f"{gallery}: {len(exemplars) - 1} exemplars re-embedded with dlib-resnet; "
                    "1 removed (no face found on them)\n")
    assert [path.name for path in tmp_path.iterdir()] == ["gallery.db"]  # no copy left over
    assert dict(query(gallery, "SELECT key, value FROM meta")) == dict(
        query(analyzed, "SELECT key, value FROM meta"))
    assert query(gallery, "SELECT COUNT(*) FROM rejections") == [(0,)]
    rows = query(gallery, "SELECT id, vector FROM exemplars ORDER BY id")
    assert [row[0] for row in rows] == [e for e in exemplars if e != faceless]
    assert all(len(row[1]) == 128 * 4 for row in rows)

    # The people of the video are recognised again with the recomputed exemplars.
    run("-q", "analyze", demo_video[0], "--out", tmp_path / "again", "--gallery", gallery,
        "--sample-fps", "5")
    before = json.loads((analyzed.parent / "report" / "report.json").read_text())["persons"]
    again = json.loads((tmp_path / "again" / "report.json").read_text())["persons"]
    assert [(p["id"], p["first_seen_s"]) for p in again] == [
        (p["id"], p["first_seen_s"]) for p in before]
    assert query(gallery, "SELECT COUNT(*) FROM identities") == [(3,)]


def test_reembed_refuses_a_gallery_in_use(capsys: pytest.CaptureFixture[str], gallery: Path,
                                          tmp_path: Path) -> None:
    before = on_disk(gallery)
    service = sqlite3.connect(gallery)  # as a running `facestream run` holds it
    try:
        service.execute("SELECT COUNT(*) FROM identities").fetchall()
        line = refused(capsys, "gallery", gallery, "reembed", "--embedder", "dlib-resnet")
    finally:
        service.close()
    assert "is open in another process" in line
    assert on_disk(gallery) == before
    assert [path.name for path in tmp_path.iterdir()] == ["gallery.db"]


def small_gallery(path: Path, names: list[str | None]) -> Path:
    """A gallery file of people with one exemplar each (no model needed)."""
    from stream.storage import open_gallery

    gallery = open_gallery(path, dim=4, embedder="test", version="1")
    for number, name in enumerate(names):
        vector = np.zeros((1, 4), np.float32)
        vector[0, number % 4] = 1.0
        identity = gallery.create(vector, source="photo:x.jpg")
        gallery.store.rename(identity, name)
        gallery.store.add_appearance(identity, "camera:door", 1000.0 + number, 1010.0 + number)
    gallery.store.close()
    return path


def test_importing_a_backup_of_the_gallery_skips_the_people_it_holds(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    gallery = small_gallery(tmp_path / "gallery.db", ["Ada", None])
    backup = tmp_path / "backup.db"
    ok(capsys, "gallery", gallery, "export", backup)
    ok(capsys, "gallery", gallery, "rename", "p2", "Grace")  # changed since the backup
    said = ok(capsys, "gallery", gallery, "import", backup)
    assert said == (f"p1 of {backup} is already p1 here (the same exemplars): skipped\n"
                    f"p2 of {backup} is already p2 here (the same exemplars): skipped\n"
                    "0 people imported\n")
    assert query(gallery, "SELECT id, name FROM identities") == [(1, "Ada"), (2, "Grace")]
    assert query(gallery, "SELECT COUNT(*) FROM appearances") == [(2,)]
    other = small_gallery(tmp_path / "other.db", [None, None, "Bob"])  # p3 is new here
    said = ok(capsys, "gallery", gallery, "import", other)
    assert said.splitlines() == [
        f"p3 (Bob) of {other} is now p3", *(f"p{n} of {other} is already p{n} here (the same "
                                            "exemplars): skipped" for n in (1, 2)),
        "1 person imported"]


def test_a_name_someone_else_has_is_given_with_a_timestamped_warning(tmp_path: Path) -> None:
    gallery = small_gallery(tmp_path / "gallery.db", ["Ada", None, "Ada"])
    done = facestream("gallery", gallery, "rename", "p2", "Ada")
    assert (done.returncode, done.stdout) == (0, "p2 is now Ada\n")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} facestream: p1, p3 are also "
                        r"named Ada; if they are one person, merge them\n", done.stderr), (
        done.stderr)
    assert query(gallery, "SELECT name FROM identities WHERE id = 2") == [("Ada",)]
    alone = facestream("gallery", gallery, "rename", "p2", "Ada Lovelace")
    assert (alone.returncode, alone.stderr) == (0, "")
