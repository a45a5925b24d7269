"""The persistent gallery on a real SQLite file: IDs, exemplars, changes by the user, reopening,
another embedder, a damaged file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.identity.gallery import Gallery, open_gallery
from stream.identity.matcher import MatchSettings, Verdict, decide
from stream.identity.store import GalleryError
from tests.unit.test_identity import DIM, near, track_of

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
    gallery = Gallery(DIM, "test", max_exemplars=3)
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


def test_retention_removes_only_unnamed_people_not_seen_lately(tmp_path: Path) -> None:
    gallery = opened(tmp_path / "gallery.db")
    old, named, recent = (gallery.create(np.stack([near(i)])) for i in range(3))
    for identity in (old, named):
        gallery.store.connection.execute("UPDATE identities SET last_seen = 1000 WHERE id = ?",
                                         (identity,))
    gallery.store.rename(named, "Ada")
    assert gallery.retire(unseen_since=5000.0) == [old]
    assert old not in gallery and named in gallery and recent in gallery
