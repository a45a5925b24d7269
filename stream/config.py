"""The live service's configuration: pydantic models, every field described and bounded.

A YAML file (see ``configs/example.yaml``) or the command line fills :class:`ServiceConfig`.
Unknown keys and bad values are errors; loading from YAML names the line of the offending value.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Self, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from stream.errors import ConfigError
from stream.retry import Backoff
from stream.vision.embedders import EMBEDDERS, OFFLINE, PREFERRED

CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NODE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _none_if_empty(value: object) -> object:
    # `password: ${MQTT_PASSWORD:-}` leaves "" when the variable is unset: that means no password.
    return None if value == "" else value


def redact_url(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***``, for logs and statuses."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, _, host = parts.netloc.rpartition("@")
    user = user_info.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def source_kind(url: str) -> Literal["network", "webcam", "file"]:
    """What kind of source ``url`` names: a network stream, a webcam device or a file.

    Raises ``ValueError`` for a scheme facestream cannot open.
    """
    if url.startswith("/dev/video"):
        return "webcam"
    scheme = urlsplit(url).scheme.lower()
    if scheme in NETWORK_SCHEMES:
        return "network"
    if scheme in ("", "file") or re.match(r"^[A-Za-z]:[\\/]", url):
        return "file"
    raise ValueError(f"unsupported source {redact_url(url)!r}: use rtsp://, rtsps://, "
                     "http(s)://, a /dev/videoN webcam or a video file path")


class CameraConfig(_Strict):
    """One video source watched by the service."""

    name: str = Field(description="camera name, used in events and MQTT topics "
                      "(letters, digits, _ and -)")
    url: str = Field(description="rtsp://, rtsps://, http(s):// (HLS too), /dev/videoN or a "
                     "video file path")
    sample_fps: float = Field(5.0, gt=0, le=60, description="frames analysed per second")
    realtime: bool = Field(True, description="files only: play at the file's own frame rate "
                           "(false: decode as fast as possible, newest frame wins)")
    loop: bool = Field(False, description="files only: start again at the end")
    drop: bool = Field(True, description="a frame the models have not taken yet is replaced by "
                       "a newer one (false, files only: the decoder waits for the models, so "
                       "every sampled frame is analysed, as `facestream analyze` does)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CAMERA_NAME.match(value):
            raise ValueError(f"camera name {value!r} may only hold letters, digits, _ and - "
                             "(1 to 64 of them)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        source_kind(value)
        return value

    @property
    def kind(self) -> Literal["network", "webcam", "file"]:
        return source_kind(self.url)

    @model_validator(mode="after")
    def _lossless_files_only(self) -> CameraConfig:
        if not self.drop and self.kind != "file":
            raise ValueError(f"camera {self.name}: drop: false is for files only; a live source "
                             "cannot wait for the models")
        return self


class _Retrying(_Strict):
    """The backoff settings of anything that reconnects: cameras and the MQTT broker."""

    backoff_initial_s: float = Field(1.0, gt=0, le=60, description="first wait before a retry")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="longest wait between retries")

    @model_validator(mode="after")
    def _backoff(self) -> Self:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self

    def backoff(self) -> Backoff:
        """A fresh backoff with these settings (doubling, jittered down to half)."""
        return Backoff(self.backoff_initial_s, self.backoff_max_s)


class SourceSettings(_Retrying):
    """How cameras are opened and retried."""

    connect_timeout_s: float = Field(10.0, gt=0, le=300, description="give up opening after")
    read_timeout_s: float = Field(10.0, gt=0, le=300, description="a stream silent this long "
                                  "is reconnected")


# Where the networks run (stream.vision.backends): auto picks the faster one of the device.
Backend = Literal["auto", "torch", "onnx"]
# Where video is decoded (stream.sources.hardware_decoding): auto is the GPU the models run on.
Decoder = Literal["auto", "cpu", "cuda"]


class GateSettings(_Strict):
    """The quality gate: what a face needs to create a person or to confirm one."""

    min_score: float = Field(0.95, ge=0.5, le=1, description="detection score: surely a face "
                             "(hands and clothes score lower); faces under it never make an "
                             "event")
    min_face_px: int = Field(40, ge=12, le=4096, description="shorter side of the face box, in "
                             "frame pixels")
    min_sharpness: float = Field(3.0, ge=0, le=10000, description="variance of the Laplacian "
                                 "of the face's centre (grey levels 0..255)")
    relative_sharpness: float = Field(0.4, ge=0, le=1, description="and at least this share "
                                      "of the source's typical face sharpness: a focus or "
                                      "motion blur fails, a uniformly soft video does not")
    min_brightness: float = Field(45.0, ge=0, le=255, description="mean grey level of the "
                                  "face's centre (0..255)")


class RecallSettings(_Strict):
    """Faces short of the gate, smaller or softer, that may still join a person already known
    (never create one), when a track has enough of them and they are clearly that person."""

    min_face_px: int = Field(20, ge=12, le=4096, description="shorter side of the face box, "
                             "in frame pixels")
    relative_sharpness: float = Field(0.2, ge=0, le=1, description="share of the source's "
                                      "typical face sharpness")
    faces: int = Field(6, ge=1, le=1000, description="such faces (or better) a track needs "
                       "before it may join a person")
    under: float = Field(0.06, ge=0, lt=1, description="their template must be this much "
                         "nearer the person than the threshold")


class EngineSettings(_Strict):
    """The models, the device and the face quality needed for identities."""

    embedder: str | None = Field(
        None, description=f"face embedder: {', '.join(EMBEDDERS)} (default: {PREFERRED} when "
        f"cached, else {OFFLINE})")
    weights: Path | None = Field(None, description="local weights file for the embedder")
    allow_download: bool = Field(False, description="let facenet weights be downloaded")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                        description="auto, cpu, cuda or cuda:N")
    detect_width: int | None = Field(640, ge=64, le=8192, description="frames are scaled to "
                                     "this width for detection (null: full size)")
    min_face_px: int = Field(40, ge=12, le=4096, description="the smallest face the detector "
                             "looks for (shorter side, frame pixels); it still finds many a "
                             "little smaller, never under 12 pixels at detect_width")
    gate: GateSettings = GateSettings()
    recall: RecallSettings = RecallSettings()
    threshold: float | None = Field(None, gt=0, lt=2, description="identity distance threshold "
                                    "(null: the embedder's calibrated one)")
    max_batch_frames: int = Field(8, ge=1, le=64, description="frames in the models at once: a "
                                  "file's batches; live, all cameras' frames together (on the "
                                  "CPU each core takes a camera's, on a GPU one batch)")
    backend: Backend = Field(
        "auto", description="where the networks run: torch, or onnx (ONNX Runtime on their "
        "exported files); auto: the faster one measured on the device")
    # The CPU by default until NVDEC has been measured on a GPU (none was lent so far).
    decoder: Decoder = Field(
        "cpu", description="where video is decoded: cpu, cuda (NVDEC, through PyAV's FFmpeg), "
        "or auto: NVDEC when the models run on a CUDA device and it works there, else the CPU "
        "(codecs NVDEC lacks are decoded on the CPU either way)")
    full_detection_every_s: float | None = Field(
        0.5, gt=0, le=10, description="between full-frame detections at most this far apart, "
        "a source's frames are searched only near the faces of its frame before when that was "
        "at most 0.15 s earlier (analyze's 10 fps; not a camera's 5) and nothing changed "
        "elsewhere: a third to half less CPU; null: every frame gets a full detection")
    cpu_threads: int | None = Field(
        None, ge=1, le=256, description="on the CPU, a batch's frames are detected and its faces "
        "embedded on this many threads side by side, and each ONNX network runs on as many; "
        "null: the cores this process may use (a GPU is fed by one thread)")

    @field_validator("embedder")
    @classmethod
    def _embedder(cls, name: str | None) -> str | None:
        if name is not None and name not in EMBEDDERS:
            raise ValueError(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}")
        return name

    @model_validator(mode="after")
    def _recall_below_gate(self) -> EngineSettings:
        gate, recall = self.gate, self.recall
        if recall.min_face_px > gate.min_face_px:
            raise ValueError(f"recall.min_face_px ({recall.min_face_px}) must be at most "
                             f"gate.min_face_px ({gate.min_face_px}): recall takes faces the "
                             "gate refuses")
        if recall.relative_sharpness > gate.relative_sharpness:
            raise ValueError(f"recall.relative_sharpness ({recall.relative_sharpness}) must be "
                             f"at most gate.relative_sharpness ({gate.relative_sharpness})")
        return self


class GallerySettings(_Strict):
    """The persistent gallery: who has been seen, across runs."""

    path: Path | None = Field(None, description="the gallery file (SQLite); created when "
                              "missing")
    url: str | None = Field(None, pattern=r"^postgres(ql)?://", description=(
        "instead of path: a gallery shared by several nodes, in PostgreSQL with pgvector "
        "(postgresql://USER@HOST:PORT/DB; the password from $PGPASSWORD or ~/.pgpass, never in "
        "the URL)"))
    retention_days: float | None = Field(None, gt=0, le=36500, description="unnamed people "
                                         "not seen for this many days are removed (null: "
                                         "kept for ever)")

    @model_validator(mode="after")
    def _one_location(self) -> Self:
        if (self.path is None) == (self.url is None):
            raise ValueError("give the gallery's path or its url, one of them")
        if self.url is not None and urlsplit(self.url).password is not None:
            raise ValueError("the gallery url holds a password: take it out, and give it in "
                             "$PGPASSWORD or a password file (~/.pgpass)")
        return self

    @property
    def location(self) -> Path | str:
        """Where the gallery is: its file, or its database's URL."""
        if self.url is not None:
            return self.url
        assert self.path is not None  # one of them: _one_location
        return self.path


class EventSettings(_Strict):
    """When appearance events are sent."""

    left_after_s: float = Field(1.5, gt=0, le=3600, description="a person not seen on a "
                                "camera (or in a file) for this long has left it: shorter "
                                "absences do not split an appearance")
    update_interval_s: float = Field(5.0, gt=0, le=3600, description="at most one "
                                     "person.updated per person and camera this often")
    thumbnail_px: int = Field(96, ge=32, le=512, description="side of event thumbnails")
    replay: int = Field(100, ge=0, le=10000, description="recent events kept to replay to new "
                        "WebSocket clients")


class ServerSettings(_Strict):
    """The HTTP server: /events (WebSocket), /healthz, /metrics, the REST API and the dashboard.

    ``token_file`` is read when the settings are loaded: its first line becomes ``token``.
    """

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: all; without "
                      "a token only with allow_open)")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: any free port)")
    token: SecretStr | None = Field(None, description="shared token required on every request "
                                    "(Authorization: Bearer, or ?token=)")
    token_file: Path | None = Field(None, description="file holding the token (not visible in "
                                    "the process list, unlike --token); instead of token")
    allow_open: bool = Field(False, description="listen on a non-loopback address without a "
                             "token: anyone who reaches it sees the faces and changes the gallery")
    allowed_origins: list[str] = Field(default_factory=list, description="other web origins "
                                       "(https://dash.example.com) whose pages may open /events "
                                       "and make changes; the service's own is always allowed")
    allowed_hosts: list[str] = Field(default_factory=list, description="host names clients may "
                                     "use in Host besides IP addresses, localhost and host "
                                     "(against DNS rebinding); * allows any")
    max_body_bytes: int = Field(16 * 2**20, ge=1024, le=2**30, description="larger request "
                                "bodies are refused (413) before they are read")
    client_queue: int = Field(256, ge=1, le=100000, description="events buffered per WebSocket "
                              "client; a slow client loses its oldest")
    ping_interval_s: float = Field(10.0, gt=0, le=600, description="WebSocket ping period")
    ping_timeout_s: float = Field(10.0, gt=0, le=600, description="a client that does not "
                                  "answer a ping within this is disconnected")

    @model_validator(mode="before")
    @classmethod
    def _token_from_file(cls, data: object) -> object:
        if not isinstance(data, dict) or _none_if_empty(data.get("token_file")) is None:
            return data
        if _none_if_empty(data.get("token")) is not None:
            raise ValueError("give token or token_file, not both")
        path = Path(data["token_file"])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise ValueError(f"cannot read the token file {path} ({reason}); give a readable "
                             "file holding the token") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise ValueError(f"the token file {path} is empty; put the token on its first line")
        return {**data, "token": token, "token_file": None}

    @field_validator("token", mode="before")
    @classmethod
    def _token(cls, value: object) -> object:
        return _none_if_empty(value)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or \
                    parts.path not in ("", "/") or parts.query or parts.username:
                raise ValueError(f"origin {origin!r} must look like https://host or "
                                 "http://host:port (no path)")
        return [origin.rstrip("/").lower() for origin in value]

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not re.fullmatch(r"\*|[A-Za-z0-9.-]+", host):
                raise ValueError(f"host {host!r} must be a host name such as cams.example.com "
                                 "(no port or scheme), or *")
        return [host.lower().rstrip(".") for host in value]


class TlsSettings(_Strict):
    """TLS for the MQTT connection."""

    ca_file: Path | None = Field(None, description="CA certificates (null: the system's)")
    cert_file: Path | None = Field(None, description="client certificate")
    key_file: Path | None = Field(None, description="client key")
    insecure: bool = Field(False, description="skip the broker's hostname check")


class MqttSettings(_Retrying):
    """The MQTT publisher (aiomqtt); the backoff spaces reconnections to the broker."""

    url: str = Field(description="mqtt://host:port or mqtts://host:port (TLS)")
    client_id: str | None = Field(None, min_length=1, max_length=64, description="one per "
                                  "connection to the broker; null: facestream-<node>")
    username: str | None = None
    password: SecretStr | None = None
    qos: Literal[0, 1, 2] = Field(1, description="QoS of every message")
    topic_prefix: str = Field("facestream", pattern=r"^[^#+]+$", description="the first level "
                              "of every topic (see stream.service.sinks.mqtt)")
    gallery_name: str | None = Field(None, description="names the gallery in "
                                     "<prefix>/<gallery>/persons/<id>; null: the gallery's own "
                                     "ID")
    discovery: bool = Field(False, description="publish Home Assistant MQTT discovery configs")
    discovery_prefix: str = Field("homeassistant", pattern=r"^[^#+]+$",
                                  description="Home Assistant's discovery prefix")
    snapshots: bool = Field(False, description="publish the best face of each appearance as "
                            "JPEG on <prefix>/<camera>/<id>/snapshot")
    snapshot_retain: bool = Field(False, description="retain the snapshots")
    keepalive_s: int = Field(30, ge=5, le=3600)
    tls: TlsSettings | None = Field(None, description="TLS settings (implied by mqtts://)")
    queue: int = Field(1000, ge=1, le=1000000, description="events buffered while the broker "
                       "is away; the oldest are dropped beyond this")

    @field_validator("username", "password", "gallery_name", mode="before")
    @classmethod
    def _credentials(cls, value: object) -> object:
        return _none_if_empty(value)

    @field_validator("gallery_name")
    @classmethod
    def _gallery_name(cls, value: str | None) -> str | None:
        if value is not None and not CAMERA_NAME.match(value):
            raise ValueError(f"gallery name {value!r} may only hold letters, digits, _ and - "
                             "(1 to 64 of them)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"MQTT url {redact_url(value)!r} must look like mqtt://host:1883 or "
                             "mqtts://host:8883")
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def use_tls(self) -> bool:
        return self.tls is not None or urlsplit(self.url).scheme == "mqtts"


class AnalyzeConfig(_Strict):
    """Everything ``facestream analyze`` needs besides the video and the output directory: the
    same engine, appearance and gallery settings as ``facestream run``."""

    sample_fps: float | None = Field(10.0, gt=0, le=120, description="frames analysed per "
                                     "second of video (null: every frame); a file is not "
                                     "watched live, so it affords more than a camera's 5")
    engine: EngineSettings = EngineSettings()
    events: EventSettings = EventSettings()
    gallery: GallerySettings | None = Field(None, description="null: identities live only as "
                                            "long as the run")
    refine: bool = Field(True, description="after the whole video, join the identities it shows "
                         "are one person (the report's second look); false: the report says "
                         "what `facestream run` would")


def default_node() -> str:
    """This machine's host name as a node name (a character a node name cannot hold becomes -)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "facestream"


class ServiceConfig(_Strict):
    """Everything ``facestream run`` needs."""

    cameras: list[CameraConfig] = Field(min_length=1, description="the video sources")
    sources: SourceSettings = SourceSettings()
    engine: EngineSettings = EngineSettings()
    events: EventSettings = EventSettings()
    server: ServerSettings = ServerSettings()
    mqtt: MqttSettings | None = Field(None, description="null: no MQTT")
    gallery: GallerySettings | None = Field(None, description="null: identities live only as "
                                            "long as the process")
    node: str = Field(default_factory=default_node, description="this process's name in "
                      "every event and in <prefix>/status/<node>; default: the host name")

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        if not NODE_NAME.match(value):
            raise ValueError(f"node name {value!r} may only hold letters, digits, _, - and . "
                             "(1 to 64 of them)")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> ServiceConfig:
        names = [camera.name for camera in self.cameras]
        for index, name in enumerate(names):
            if name in names[:index]:
                # "index" in the context lets load_config point at the repeated name's line.
                raise PydanticCustomError(
                    "duplicate_camera_name",
                    f"camera name {name!r} is already used by cameras[{names.index(name)}]; "
                    "give each camera its own name", {"index": index})
        return self


# --- loading from YAML ---------------------------------------------------------------------------

_Loc = tuple[int | str, ...]
_Problem = tuple[int, str]  # (1-based line, "where: what")
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
# "$${" is a literal "${"; "${NAME}" or "${NAME:-default}" is a variable; any other "${" is a typo.
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^{}]*))?\}|\$\{")


def load_config(path: Path) -> ServiceConfig:
    """Read and validate the YAML configuration file at ``path``.

    String values may hold ``${VAR}`` or ``${VAR:-default}`` (the default also replaces an
    empty variable); ``$${`` stands for a literal ``${``. Raises :class:`ConfigError` naming
    the file and the line of every problem found.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file; check the path "
                          "(configs/example.yaml is a documented example)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration file is not UTF-8 text; save it as "
                          "UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror}); "
                          "check that it is a readable file") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_message(path, exc)) from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL_TAG):
        raise ConfigError(f"{path}: the configuration file is empty; it needs at least a "
                          "cameras: list (see configs/example.yaml)")
    if not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        raise ConfigError(f"{path} line {_line(root)}: the top level is {kind}; it must be a "
                          "mapping of sections such as cameras:, engine: and server:")

    problems: list[_Problem] = []
    _prepare(root, (), set(), problems)
    if problems:
        raise ConfigError(_report(path, problems))
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_message(path, exc)) from None
    finally:
        loader.dispose()
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_report(path, [_problem(root, error) for error in exc.errors()])) \
            from None


def _prepare(node: yaml.Node, loc: _Loc, seen: set[int], problems: list[_Problem]) -> None:
    """Substitute environment variables in string scalars and find repeated keys, in place."""
    if id(node) in seen:  # an alias: the anchored node is done already
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
        try:
            node.value = _expand(node.value)
        except ValueError as exc:
            problems.append((_line(node), f"{_where(loc)}: {exc}"))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _prepare(item, (*loc, index), seen, problems)
    elif isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            if name in first:
                problems.append((_line(key), f"{_where((*loc, name))}: repeated key (first on "
                                 f"line {first[name]}); keep only one"))
            first.setdefault(name, _line(key))
            _prepare(value, (*loc, name), seen, problems)


def _expand(value: str) -> str:
    """``value`` with its ``${VAR}``, ``${VAR:-default}`` and ``$${`` replaced."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if match.group(0) == "$${":
            return "${"
        if name is None:
            raise ValueError("malformed ${...}: write ${NAME} or ${NAME:-default}, or $${ for "
                             "a literal ${")
        if default is not None:
            return os.environ.get(name) or default
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set; set it or give a "
                             f"default as ${{{name}:-default}}")
        return os.environ[name]

    return _ENV.sub(replace, value)


def _problem(root: yaml.Node, error: ErrorDetails) -> _Problem:
    """One pydantic error as (line, "where: what")."""
    loc: _Loc = tuple(error["loc"])
    if error["type"] == "duplicate_camera_name" and "ctx" in error:
        loc = ("cameras", error["ctx"]["index"], "name")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        known = list(_model_at(loc[:-1]).model_fields)
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
        message = f"unknown key (known: {', '.join(known)})"
        if guess:
            message += f"; did you mean {guess[0]}?"
    elif error["type"] == "missing":
        message = "required key is missing; add it"
    return _line_at(root, loc), f"{_where(loc)}: {message}"


def _line_at(root: yaml.Node, loc: _Loc) -> int:
    """The line of the node at ``loc``, or of its nearest parent in the file.

    A mapping entry is named by its key's line: an empty value has no line of its own.
    """
    node, line = root, _line(root)
    for item in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(item, int) \
                and 0 <= item < len(node.value):
            node = node.value[item]
            line = _line(node)
        elif isinstance(node, yaml.MappingNode):
            entry = next(((key, value) for key, value in node.value
                          if isinstance(key, yaml.ScalarNode) and key.value == str(item)), None)
            if entry is None:
                break
            node, line = entry[1], _line(entry[0])
        else:
            break
    return line


def _model_at(loc: _Loc) -> type[BaseModel]:
    """The model that validates the mapping at ``loc`` (:class:`ServiceConfig` when unknown)."""
    annotation: Any = ServiceConfig
    for item in loc:
        annotation = _unwrap(annotation)
        if isinstance(item, int) and get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        elif isinstance(item, str) and _is_model(annotation) and item in annotation.model_fields:
            annotation = annotation.model_fields[item].annotation
        else:
            return ServiceConfig
    annotation = _unwrap(annotation)
    return annotation if _is_model(annotation) else ServiceConfig


def _unwrap(annotation: Any) -> Any:
    """``X`` for ``X | None``, else ``annotation``."""
    if get_origin(annotation) in (Union, UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return get_origin(annotation) is None and isinstance(annotation, type) \
        and issubclass(annotation, BaseModel)


def _where(loc: _Loc) -> str:
    """``("cameras", 0, "url")`` as ``cameras[0].url``."""
    text = "".join(f"[{item}]" if isinstance(item, int) else f".{item}" for item in loc)
    return text.removeprefix(".") or "top level"


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _report(path: Path, problems: list[_Problem]) -> str:
    lines = [f"{path} line {line}: {text}" for line, text in sorted(problems,
                                                                      key=lambda p: p[0])]
    if len(lines) == 1:
        return lines[0]
    return "\n".join([f"{path}: {len(lines)} problems", *lines])


def _yaml_message(path: Path, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return (f"{path} line {exc.problem_mark.line + 1}: invalid YAML: {exc.problem}; fix the "
                "syntax there (quote values that hold ': ' or ' #')")
    return f"{path}: invalid YAML ({exc}); fix the file's syntax"
