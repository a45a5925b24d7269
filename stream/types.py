"""Plain data passed between the stages: frozen dataclasses holding numpy arrays, and the
events the pipeline publishes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Annotated, ClassVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
ImageArray = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Frame:
    """One decoded video frame: its 0-based index in decode order, its time and its RGB pixels."""

    index: int
    t: float
    image: ImageArray  # (H, W, 3) uint8, RGB
    # A smaller copy for the detector, made by the decoder's scaler when it knows the size
    detect_image: ImageArray | None = None
    captured_at: float | None = None  # wall clock (time.time()) when a live source decoded it
    # The picture does not continue the previous frame (a file looped, a camera reconnected):
    # no face may continue a track across it by overlap alone.
    discontinuity: bool = False

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Faces:
    """The faces found in one frame, one array per field; never ``None`` for "no faces"."""

    boxes: FloatArray  # (N, 4) x1, y1, x2, y2 in frame pixels
    scores: FloatArray  # (N,)
    landmarks: FloatArray  # (N, 5, 2): left eye, right eye, nose, left mouth, right mouth

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,):
            raise ValueError(f"Faces needs boxes (N, 4) and scores (N,), got {self.boxes.shape}"
                             f" and {self.scores.shape}")
        if self.landmarks.shape != (n, 5, 2):
            raise ValueError(f"Faces needs landmarks (N, 5, 2), got {self.landmarks.shape}")

    @classmethod
    def empty(cls) -> Faces:
        """No faces."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Faces:
        """The faces chosen by a boolean mask or an index array."""
        return Faces(self.boxes[keep], self.scores[keep], self.landmarks[keep])

    def scaled(self, factor: float) -> Faces:
        """The same faces with coordinates multiplied by ``factor`` (to map back to full size)."""
        return Faces(self.boxes * factor, self.scores, self.landmarks * factor)


@dataclass(frozen=True)
class GateMiss:
    """The first limit of the quality gate a face missed: which (``score``, ``size`` (the
    shorter side, pixels), ``sharpness`` or ``brightness``), the face's value and the limit."""

    check: str
    value: float
    limit: float


# Events: what the live service publishes and the file report is built from. Built by pure
# stages with plain numbers (wall-clock seconds, face crops as pixels); ``stream.codec`` turns
# them into JSON (ISO times, base64 JPEG) once, at the sinks.

class Wire(Enum):
    """How a field that is not plain JSON is written on the wire."""

    TIMESTAMP = "ISO 8601 UTC with milliseconds"
    JPEG = "JPEG, base64"


Timestamp = Annotated[float, Wire.TIMESTAMP]  # wall clock, seconds since the epoch
Jpeg = Annotated[ImageArray, Wire.JPEG]  # a face crop; a square thumbnail on the wire
Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels


@dataclass(frozen=True)
class PersonAppeared:
    """A person's appearance on a camera began (with the track's best face so far)."""

    kind: ClassVar[str] = "person.appeared"
    camera: str
    person: str
    name: str | None  # the person's name in the gallery; null when unnamed
    appearance: str  # the appearance's ID (see ``stream.pipeline.appearances.appearance_id``)
    new: bool  # the identity was created for this appearance
    frame_time: float  # of the sighting, on the camera's timeline (seconds)
    captured_at: Timestamp  # when the sighting's frame was decoded
    time: Timestamp  # when the event was made
    box: Box
    score: float
    # The identity decision: the distance of the track's template to the person's nearest
    # exemplar, null when the track created the person; ``confidence`` is 1 - distance /
    # threshold, clipped to [0, 1] (1: identical, 0: at the match threshold; not a probability).
    distance: float | None
    confidence: float | None
    thumbnail: Jpeg
    latency_ms: float  # from decode to event
    seq: int = 0  # stamped by the bus


@dataclass(frozen=True)
class PersonUpdated:
    """An open appearance has a better face (``thumbnail``) or the face moved."""

    kind: ClassVar[str] = "person.updated"
    camera: str
    person: str
    name: str | None
    appearance: str
    frame_time: float
    captured_at: Timestamp
    time: Timestamp
    box: Box
    score: float
    distance: float | None  # of the decision of the track seen now (as in ``PersonAppeared``)
    confidence: float | None
    thumbnail: Jpeg | None  # only when the face is better than the last one sent
    latency_ms: float
    seq: int = 0


@dataclass(frozen=True)
class PersonLeft:
    """An appearance ended: the person was not seen for ``left_after_s`` (or the camera, the
    service or the person's identity ended)."""

    kind: ClassVar[str] = "person.left"
    camera: str
    person: str
    name: str | None
    appearance: str
    start: Timestamp  # the first face of the appearance
    end: Timestamp  # the last face of it
    duration_s: float
    start_frame_time: float  # the same two moments on the camera's timeline (seconds)
    end_frame_time: float
    thumbnail: Jpeg  # the best face of the appearance
    quality: float  # of that face (higher is better)
    distance: float | None  # the closest decision of the appearance's tracks (null: none
    confidence: float | None  # matched, they created the person); as in ``PersonAppeared``
    time: Timestamp
    seq: int = 0


@dataclass(frozen=True)
class CameraStatusChanged:
    """A camera connected, streams, reconnects (in ``retry_in_s``), failed or stopped."""

    kind: ClassVar[str] = "camera.status"
    camera: str
    status: str
    reason: str | None
    time: Timestamp
    retry_in_s: float | None = None
    seq: int = 0


@dataclass(frozen=True)
class EventsDropped:
    """Sent to one consumer that fell behind: it lost this many events (never stamped)."""

    kind: ClassVar[str] = "events.dropped"
    dropped: int
    time: Timestamp
    seq: int = 0


@dataclass(frozen=True)
class IdentityCreated:
    """A person was enrolled from photos, or imported from another gallery."""

    kind: ClassVar[str] = "identity.created"
    person: str
    name: str | None
    exemplars: int
    imported: str | None  # their ID in the gallery they were imported from
    time: Timestamp
    seq: int = 0


@dataclass(frozen=True)
class IdentityRenamed:
    kind: ClassVar[str] = "identity.renamed"
    person: str
    name: str | None
    time: Timestamp
    seq: int = 0


@dataclass(frozen=True)
class IdentityMerged:
    """``merged`` is now ``person``: its ID is gone."""

    kind: ClassVar[str] = "identity.merged"
    person: str
    merged: str
    time: Timestamp
    seq: int = 0


@dataclass(frozen=True)
class IdentitySplit:
    """Exemplars and appearances of ``person`` became the new person ``new_person``."""

    kind: ClassVar[str] = "identity.split"
    person: str
    new_person: str
    exemplars: tuple[int, ...]
    appearances: tuple[int, ...]
    time: Timestamp
    seq: int = 0


@dataclass(frozen=True)
class IdentityDeleted:
    """A person was removed (``forgotten``: and erased from the file for privacy)."""

    kind: ClassVar[str] = "identity.deleted"
    person: str
    forgotten: bool
    time: Timestamp
    seq: int = 0


@dataclass(frozen=True)
class IdentityRejected:
    """"Not this person": ``tracks`` on ``camera`` were not ``person`` and are decided again."""

    kind: ClassVar[str] = "identity.rejected"
    person: str
    camera: str
    tracks: int
    time: Timestamp
    seq: int = 0


Event = (PersonAppeared | PersonUpdated | PersonLeft | CameraStatusChanged | EventsDropped
         | IdentityCreated | IdentityRenamed | IdentityMerged | IdentitySplit | IdentityDeleted
         | IdentityRejected)
EVENT_TYPES: tuple[type[Event], ...] = (
    PersonAppeared, PersonUpdated, PersonLeft, CameraStatusChanged, EventsDropped,
    IdentityCreated, IdentityRenamed, IdentityMerged, IdentitySplit, IdentityDeleted,
    IdentityRejected)
