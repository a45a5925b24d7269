"""What a user can do to the gallery: the one set of operations behind ``facestream gallery``
and the REST API. Each change returns the event that announces it (dashboards reconcile on
``identity.*`` events).

These run wherever the gallery is owned: in the CLI's process on a gallery file, or in the live
service's model thread (see ``Engine.call``).
"""

from __future__ import annotations

import base64
import sqlite3
import time
from pathlib import Path
from typing import Any

from stream.identity.gallery import Gallery
from stream.identity.store import GalleryError

Document = dict[str, Any]


def _iso(seconds: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int(seconds * 1000) % 1000:03d}Z"


def person_summary(gallery: Gallery, identity: int) -> Document:
    """One person as the API shows them in lists."""
    record = gallery.store.identity(identity)
    return {"id": Gallery.label(record.id), "name": record.name,
            "created": _iso(record.created), "last_seen": _iso(record.last_seen),
            "exemplars": record.exemplars, "appearances": record.appearances,
            "seen_s": round(record.seen_s, 2)}


def list_people(gallery: Gallery) -> list[Document]:
    """Everyone in the gallery, in order of creation."""
    return [person_summary(gallery, record.id) for record in gallery.store.identities()]


def show_person(gallery: Gallery, identity: int) -> Document:
    """One person with their exemplars (faces as base64 JPEG) and appearances."""
    document = person_summary(gallery, identity)
    document["exemplar_list"] = [
        {"id": e.id, "quality": round(e.quality, 3), "source": e.source,
         "created": _iso(e.created),
         "face": base64.b64encode(e.face).decode("ascii") if e.face else None}
        for e in gallery.store.exemplars(identity)]
    document["appearance_list"] = [
        {"id": a.id, "source": a.source, "start": a.start, "end": a.end}
        for a in gallery.store.appearances(identity)]
    return document


def thumbnail(gallery: Gallery, identity: int) -> bytes | None:
    """The JPEG of the person's best face, when one was kept."""
    faces = [e for e in gallery.store.exemplars(identity) if e.face]
    return max(faces, key=lambda e: e.quality).face if faces else None


def rename(gallery: Gallery, identity: int, name: str | None) -> Document:
    """Give a person a name (or take it away with ``None``)."""
    if name is not None:
        name = name.strip()
        if not name or len(name) > 200:
            raise GalleryError("a name must have 1 to 200 characters")
    gallery.store.rename(identity, name)
    return {"type": "identity.renamed", "person": Gallery.label(identity), "name": name}


def merge(gallery: Gallery, keep: int, gone: int) -> Document:
    """Make one person of two: ``gone``'s history moves to ``keep``."""
    gallery.merge(keep, gone)
    return {"type": "identity.merged", "person": Gallery.label(keep),
            "merged": Gallery.label(gone)}


def split(gallery: Gallery, identity: int, *, exemplars: list[int],
          appearances: list[int]) -> Document:
    """Move chosen exemplars and appearances of a person to a new person."""
    new = gallery.split(identity, exemplars=exemplars, appearances=appearances)
    return {"type": "identity.split", "person": Gallery.label(identity),
            "new_person": Gallery.label(new), "exemplars": exemplars,
            "appearances": appearances}


def delete(gallery: Gallery, identity: int) -> Document:
    """Remove a person from the gallery (seen again, they get a new ID)."""
    gallery.forget(identity)
    return {"type": "identity.deleted", "person": Gallery.label(identity), "forgotten": False}


def forget(gallery: Gallery, identity: int) -> Document:
    """Erase a person completely, for privacy requests: as :func:`delete`, and the freed pages
    of the file are overwritten, so their embeddings and faces cannot be recovered from it."""
    db = gallery.store.connection
    db.execute("PRAGMA secure_delete = ON")
    try:
        gallery.forget(identity)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
    finally:
        db.execute("PRAGMA secure_delete = OFF")
    return {"type": "identity.deleted", "person": Gallery.label(identity), "forgotten": True}


def export_gallery(gallery: Gallery, path: Path) -> None:
    """A consistent copy of the gallery file at ``path`` (a backup, or to import elsewhere)."""
    if path.exists():
        raise GalleryError(f"{path} exists; give a new file name for the export")
    target = sqlite3.connect(path)
    try:
        gallery.store.connection.backup(target)
    finally:
        target.close()
