"""The live service's configuration: pydantic models, every field described and bounded.

A YAML file (see ``configs/example.yaml``) or the command line fills :class:`ServiceConfig`.
Unknown keys and bad values are errors; loading from YAML names the line of the offending value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    raise ValueError(f"unsupported source {url!r}: use rtsp://, rtsps://, http(s)://, a "
                     "/dev/videoN webcam or a video file path")


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


class SourceSettings(_Strict):
    """How cameras are opened and retried."""

    connect_timeout_s: float = Field(10.0, gt=0, le=300, description="give up opening after")
    read_timeout_s: float = Field(10.0, gt=0, le=300, description="a stream silent this long "
                                  "is reconnected")
    backoff_initial_s: float = Field(1.0, gt=0, le=60, description="first wait before a retry")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="longest wait between retries")

    @model_validator(mode="after")
    def _backoff(self) -> SourceSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self


class EngineSettings(_Strict):
    """The models and the device."""

    embedder: Literal["dlib-resnet", "facenet-vggface2", "facenet-casia"] | None = Field(
        None, description="face embedder (default: facenet-vggface2 when cached, else "
        "dlib-resnet)")
    weights: Path | None = Field(None, description="local weights file for the embedder")
    allow_download: bool = Field(False, description="let facenet weights be downloaded")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                        description="auto, cpu, cuda or cuda:N")
    detect_width: int | None = Field(640, ge=64, le=8192, description="frames are scaled to "
                                     "this width for detection (null: full size)")
    threshold: float | None = Field(None, gt=0, lt=2, description="identity distance threshold "
                                    "(null: the embedder's calibrated one)")
    max_batch_frames: int = Field(8, ge=1, le=64, description="frames batched through the "
                                  "models at once, across cameras")


class EventSettings(_Strict):
    """When appearance events are sent."""

    left_after_s: float = Field(3.0, gt=0, le=3600, description="a person not seen on a "
                                "camera for this long has left it")
    update_interval_s: float = Field(5.0, gt=0, le=3600, description="at most one "
                                     "person.updated per person and camera this often")
    thumbnail_px: int = Field(96, ge=32, le=512, description="side of event thumbnails")
    replay: int = Field(100, ge=0, le=10000, description="recent events kept to replay to new "
                        "WebSocket clients")


class ServerSettings(_Strict):
    """The HTTP server: /events (WebSocket), /healthz, /metrics."""

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: all)")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: any free port)")
    token: SecretStr | None = Field(None, description="shared token required on every request "
                                    "(Authorization: Bearer, or ?token=)")
    client_queue: int = Field(256, ge=1, le=100000, description="events buffered per WebSocket "
                              "client; a slow client loses its oldest")
    ping_interval_s: float = Field(10.0, gt=0, le=600, description="WebSocket ping period")
    ping_timeout_s: float = Field(10.0, gt=0, le=600, description="a client that does not "
                                  "answer a ping within this is disconnected")


class TlsSettings(_Strict):
    """TLS for the MQTT connection."""

    ca_file: Path | None = Field(None, description="CA certificates (null: the system's)")
    cert_file: Path | None = Field(None, description="client certificate")
    key_file: Path | None = Field(None, description="client key")
    insecure: bool = Field(False, description="skip the broker's hostname check")


class MqttSettings(_Strict):
    """The MQTT publisher (aiomqtt)."""

    url: str = Field(description="mqtt://host:port or mqtts://host:port (TLS)")
    client_id: str = Field("facestream", min_length=1, max_length=64)
    username: str | None = None
    password: SecretStr | None = None
    qos: Literal[0, 1, 2] = Field(1, description="QoS of every message")
    topic_prefix: str = Field("facestream", pattern=r"^[^#+]+$", description="topics: "
                              "<prefix>/<camera>/events, <prefix>/persons/<id>, <prefix>/status")
    keepalive_s: int = Field(30, ge=5, le=3600)
    tls: TlsSettings | None = Field(None, description="TLS settings (implied by mqtts://)")
    queue: int = Field(1000, ge=1, le=1000000, description="events buffered while the broker "
                       "is away; the oldest are dropped beyond this")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"MQTT url {value!r} must look like mqtt://host:1883 or "
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


class ServiceConfig(_Strict):
    """Everything ``facestream run`` needs."""

    cameras: list[CameraConfig] = Field(min_length=1, description="the video sources")
    sources: SourceSettings = SourceSettings()
    engine: EngineSettings = EngineSettings()
    events: EventSettings = EventSettings()
    server: ServerSettings = ServerSettings()
    mqtt: MqttSettings | None = Field(None, description="null: no MQTT")

    @model_validator(mode="after")
    def _unique_names(self) -> ServiceConfig:
        names = [camera.name for camera in self.cameras]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"camera names must be unique; repeated: {', '.join(duplicates)}")
        return self
