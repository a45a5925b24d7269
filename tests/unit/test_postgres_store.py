"""The gallery store contract, for both stores (a real SQLite file and a real PostgreSQL with
pgvector), and what only the shared store does: several nodes creating one person at once,
a stale index answered by the database, erasure, and the errors of a server that cannot
serve."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stream.config import EventSettings
from stream.errors import GalleryError, NotFoundError
from stream.identity.gallery import Gallery
from stream.identity.matcher import Identifier, MatchSettings, decide
from stream.identity.track import Track
from stream.pipeline.lane import identifying_lane
from stream.storage import Location, check_location, open_gallery, open_store
from stream.storage.postgres import SCHEMA_VERSION, PostgresStore
from stream.types import Event, PersonAppeared
from tests.fixtures.postgres import PASSWORD, Postgres
from tests.unit.test_identity import DIM, near, track_of
from tests.unit.test_lane import result as lane_frame

SETTINGS = MatchSettings(threshold=0.5, min_evidence=3, patience=8)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """A new gallery of each kind."""
    if request.param == "sqlite":
        return tmp_path / "gallery.db"
    return str(request.getfixturevalue("pg_url"))


def opened(location: Location) -> Gallery:
    return open_gallery(location, dim=DIM, embedder="test", version="1")


def news(gallery: Gallery) -> frozenset[int]:
    """What ``gallery`` learns from its refreshes within a second (the shared store hears of
    others' changes a moment after their commit)."""
    deadline = time.monotonic() + 1.0
    while not (changed := gallery.refresh()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return changed


def test_people_survive_reopening_and_ids_are_never_reused(location: Location) -> None:
    gallery = opened(location)
    first = gallery.create(np.stack([near(0)]), quality=0.9, source="camera:door",
                           face=b"\xff\xd8jpeg")
    second = gallery.create(np.stack([near(1)]))
    gallery.store.add_appearance(first, "camera:door", 100.0, 130.0)
    gallery.forget(second)
    gallery_id = gallery.store.gallery_id
    gallery.store.close()

    again = opened(location)
    assert len(again) == 1 and first in again and second not in again
    assert again.store.gallery_id == gallery_id
    assert decide(again, track_of(0, 3), SETTINGS, final=False, exclude=set()).identity == first
    assert again.create(np.stack([near(1)])) > second
    record = again.store.identity(first)
    assert (record.exemplars, record.appearances, record.seen_s) == (1, 1, 30.0)
    exemplar = again.store.exemplars(first)[0]
    assert (exemplar.source, exemplar.face) == ("camera:door", b"\xff\xd8jpeg")
    assert exemplar.quality == pytest.approx(0.9)
    assert np.allclose(again.store.index_rows().vectors[0], exemplar.vector)
    again.store.close()


def test_another_store_learns_of_the_changes_once(location: Location) -> None:
    ours, theirs = opened(location), opened(location)
    ada = ours.create(np.stack([near(0)]))
    assert news(theirs) == {ada}
    assert theirs.refresh() == frozenset() and ours.refresh() == frozenset()  # no news twice
    bob = theirs.create(np.stack([near(1)]))
    assert news(ours) == {bob}
    theirs.store.add_cannot_link(ada, bob)
    assert ours.store.cannot_link(ada) == {bob}
    ours.merge(ada, bob)
    assert news(theirs) == {ada, bob} and bob not in theirs
    assert decide(theirs, track_of(1, 3), SETTINGS, final=False, exclude=set()).identity == ada
    theirs.reject(ada, near(1))
    assert news(ours) == {ada}
    assert ours.rejected(ada, near(1), 0.3)
    ours.store.rename(ada, "Ada")
    assert news(theirs) == {ada} and theirs.store.identity(ada).name == "Ada"
    theirs.forget(ada)
    assert news(ours) == {ada} and len(ours) == 0
    ours.store.close()
    theirs.store.close()


def test_split_moves_exemplars_and_appearances(location: Location) -> None:
    gallery = opened(location)
    ada = gallery.create(np.stack([near(0), near(1)]))
    first, second = (e.id for e in gallery.store.exemplars(ada))
    seen = gallery.store.add_appearance(ada, "camera:door", 1.0, 2.0)
    gallery.store.extend_appearance(seen, 5.0)
    new = gallery.split(ada, exemplars=[second], appearances=[seen])
    assert [e.id for e in gallery.store.exemplars(new)] == [second]
    assert [(a.id, a.end) for a in gallery.store.appearances(new)] == [(seen, 5.0)]
    assert [e.id for e in gallery.store.exemplars(ada)] == [first]
    assert gallery.store.identity(new).last_seen >= 5.0
    gallery.store.close()


def test_a_backup_is_the_whole_gallery_and_transactions_nest(location: Location,
                                                             tmp_path: Path) -> None:
    store = open_store(location, embedder="test", version="1", dim=DIM)
    ada = store.create_identity()
    store.rename(ada, "Ada")
    store.add_exemplar(ada, near(0), quality=1.0, source="photo:a.jpg", face=b"face")
    with pytest.raises(RuntimeError), store.transaction():
        store.create_identity()
        with store.transaction():
            store.add_exemplar(ada, near(1), quality=1.0, source="photo:b.jpg")
        raise RuntimeError("all or nothing")
    assert store.identity_ids() == [ada] and len(store.exemplars()) == 1
    store.backup(tmp_path / "copy.db")
    copy = opened(tmp_path / "copy.db")
    assert [(r.id, r.name, r.exemplars) for r in copy.store.identities()] == [(ada, "Ada", 1)]
    assert copy.store.exemplars()[0].face == b"face"
    store.close()


def test_the_store_finds_the_nearest_exemplars_as_committed(location: Location) -> None:
    store = open_store(location, embedder="test", version="1", dim=DIM)
    empty = store.nearest(np.stack([near(0)]), 2)
    assert np.isinf(empty[0]).all() and (empty[1] == -1).all()
    people = [store.create_identity() for _ in range(3)]
    for person in people:
        store.add_exemplar(person, near(person - people[0]), quality=1.0, source="x")
    distances, identities = store.nearest(np.stack([near(2, 0.0), near(0, 0.0)]), 2)
    assert identities[:, 0].tolist() == [people[2], people[0]]
    assert (distances[:, 0] < 0.1).all() and (distances[:, 1] > distances[:, 0]).all()
    store.close()


def test_a_stale_index_is_answered_by_the_store(location: Location) -> None:
    ours, theirs = opened(location), opened(location)
    ada = ours.create(np.stack([near(0)]))
    # theirs has not refreshed: its index is empty, the store is not
    deadline = time.monotonic() + 1.0
    while theirs.current() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert decide(theirs, track_of(0, 3), SETTINGS, final=False, exclude=set()).identity == ada
    assert theirs.searches["store"] >= 1
    theirs.refresh()
    before = dict(theirs.searches)
    theirs.search(np.stack([near(0)]), 1)
    assert theirs.searches == {**before, "index": before["index"] + 1}
    ours.store.close()
    theirs.store.close()


def test_two_nodes_creating_one_person_at_once_make_one_identity(location: Location) -> None:
    galleries = [opened(location) for _ in range(3)]
    start = threading.Barrier(len(galleries))
    made: list[int] = []

    def create(gallery: Gallery) -> None:
        start.wait()
        made.append(gallery.create(np.stack([near(0)]), join_within=SETTINGS.threshold))

    threads = [threading.Thread(target=create, args=(gallery,)) for gallery in galleries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 1
    assert galleries[0].store.identity_ids() == [made[0]]
    assert galleries[0].store.identity(made[0]).exemplars >= 1
    # someone else is still someone new
    assert galleries[1].create(np.stack([near(1)]), join_within=SETTINGS.threshold) != made[0]
    for gallery in galleries:
        gallery.store.close()


def test_a_track_that_joins_a_person_just_made_elsewhere_is_not_new(location: Location) -> None:
    a, b = (identifying_lane(f"door-{node}", opened(location), threshold=SETTINGS.threshold,
                             source="test", events=EventSettings(left_after_s=1.0))
            for node in "ab")
    assert isinstance(a.assigner, Identifier) and isinstance(b.assigner, Identifier)
    events: dict[str, list[Event]] = {"a": [], "b": []}
    decide_on_b = b.assigner.face_of

    def face_of(track: Track) -> bytes | None:
        # b has decided its track is someone new; before b creates them, a makes them
        if not events["a"]:
            for i in range(3):
                events["a"] += a.take(lane_frame(i, [(0, 0.99)]), now=float(i)).events
        return decide_on_b(track)

    b.assigner.face_of = face_of
    for i in range(3):
        events["b"] += b.take(lane_frame(i, [(0, 0.99)]), now=float(i)).events
    (made,), (joined,) = ([e for e in events[node] if isinstance(e, PersonAppeared)]
                          for node in "ab")
    assert (made.person, made.new, made.distance) == ("p1", True, None)
    assert (joined.person, joined.new) == ("p1", False)
    assert joined.distance is not None and joined.distance < SETTINGS.threshold
    assert a.assigner.gallery.store.identity_ids() == [1]


# PostgreSQL only


def test_erase_leaves_no_row_and_no_table_file_holding_the_person(postgres: Postgres,
                                                                  pg_url: str) -> None:
    store = open_store(pg_url, embedder="test", version="1", dim=DIM)
    kept, erased = store.create_identity(), store.create_identity()
    kept_face, erased_face = b"KEPT" * 250, b"GONE" * 250
    store.add_exemplar(kept, near(0), quality=1.0, source="photo:a.jpg", face=kept_face)
    store.add_exemplar(erased, near(1), quality=1.0, source="photo:b.jpg", face=erased_face)
    store.add_appearance(erased, "camera:door", 1.0, 2.0)
    store.rename(erased, "Grace Hopper")
    store.erase(erased)
    with pytest.raises(NotFoundError, match="no person p2"):
        store.erase(erased)
    for table, column in (("identities", "id"), ("exemplars", "identity"),
                          ("appearances", "identity"), ("rejections", "identity"),
                          ("cannot_link", "first"), ("cannot_link", "second")):
        assert postgres.rows(pg_url, f"SELECT count(*) FROM {table} WHERE {column} = {erased}"
                             ) == [(0,)]
    postgres.rows(pg_url, "CHECKPOINT")
    database = postgres.rows(pg_url, "SELECT oid FROM pg_database"
                                     " WHERE datname = current_database()")[0][0]
    contents = b"".join(path.read_bytes() for path in (postgres.pgdata / "base" /
                                                        str(database)).iterdir())
    assert kept_face in contents and erased_face not in contents
    assert b"Grace Hopper" not in contents
    assert store.complete_erasures()
    store.close()
    store.close()  # closing twice is harmless


def test_the_schema_is_versioned_and_a_newer_one_is_refused(postgres: Postgres,
                                                           pg_url: str) -> None:
    open_store(pg_url, embedder="test", version="1", dim=DIM).close()
    assert postgres.rows(pg_url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    postgres.rows(pg_url, "UPDATE schema_version SET version = 99")
    with pytest.raises(GalleryError, match=r"newer facestream \(schema 99\)"):
        open_store(pg_url, embedder="test", version="1", dim=DIM)


def test_a_server_that_cannot_serve_is_one_clear_line_without_the_password(
        postgres: Postgres, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    down = f"postgresql://facestream@127.0.0.1:{_closed_port()}/x"
    with pytest.raises(GalleryError, match=r"cannot be reached .*start the server") as error:
        check_location(down)
    assert "\n" not in str(error.value)
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(GalleryError, match="password authentication failed") as error:
        check_location(pg_url)
    assert "wrong" not in str(error.value)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    with pytest.raises(GalleryError, match="holds a password"):
        check_location(pg_url.replace("facestream@", f"facestream:{PASSWORD}@"))
    with postgres.admin() as db:
        db.execute(b"CREATE DATABASE plain OWNER facestream TEMPLATE template0")
    with pytest.raises(GalleryError, match=r"lacks the pgvector extension .* psql -d plain -c "
                       r"'CREATE EXTENSION vector'"):
        check_location(postgres.url("plain"))


def test_a_change_reaches_the_other_node_by_notification(pg_url: str) -> None:
    ours, theirs = opened(pg_url), opened(pg_url)
    assert theirs.refresh() == frozenset() and theirs.current()  # no news: nothing read
    ada = ours.create(np.stack([near(0)]))
    assert news(theirs) == {ada}
    ours.store.close()
    theirs.store.close()


def test_two_ids_that_two_nodes_made_of_one_person_are_found(postgres: Postgres,
                                                             pg_url: str) -> None:
    stores = [PostgresStore(pg_url, embedder="test", version="1", dim=DIM) for _ in range(2)]
    ours, theirs = (Gallery(store) for store in stores)
    since = time.time() - 1
    for gallery in (ours, theirs):  # met long ago: the look is over recent identities only
        old = gallery.store.create_identity(now=since - 3600)
        gallery.store.add_exemplar(old, near(3), quality=1.0, source="")
    ada = ours.create(np.stack([near(0), near(0)]))
    twin = theirs.create(np.stack([near(0)]))  # a node that could not see ada
    bob = ours.create(np.stack([near(1)]))
    ours.create(np.stack([near(1)]))  # kept apart from bob by the node that held both
    grace = ours.create(np.stack([near(2)]))
    seen_with_grace = theirs.create(np.stack([near(2)]))
    theirs.store.add_cannot_link(grace, seen_with_grace)  # on screen together: two people
    assert stores[0].duplicates(SETTINGS.threshold, since) == [(ada, twin)]
    assert stores[1].duplicates(0.01, since) == []
    assert stores[1].duplicates(SETTINGS.threshold, time.time()) == []
    assert bob in ours and twin not in ours
    for store in stores:
        store.close()


def test_nodes_starting_together_on_a_new_database_make_one_gallery(postgres: Postgres,
                                                                   pg_url: str) -> None:
    database = pg_url.rsplit("/", 1)[1]
    with postgres.admin(database) as db:
        db.execute(b"DROP EXTENSION vector")
    url = postgres.url(database, "postgres")  # a user who may add the extension
    start = threading.Barrier(4)
    stores: list[PostgresStore] = []

    def open_one() -> None:
        start.wait()
        stores.append(PostgresStore(url, embedder="test", version="1", dim=DIM))

    threads = [threading.Thread(target=open_one) for _ in range(start.parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stores) == start.parties
    assert len({store.gallery_id for store in stores}) == 1
    for store in stores:
        store.close()


def test_a_gallery_of_schema_1_is_migrated(postgres: Postgres, pg_url: str) -> None:
    open_store(pg_url, embedder="test", version="1", dim=DIM).close()
    postgres.rows(pg_url, "DROP INDEX identities_created")
    postgres.rows(pg_url, "ALTER TABLE identities DROP COLUMN writer")
    postgres.rows(pg_url, "UPDATE schema_version SET version = 1")
    store = open_store(pg_url, embedder="test", version="1", dim=DIM)
    identity = store.create_identity()
    assert postgres.rows(pg_url, f"SELECT writer IS NOT NULL FROM identities"
                         f" WHERE id = {identity}") == [(True,)]
    store.close()


def _closed_port() -> int:
    from tests.fixtures import free_port

    return free_port()


def test_the_gallery_command_works_on_a_url(postgres: Postgres, pg_url: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    assert main(["gallery", pg_url, "list"]) == 2
    assert f"there is no gallery at {pg_url}" in capsys.readouterr().err
    gallery = opened(pg_url)
    ada = Gallery.label(gallery.create(np.stack([near(0)])))
    gallery.store.close()
    assert main(["gallery", pg_url, "rename", ada, "Ada"]) == 0
    assert main(["gallery", pg_url, "list"]) == 0
    assert "Ada" in capsys.readouterr().out
    assert main(["gallery", pg_url, "export", str(tmp_path / "copy.db")]) == 0
    assert [r.name for r in opened(tmp_path / "copy.db").store.identities()] == ["Ada"]
    assert main(["gallery", pg_url, "reembed", "--embedder", "dlib-resnet"]) == 2
    assert f"`facestream gallery {pg_url} export copy.db`" in capsys.readouterr().err
    assert main(["gallery", pg_url, "forget", ada]) == 0
    assert postgres.rows(pg_url, "SELECT count(*) FROM identities") == [(0,)]
