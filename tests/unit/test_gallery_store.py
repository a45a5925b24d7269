"""The persistent gallery on a real SQLite file: IDs, exemplars, changes by the user, reopening,
another embedder, a damaged file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from stream.errors import ConflictError, GalleryError, NotFoundError, StorageError
from stream.identity.gallery import Gallery
from stream.identity.matcher import MatchSettings, Verdict, decide
from stream.pipeline.appearances import OpenAppearance
from stream.pipeline.record import AppearanceRecorder
from stream.storage import open_gallery
from stream.storage import sqlite as sqlite_store
from stream.storage.sqlite import SQLiteStore
from tests.fixtures.disk import fill
from tests.unit.test_identity import DIM, in_memory, near, track_of

SETTINGS = MatchSettings(threshold=0.5, min_evidence=3, patience=8)


def opened(path: Path, embedder: str = "test", version: str = "1") -> Gallery:
    return open_gallery(path, dim=DIM, embedder=embedder, version=version)


def test_people_survive_reopening_and_ids_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    gallery = opened(path)
    first = gallery.create(np.stack([near(0)]), quality=0.9, source="camera:door",
                           face=b"\xff\xd8jpeg")
    second = gallery.create(np.stack([near(1)]))
    gallery.store.add_appearance(first, "camera:door", 100.0, 130.0)
    gallery.forget(second)
    gallery.store.close()

    again = opened(path)
    assert len(again) == 1 and first in again and second not in again
    assert decide(again, track_of(0, 3), SETTINGS, final=False, exclude=set()).identity == first
    third = again.create(np.stack([near(1)]))
    assert third > second  # a forgotten person's ID is not given to someone else
    record = again.store.identity(first)
    assert (record.exemplars, record.appearances, record.seen_s) == (1, 1, 30.0)
    exemplar = again.store.exemplars(first)[0]
    assert (exemplar.source, exemplar.face) == ("camera:door", b"\xff\xd8jpeg")
    assert exemplar.quality == pytest.approx(0.9)


def test_a_gallery_of_another_embedder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    opened(path).store.close()
    with pytest.raises(GalleryError, match=r"built with test \(1\), not other \(2\); run with "
                       r"--embedder test, or convert it with `facestream gallery "
                       r".*gallery.db reembed --embedder other`"):
        opened(path, "other", "2")


def test_a_damaged_file_is_a_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(GalleryError, match=r"damaged or not a gallery\. Nothing was changed"):
        opened(path)
    assert path.read_bytes() == before


def test_exemplars_are_bounded_keeping_the_useful_ones(tmp_path: Path) -> None:
    gallery = in_memory(max_exemplars=3)
    person = gallery.create(np.stack([near(0, 0.8)]), quality=0.1)
    for _ in range(20):
        gallery.add_exemplars(person, np.stack([near(0, 0.8)]), quality=1.0)
    assert gallery.exemplar_count(person) == 3
    qualities = [e.quality for e in gallery.store.exemplars(person)]
    assert 0.1 not in qualities  # the poor first one made way
    assert len(gallery.store.exemplars()) == 3  # the evicted ones are gone from the store too
    assert gallery.search(np.stack([near(0)]), 10).identities[0].tolist().count(person) == 3


def test_merge_split_forget_are_reflected_in_the_index(tmp_path: Path) -> None:
    gallery = opened(tmp_path / "gallery.db")
    ada = gallery.create(np.stack([near(0)]))
    twin = gallery.create(np.stack([near(1)]))
    gallery.store.add_appearance(twin, "camera:door", 10.0, 20.0)
    gallery.merge(ada, twin)
    assert twin not in gallery and len(gallery) == 1
    found = decide(gallery, track_of(1, 3), SETTINGS, final=False, exclude=set())
    assert found.verdict is Verdict.KNOWN and found.identity == ada
    assert [a.identity for a in gallery.store.appearances()] == [ada]
    with pytest.raises(GalleryError, match="cannot merge p1 with itself"):
        gallery.merge(ada, ada)

    moved = gallery.store.exemplars(ada)[1].id
    new = gallery.split(ada, exemplars=[moved], appearances=[])
    assert decide(gallery, track_of(1, 3), SETTINGS, final=False, exclude=set()).identity == new
    with pytest.raises(GalleryError, match="exemplar 999 not of p1"):
        gallery.split(ada, exemplars=[999], appearances=[])

    gallery.forget(new)
    assert decide(gallery, track_of(1, 3), SETTINGS, final=False,
                  exclude=set()).verdict is Verdict.NEW
    with pytest.raises(GalleryError, match="there is no person p3"):
        gallery.forget(new)


def test_not_this_person_is_respected(tmp_path: Path) -> None:
    gallery = opened(tmp_path / "gallery.db")
    person = gallery.create(np.stack([near(0)]))
    assert decide(gallery, track_of(0, 3), SETTINGS, final=False, exclude=set()).identity == person
    gallery.reject(person, near(0))
    assert decide(gallery, track_of(0, 3), SETTINGS, final=False,
                  exclude=set()).verdict is Verdict.NEW
    gallery.store.close()
    reopened = opened(tmp_path / "gallery.db")  # the mark is kept
    assert decide(reopened, track_of(0, 3), SETTINGS, final=False,
                  exclude=set()).verdict is Verdict.NEW
    assert decide(reopened, track_of(1, 3), SETTINGS, final=False,
                  exclude=set()).verdict is Verdict.NEW


def test_people_seen_together_stay_two_unless_forced(tmp_path: Path) -> None:
    from stream import gallery_admin

    gallery = opened(tmp_path / "gallery.db")
    ada, bob, cy = (gallery.create(np.stack([near(i)])) for i in range(3))
    gallery.store.add_cannot_link(bob, ada)
    gallery.store.add_cannot_link(ada, bob)  # again: harmless
    gallery.store.close()
    gallery = opened(tmp_path / "gallery.db")  # the pair is kept
    assert gallery.store.cannot_link(ada) == {bob} and gallery.store.cannot_link(bob) == {ada}
    with pytest.raises(ConflictError, match="p1 and p2 were on screen together, so they are "
                       "two people"):
        gallery_admin.merge(gallery, ada, bob)
    assert bob in gallery

    gallery_admin.merge(gallery, cy, ada)  # cy takes ada's pairs
    assert gallery.store.cannot_link(cy) == {bob} and gallery.store.cannot_link(bob) == {cy}
    with pytest.raises(ConflictError):
        gallery_admin.merge(gallery, bob, cy)
    gallery_admin.merge(gallery, bob, cy, force=True)
    assert len(gallery) == 1 and gallery.store.cannot_link(bob) == frozenset()
    gallery.store.add_cannot_link(bob, 99)  # someone gone: not recorded
    assert gallery.store.cannot_link(bob) == frozenset()


def test_a_new_person_joins_only_someone_just_created_elsewhere(tmp_path: Path) -> None:
    ours, theirs = opened(tmp_path / "gallery.db"), opened(tmp_path / "gallery.db")
    ada = ours.create(np.stack([near(0)]))
    # Near Ada, yet judged someone new by the matcher (a look-alike): not Ada
    assert ours.create(np.stack([near(0, 0.3)]), join_within=SETTINGS.threshold) != ada
    assert theirs.create(np.stack([near(0)]), join_within=SETTINGS.threshold) == ada


def test_retention_removes_only_unnamed_people_not_seen_lately(tmp_path: Path) -> None:
    gallery = opened(tmp_path / "gallery.db")
    old, named, recent = (gallery.create(np.stack([near(i)])) for i in range(3))
    with closing(sqlite3.connect(tmp_path / "gallery.db")) as db, db:  # another connection
        db.executemany("UPDATE identities SET last_seen = 1000 WHERE id = ?",
                       [(old,), (named,)])
    gallery.store.rename(named, "Ada")
    assert gallery.retire(unseen_since=5000.0) == [old]
    assert old not in gallery and named in gallery and recent in gallery


def test_another_store_on_the_file_learns_of_the_changes_once(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    ours, theirs = opened(path), opened(path)
    ada = ours.create(np.stack([near(0)]))
    assert theirs.refresh() == {ada}
    assert decide(theirs, track_of(0, 3), SETTINGS, final=False, exclude=set()).identity == ada
    assert theirs.refresh() == frozenset() and ours.refresh() == frozenset()  # no news twice

    bob = theirs.create(np.stack([near(1)]))
    assert ours.refresh() == {bob}
    ours.merge(ada, bob)
    assert theirs.refresh() == {ada, bob}
    assert bob not in theirs
    assert decide(theirs, track_of(1, 3), SETTINGS, final=False, exclude=set()).identity == ada
    theirs.reject(ada, near(1))
    assert ours.refresh() == {ada}
    assert decide(ours, track_of(1, 3), SETTINGS, final=False,
                  exclude=set()).verdict is Verdict.NEW
    theirs.forget(ada)
    assert ours.refresh() == {ada} and len(ours) == 0


def test_changes_made_by_another_process_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    ours = opened(path)
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from stream.storage import open_store\n"
        f"store = open_store(Path(sys.argv[1]), embedder='test', version='1', dim={DIM})\n"
        "identity = store.create_identity()\n"
        "store.add_exemplar(identity, np.asarray(sys.argv[2:], np.float32), quality=1.0,"
        " source='photo:x.jpg')\n"
        "print(identity)\n")
    face = near(2)
    done = subprocess.run([sys.executable, "-c", script, str(path), *map(str, face.tolist())],
                          capture_output=True, text=True, check=True)
    created = int(done.stdout)
    assert ours.refresh() == {created}
    assert decide(ours, track_of(2, 3), SETTINGS, final=False,
                  exclude=set()).identity == created


def test_a_store_too_far_behind_reloads_everything(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "KEEP_CHANGES", 2)
    monkeypatch.setattr(sqlite_store, "PRUNE_EVERY", 1)
    path = tmp_path / "gallery.db"
    ours, theirs = opened(path), opened(path)
    gone = ours.create(np.stack([near(3)]))
    assert theirs.refresh() == {gone}
    people = [ours.create(np.stack([near(i)])) for i in range(3)]
    ours.forget(gone)
    assert theirs.refresh() == {gone, *people}  # the log no longer reaches back: all of it
    assert gone not in theirs and len(theirs) == 3
    found = theirs.search(np.stack([near(i) for i in range(3)]), 1)
    assert found.identities[:, 0].tolist() == people


def test_erase_leaves_nothing_of_the_person_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    store = SQLiteStore(path, embedder="test", version="1", dim=DIM)
    kept, erased = store.create_identity(), store.create_identity()
    kept_face, erased_face = b"KEPT" * 250, b"GONE" * 250
    store.add_exemplar(kept, near(0), quality=1.0, source="photo:a.jpg", face=kept_face)
    store.add_exemplar(erased, near(1), quality=1.0, source="photo:b.jpg", face=erased_face)
    store.erase(erased)
    with pytest.raises(NotFoundError, match="no person p2"):
        store.erase(erased)
    # while the store is open: a plain delete leaves the face in the write-ahead log
    contents = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert kept_face in contents and erased_face not in contents
    store.close()
    store.close()  # closing twice is harmless


def test_a_backup_is_the_whole_gallery_and_transactions_nest(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "gallery.db", embedder="test", version="1", dim=DIM)
    ada = store.create_identity()
    store.rename(ada, "Ada")
    with pytest.raises(RuntimeError), store.transaction():
        store.create_identity()
        with store.transaction():
            store.add_exemplar(ada, near(0), quality=1.0, source="photo:a.jpg")
        raise RuntimeError("all or nothing")
    assert store.identity_ids() == [ada] and store.exemplars() == []
    store.backup(tmp_path / "copy.db")
    copy = opened(tmp_path / "copy.db")
    assert [(r.id, r.name) for r in copy.store.identities()] == [(ada, "Ada")]


def files_of(path: Path) -> bytes:
    """Everything the gallery's files (the database, its write-ahead log and shared memory)
    hold."""
    return b"".join(Path(f"{path}{suffix}").read_bytes() for suffix in ("", "-wal", "-shm")
                    if Path(f"{path}{suffix}").exists())


def test_an_erase_held_up_by_a_reader_is_finished_once_it_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    store = SQLiteStore(path, embedder="test", version="1", dim=DIM)
    kept, erased = store.create_identity(), store.create_identity()
    face, vector, name = b"FACE" * 300, near(3), "Grace Hopper-Erased"
    store.rename(erased, name)
    store.add_exemplar(erased, vector, quality=1.0, source="photo:g.jpg", face=face)
    store.add_exemplar(kept, near(0), quality=1.0, source="photo:k.jpg", face=b"KEPT" * 300)
    secrets = (face, vector.astype(np.float32).tobytes(), name.encode())
    with closing(sqlite3.connect(path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM exemplars").fetchone() == (2,)
        store.erase(erased)
        assert store.identity_ids() == [kept]
        assert store.erasure_pending()  # the reader still sees the old pages
        assert any(secret in files_of(path) for secret in secrets)
        assert not store.complete_erasures(wait_ms=0)
        reader.execute("COMMIT")
        assert store.complete_erasures()
    assert not store.erasure_pending()
    contents = files_of(path)
    assert [secret in contents for secret in secrets] == [False, False, False]
    assert b"KEPT" * 300 in contents
    store.close()


def test_an_erase_left_pending_is_finished_by_the_next_store_to_open_the_file(
        tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    store = SQLiteStore(path, embedder="test", version="1", dim=DIM)
    store.rename(store.create_identity(), "Ada Pending")
    store.close()
    # Another process erases p1 while this one reads, and is killed before it can finish.
    with closing(sqlite3.connect(path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM identities").fetchone()
        subprocess.run([sys.executable, "-c", (
            "import os, sys; from pathlib import Path; from stream.storage.sqlite import "
            f"SQLiteStore; s = SQLiteStore(Path(sys.argv[1]), embedder='test', version='1', "
            f"dim={DIM}); s.erase(1); os._exit(0)"), str(path)], check=True)
        reader.execute("COMMIT")
        assert b"Ada Pending" in files_of(path)
        again = SQLiteStore(path, embedder="test", version="1", dim=DIM)
        assert not again.erasure_pending()
        assert again.identity_ids() == []
        assert b"Ada Pending" not in files_of(path)
        again.close()


def test_a_person_removed_by_another_process_is_skipped_by_the_recorder(
        tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    ours = opened(path)
    stays, goes = ours.create(np.stack([near(0)])), ours.create(np.stack([near(1)]))
    recorder = AppearanceRecorder(ours, wall_clock=True)
    opened_now = {"camera:door": [OpenAppearance(Gallery.label(stays), 10.0, 12.0),
                                  OpenAppearance(Gallery.label(goes), 10.0, 12.0)]}
    theirs = opened(path)
    theirs.forget(goes)  # `facestream gallery G.db delete` while the person is on camera
    recorder.save_open(opened_now)  # the gallery has not looked at the changes yet
    assert [(a.identity, a.start) for a in ours.store.appearances()] == [(stays, 10.0)]
    assert ours.refresh() == {goes}
    assert goes not in ours


def test_a_full_disk_refuses_changes_clearly_and_keeps_the_gallery_consistent(
        full_disk: Path) -> None:
    gallery = opened(full_disk / "gallery.db")
    ada = gallery.create(np.stack([near(0)]), face=b"A" * 1000)
    filler = fill(full_disk)
    big_face = bytes(range(256)) * 1200  # more than any space left
    with pytest.raises(StorageError, match=r"cannot be written now .*full"):
        gallery.create(np.stack([near(1)]), face=big_face)
    with pytest.raises(StorageError):
        gallery.add_exemplars(ada, np.stack([near(2)]), face=big_face)
    # Neither the store nor the index kept anything of the refused changes.
    assert len(gallery) == 1 and gallery.highest == ada
    assert gallery.exemplar_count(ada) == 1
    assert gallery.search(np.stack([near(1)]), 1).identities[0, 0] == ada
    assert gallery.store.identity_ids() == [ada]
    filler.unlink()
    grace = gallery.create(np.stack([near(1)]), face=big_face)
    assert grace > ada and gallery.store.identity_ids() == [ada, grace]
    with closing(sqlite3.connect(full_disk / "gallery.db")) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert check.execute("PRAGMA foreign_key_check").fetchall() == []
    gallery.store.close()


def test_time_seen_counts_overlapping_appearances_once(tmp_path: Path) -> None:
    gallery = opened(tmp_path / "gallery.db")
    keep, gone = gallery.create(np.stack([near(0)])), gallery.create(np.stack([near(1)]))
    gallery.store.add_appearance(keep, "camera:door", 1000.0, 1100.0)
    gallery.store.add_appearance(keep, "camera:door", 1050.0, 1080.0)  # inside the first
    gallery.store.add_appearance(gone, "camera:door", 1090.0, 1220.0)  # one person, two tracks
    gallery.store.add_appearance(gone, "file:/v.mp4", 0.0, 10.0)  # another timeline: added
    gallery.merge(keep, gone)
    record = gallery.store.identity(keep)
    assert (record.appearances, record.seen_s) == (4, 230.0)  # 220 s at the door, 10 s in a file
    assert [r.seen_s for r in gallery.store.identities()] == [230.0]


def test_a_persons_appearance_in_a_file_makes_them_seen_now(tmp_path: Path) -> None:
    import time

    from stream.types import PersonLeft

    gallery = opened(tmp_path / "gallery.db")
    ada = gallery.create(np.stack([near(0)]))
    with closing(sqlite3.connect(tmp_path / "gallery.db")) as db, db:
        db.execute("UPDATE identities SET last_seen = 1000.0")  # seen long ago
    before = time.time()
    left = PersonLeft(camera="file", person=Gallery.label(ada), name=None,
                      appearance="file-1", start=before - 10, end=before,
                      duration_s=10.0, start_frame_time=2.0, end_frame_time=12.0,
                      thumbnail=np.zeros((8, 8, 3), np.uint8), quality=0.5, distance=None,
                      confidence=None, time=before)
    AppearanceRecorder(gallery, wall_clock=False).record("file:/v.mp4", [left])
    assert [(a.start, a.end) for a in gallery.store.appearances(ada)] == [(2.0, 12.0)]
    assert gallery.store.identity(ada).last_seen >= before  # not 12.0: retention keeps them


def test_the_decisions_are_logged_with_the_persons_ids(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from stream.identity.matcher import Identifier
    from tests.unit.test_identity import SETTINGS, obs

    caplog.set_level(logging.DEBUG, logger="stream.identity.matcher")
    gallery = in_memory()
    for _ in range(2):  # the second time, the gallery knows the person
        identifier = Identifier(gallery, SETTINGS, max_gap_s=0.5)
        for frame in range(10):
            identifier.observe(frame / 10, [obs(frame, (0, 0, 50, 50), near(0))])
        identifier.finish()
    decisions = [record.getMessage().split(": ", 1)[1] for record in caplog.records
                 if record.getMessage().startswith("track ")]
    assert [line.split(" at ")[0] for line in decisions] == [
        "new: nobody within 0.560", "known: p1"], decisions
