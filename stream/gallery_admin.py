"""What a user can do to the gallery: the one set of operations behind ``facestream gallery``
and the REST API. Each change returns the typed event that announces it (dashboards reconcile
on ``identity.*`` events). Photos are decoded and models run here, not in ``stream.identity``.

These run wherever the gallery is owned: in the CLI's process on a gallery file, or in the live
service's model thread (see ``Engine.call``).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stream.codec import wall_time
from stream.errors import ConflictError, GalleryError
from stream.identity.gallery import Gallery
from stream.identity.matcher import template
from stream.imaging import face_crop, jpeg_bytes
from stream.storage import GalleryStore, open_store, recorded_embedder
from stream.types import (
    FloatArray,
    Frame,
    IdentityCreated,
    IdentityDeleted,
    IdentityMerged,
    IdentityRenamed,
    IdentitySplit,
    ImageArray,
)

if TYPE_CHECKING:
    from stream.vision.executor import VisionWorker

Document = dict[str, Any]
MAX_PHOTOS = 24  # per enrollment (and at most the gallery's exemplars per person)
MAX_PHOTO_PIXELS = 50_000_000  # refused before decoding: a small file can hold a huge picture
MAX_PHOTO_SIDE = 1600  # photos are scaled down to this when decoded: faces need no more


@dataclass(frozen=True)
class Photo:
    """A decoded photo to enroll: ``name`` says where it came from (``photo:NAME`` is stored
    with its exemplar, ``label`` begins the messages about it)."""

    name: str
    label: str
    image: ImageArray


def person_summary(gallery: Gallery, identity: int) -> Document:
    """One person as the API shows them in lists."""
    record = gallery.store.identity(identity)
    return {"id": Gallery.label(record.id), "name": record.name,
            "created": wall_time(record.created), "last_seen": wall_time(record.last_seen),
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
         "created": wall_time(e.created),
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


def rename(gallery: Gallery, identity: int, name: str | None) -> IdentityRenamed:
    """Give a person a name (or take it away with ``None``); :func:`namesakes` says whether
    another has it too (allowed: two people may share a name, but it is likely a mistake)."""
    name = _clean_name(name)
    gallery.store.rename(identity, name)
    return IdentityRenamed(person=Gallery.label(identity), name=name, time=time.time())


def namesakes(gallery: Gallery, identity: int) -> str | None:
    """A warning when others in the gallery have ``identity``'s name, else ``None``."""
    name = gallery.store.identity(identity).name
    others = [Gallery.label(record.id) for record in gallery.store.identities()
              if name is not None and record.name == name and record.id != identity]
    if not others:
        return None
    return (f"{', '.join(others)} {'is' if len(others) == 1 else 'are'} also named {name}; "
            f"if they are one person, merge them")


def merge(gallery: Gallery, keep: int, gone: int, *, force: bool = False) -> IdentityMerged:
    """Make one person of two: ``gone``'s history moves to ``keep``. Two people seen on screen
    together are refused (:class:`ConflictError`) unless ``force``: one was a picture of the
    other, say."""
    if not force and gone in gallery.store.cannot_link(keep):
        raise ConflictError(f"{Gallery.label(keep)} and {Gallery.label(gone)} were on screen "
                            "together, so they are two people; force the merge (--force, or "
                            '"force": true over REST) only if one was a picture of the other')
    gallery.merge(keep, gone)
    return IdentityMerged(person=Gallery.label(keep), merged=Gallery.label(gone),
                          time=time.time())


def split(gallery: Gallery, identity: int, *, exemplars: list[int],
          appearances: list[int]) -> IdentitySplit:
    """Move chosen exemplars and appearances of a person to a new person."""
    new = gallery.split(identity, exemplars=exemplars, appearances=appearances)
    return IdentitySplit(person=Gallery.label(identity), new_person=Gallery.label(new),
                         exemplars=tuple(exemplars), appearances=tuple(appearances),
                         time=time.time())


def delete(gallery: Gallery, identity: int) -> IdentityDeleted:
    """Remove a person from the gallery (seen again, they get a new ID)."""
    gallery.forget(identity)
    return IdentityDeleted(person=Gallery.label(identity), forgotten=False, time=time.time())


def forget(gallery: Gallery, identity: int) -> IdentityDeleted:
    """Erase a person completely, for privacy requests: as :func:`delete`, and the freed pages
    of the file are overwritten, so their embeddings and faces cannot be recovered from it."""
    gallery.forget(identity, erase=True)
    return IdentityDeleted(person=Gallery.label(identity), forgotten=True, time=time.time())


def _clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip()
    if not name or len(name) > 200:
        raise GalleryError("a name must have 1 to 200 characters")
    return name


def export_gallery(gallery: Gallery, path: Path) -> None:
    """A consistent copy of the gallery file at ``path`` (a backup, or to import elsewhere)."""
    if path.exists():
        raise GalleryError(f"{path} exists; give a new file name for the export")
    gallery.store.backup(path)


def open_file(path: Path | str) -> Gallery:
    """The existing gallery ``path`` (a file, or a PostgreSQL gallery's URL), opened with the
    embedder it records (no model is loaded: for the changes that need none)."""
    embedder, version, dim = recorded_embedder(path)
    return Gallery(open_store(path, embedder=embedder, version=version, dim=dim, create=False))


def read_photos(photos: Sequence[Path | bytes]) -> list[Photo]:
    """Decode photos to enroll (files, or the bytes of an upload, never written to disk, named
    by their place in the upload: ``uploaded photo1``):
    at most :data:`MAX_PHOTOS`, each of at most :data:`MAX_PHOTO_PIXELS` (checked before it is
    decoded) and scaled down to :data:`MAX_PHOTO_SIDE`. Run it where a slow decode harms
    nobody (not in the model thread)."""
    if not 1 <= len(photos) <= MAX_PHOTOS:
        raise GalleryError(f"give 1 to {MAX_PHOTOS} photos of the person")
    loaded = []
    for number, photo in enumerate(photos, 1):
        source: Path | IO[bytes]
        if isinstance(photo, Path):
            name, label, source = photo.name, str(photo), photo
        else:
            name = f"photo{number}"
            label = f"uploaded {name}"
            source = io.BytesIO(photo)
        try:
            image = _rgb(source, max_side=MAX_PHOTO_SIDE)
        except Image.DecompressionBombError as error:
            raise GalleryError(f"{label}: {error} is too large; give a photo of at most "
                               f"{MAX_PHOTO_PIXELS // 1_000_000} megapixels") from None
        except UnidentifiedImageError:
            raise GalleryError(f"{label}: not an image (or a damaged one); give a JPEG or PNG "
                               "photo") from None
        except OSError as error:
            raise GalleryError(f"{label} cannot be read ({error.strerror or error}); give the "
                               "path of a photo") from None
        loaded.append(Photo(name, label, image))
    return loaded


def enroll(gallery: Gallery, worker: VisionWorker, photos: Sequence[Path | bytes | Photo],
           name: str | None, *, force: bool = False, api: bool = False) -> IdentityCreated:
    """A new person from photos of them (files, uploads, or decoded by :func:`read_photos`
    beforehand), each holding exactly one good face: one exemplar per photo. Refused when the
    gallery knows the face already, unless ``force``. ``api``: the refusals give the REST
    API's advice rather than the command line's."""
    name = _clean_name(name)
    embedder = worker.embedder
    if gallery.store.embedder != (embedder.name, embedder.version):
        raise GalleryError(f"the gallery was built with {gallery.store.embedder[0]}, not "
                           f"{embedder.name}" + ("" if api else "; enroll with --embedder "
                                                 f"{gallery.store.embedder[0]}"))
    limit = min(MAX_PHOTOS, gallery.max_exemplars)
    if not 1 <= len(photos) <= limit:
        raise GalleryError(f"give 1 to {limit} photos of the person")
    decoded = [photo for photo in photos if isinstance(photo, Photo)]
    if len(decoded) < len(photos):
        decoded = read_photos([photo for photo in photos if not isinstance(photo, Photo)])
    faces = [_photo_face(worker, photo) for photo in decoded]
    nearest = gallery.search(template(np.stack([vector for vector, _, _ in faces]))[None], 1)
    known, distance = int(nearest.identities[0, 0]), float(nearest.distances[0, 0])
    if known >= 0 and distance < embedder.threshold and not force:
        who = gallery.store.identity(known).name
        label, person = Gallery.label(known) + (f" ({who})" if who else ""), Gallery.label(known)
        advice = (f'PATCH /api/persons/{person} to name them instead, or send "force": true'
                  if api else f"rename {person} instead, or enroll with --force")
        raise ConflictError(f"this is already {label} (distance {distance:.2f}); {advice} to "
                            "add a new person anyway")
    with gallery.store.transaction():
        identity = gallery.store.create_identity()
        gallery.store.rename(identity, name)
        for photo, (vector, quality, face) in zip(decoded, faces, strict=True):
            gallery.store.add_exemplar(identity, vector, quality=quality,
                                       source=f"photo:{photo.name}", face=face)
    gallery.reload()
    return IdentityCreated(person=Gallery.label(identity), name=name, exemplars=len(photos),
                           imported=None, time=time.time())


def _rgb(source: Path | IO[bytes], *, max_side: int | None = None) -> ImageArray:
    """The pixels of an image file, turned upright as its EXIF says (phones rotate that way),
    scaled down to ``max_side``. Pictures of more than :data:`MAX_PHOTO_PIXELS` are refused
    before they are decoded (``DecompressionBombError``)."""
    with Image.open(source) as opened:
        if opened.width * opened.height > MAX_PHOTO_PIXELS:
            raise Image.DecompressionBombError(f"{opened.width}x{opened.height} pixels")
        if max_side is not None:
            opened.draft("RGB", (max_side, max_side))  # JPEG: decode at a fraction of the size
        image = ImageOps.exif_transpose(opened).convert("RGB")
        if max_side is not None:
            image.thumbnail((max_side, max_side))
        return np.array(image)


def _photo_face(worker: VisionWorker, photo: Photo) -> tuple[FloatArray, float, bytes]:
    """The embedding, quality and JPEG crop of the one good face of ``photo``."""
    image, label = photo.image, photo.label
    found = worker.process([Frame(0, 0.0, image)])[0]
    if len(found.faces) == 0:
        raise GalleryError(f"{label}: no face found; give a photo where the face is clearly "
                           "visible")
    if len(found.faces) > 1:
        raise GalleryError(f"{label}: {len(found.faces)} faces found; crop it to the one "
                           "person")
    if not found.good[0]:
        gate = worker.gate
        x1, y1, x2, y2 = found.faces.boxes[0]
        if min(x2 - x1, y2 - y1) < gate.min_face_px:
            why = "too small"
        elif found.brightness[0] < gate.min_brightness:
            why = "too dark"
        elif found.faces.scores[0] < gate.min_score:
            why = "not clear enough (turned away or covered?)"
        else:
            why = "too blurred"
        raise GalleryError(f"{label}: the face is {why}; give a closer, sharper, well-lit "
                           "photo of the face from the front")
    crop = face_crop(image, found.faces.boxes[0])
    return found.embeddings[0], float(found.quality[0]), jpeg_bytes(crop)


@dataclass(frozen=True)
class Imported:
    """What :func:`import_gallery` did: the people it created, and those it skipped (their ID
    there, their ID here) because this gallery holds them already (the same exemplars: an
    import of a backup of it, or a second import)."""

    created: list[IdentityCreated]
    present: list[tuple[str, str]]


def import_gallery(gallery: Gallery, path: Path) -> Imported:
    """Copy every person of the gallery file ``path`` into this gallery under new IDs, with
    their names, exemplars, faces, appearances and "not this person" marks; people this
    gallery already holds are skipped."""
    if path.resolve() == Path(gallery.store.location).resolve():
        raise GalleryError(f"{path} is this gallery; give another gallery file to import")
    other = open_file(path)
    try:
        if other.store.embedder != gallery.store.embedder:
            theirs, ours = other.store.embedder, gallery.store.embedder
            raise GalleryError(
                f"{path} was built with {theirs[0]} ({theirs[1]}), this gallery with {ours[0]} "
                f"({ours[1]}); convert it first: `facestream gallery {path} reembed "
                f"--embedder {ours[0]}`")
        rejections = other.store.rejections()
        # the very same vectors (bytes): a backup of this gallery, or one imported before
        held = {e.vector.tobytes(): e.identity for e in gallery.store.exemplars()}
        events, present = [], []
        with gallery.store.transaction():
            for record in other.store.identities():
                exemplars = other.store.exemplars(record.id)
                owners = {held.get(exemplar.vector.tobytes()) for exemplar in exemplars}
                owner = owners.pop() if len(owners) == 1 else None
                if owner is not None:
                    present.append((Gallery.label(record.id), Gallery.label(owner)))
                    continue
                new = gallery.store.create_identity(now=record.created)
                gallery.store.rename(new, record.name)
                gallery.store.seen(new, record.last_seen)
                for exemplar in exemplars:
                    gallery.store.add_exemplar(new, exemplar.vector, quality=exemplar.quality,
                                               source=exemplar.source, face=exemplar.face,
                                               now=exemplar.created)
                for appearance in other.store.appearances(record.id):
                    gallery.store.add_appearance(new, appearance.source, appearance.start,
                                                 appearance.end)
                for identity, vector in rejections:
                    if identity == record.id:
                        gallery.store.add_rejection(new, vector)
                events.append(IdentityCreated(
                    person=Gallery.label(new), name=record.name, exemplars=record.exemplars,
                    imported=Gallery.label(record.id), time=time.time()))
    finally:
        other.store.close()
    gallery.reload()
    return Imported(events, present)


def reembed(path: Path, worker: VisionWorker) -> int:
    """Recompute every exemplar of the gallery file ``path`` from its stored face with
    ``worker``'s embedder, and record that embedder, so the gallery opens with it. Exemplars
    without a face, or whose face is not found again, are removed: returns how many.

    The work is done on a copy that replaces the file at the end, so a crash leaves the old
    gallery as it was. The gallery must not be open elsewhere (its changes would be lost).
    """
    copy = path.with_name(f"{path.name}.reembed")
    _remove_database(copy)
    try:
        source = open_file(path)
        try:
            export_gallery(source, copy)
        finally:
            source.store.close()
        _require_unused(path)
        target = open_file(copy)
        try:
            removed = _reembed_store(target.store, worker)
        finally:
            target.store.close()
        _require_unused(path)
        copy.replace(path)
    finally:
        _remove_database(copy)
    return removed


def _reembed_store(store: GalleryStore, worker: VisionWorker) -> int:
    embedder = worker.embedder
    exemplars = store.exemplars()
    vectors = {exemplar.id: _face_vector(worker, exemplar.face) for exemplar in exemplars}
    with store.transaction():
        for exemplar, vector in vectors.items():
            if vector is None:
                store.remove_exemplar(exemplar)
            else:
                store.set_vector(exemplar, vector)
        if store.embedder != (embedder.name, embedder.version):
            store.clear_rejections()  # templates of the old embedder, with no face to redo
        store.set_embedder(embedder.name, embedder.version, embedder.dim)
    return sum(vector is None for vector in vectors.values())


def _face_vector(worker: VisionWorker, face: bytes | None) -> FloatArray | None:
    """The embedding of the face in the middle of a stored face crop, if one is found."""
    if not face:
        return None
    try:
        image = _rgb(io.BytesIO(face))
    except OSError:
        return None
    found = worker.process([Frame(0, 0.0, image)])[0]
    if len(found.faces) == 0:
        return None
    boxes = found.faces.boxes
    offsets = (boxes[:, :2] + boxes[:, 2:]) / 2 - np.asarray(image.shape[1::-1]) / 2
    vector: FloatArray = found.embeddings[int(np.argmin(np.linalg.norm(offsets, axis=1)))]
    return vector


def _require_unused(path: Path) -> None:
    # Closing the last connection removes the write-ahead log: one left means another process
    # has the gallery open.
    if Path(f"{path}-wal").exists():
        raise ConflictError(f"the gallery {path} is open in another process (a running "
                            "facestream?); stop it and try again")


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
