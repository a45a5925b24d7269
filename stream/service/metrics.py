"""Prometheus metrics of the live service, in a registry of its own (served at ``/metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream.sources import Camera

CAMERA_STATES = ("connecting", "streaming", "reconnecting", "refused", "failed", "stopped")


class _CameraCollector(Collector):
    """Reads the cameras' own counters at scrape time (the decoder threads keep them)."""

    def __init__(self, cameras: Callable[[], Sequence[Camera]]) -> None:
        self._cameras = cameras

    def collect(self) -> Iterator[Metric]:
        decoded = CounterMetricFamily("facestream_frames_decoded", "Frames decoded",
                                      labels=["camera"])
        sampled = CounterMetricFamily("facestream_frames_sampled", "Frames due for analysis",
                                      labels=["camera"])
        dropped = CounterMetricFamily("facestream_frames_dropped", "Sampled frames replaced by a "
                                      "newer one before the models took them", labels=["camera"])
        reconnects = CounterMetricFamily("facestream_camera_reconnects", "Reconnections",
                                         labels=["camera"])
        waiting = GaugeMetricFamily("facestream_frames_waiting", "Frames waiting for the models "
                                    "(0 or 1 per camera: the newest wins)", labels=["camera"])
        state = GaugeMetricFamily("facestream_camera_state", "1 for the camera's current state",
                                  labels=["camera", "state"])
        for camera in self._cameras():
            stats, name = camera.stats, camera.name
            decoded.add_metric([name], stats.frames_decoded)
            sampled.add_metric([name], stats.frames_sampled)
            dropped.add_metric([name], stats.frames_dropped)
            reconnects.add_metric([name], stats.reconnects)
            waiting.add_metric([name], float(camera.waiting))
            for value in CAMERA_STATES:
                state.add_metric([name, value], float(stats.state == value))
        yield from (decoded, sampled, dropped, reconnects, waiting, state)


class _QueueCollector(Collector):
    """Reads the consumers' queue depths at scrape time."""

    def __init__(self, depths: Callable[[], Mapping[str, int]]) -> None:
        self._depths = depths

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("facestream_event_queue_depth", "Events waiting in consumer "
                                  "queues", labels=["consumer"])
        for consumer, waiting in self._depths().items():
            depth.add_metric([consumer], float(waiting))
        yield depth


class _SearchCollector(Collector):
    """Reads where the gallery's searches were answered at scrape time."""

    def __init__(self, searches: Callable[[], Mapping[str, int]]) -> None:
        self._searches = searches

    def collect(self) -> Iterator[Metric]:
        searches = CounterMetricFamily("facestream_gallery_searches", "Gallery searches by where "
                                       "they were answered: the local index, or the store while "
                                       "the index was behind others' changes", labels=["by"])
        for by, count in self._searches().items():
            searches.add_metric([by], count)
        yield searches


class Metrics:
    """Every metric the service exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_analyzed = Counter("facestream_frames_analyzed", "Frames the models analysed",
                                       ["camera"], registry=r)
        self.faces = Counter("facestream_faces", "Faces detected", ["camera"], registry=r)
        self.identities = Gauge("facestream_identities", "Identities in the gallery", registry=r)
        self.open_appearances = Gauge("facestream_open_appearances",
                                      "People currently present on a camera", registry=r)
        self.model_seconds = Histogram("facestream_model_seconds", "Time of one batch through "
                                       "the models", registry=r,
                                       buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2))
        self.batch_frames = Histogram("facestream_batch_frames", "Frames per model batch",
                                      registry=r, buckets=(1, 2, 4, 8, 16, 32, 64))
        self.events = Counter("facestream_events", "Events published", ["type"], registry=r)
        self.event_latency = Histogram(
            "facestream_event_latency_seconds", "From a frame's capture to its event's publication",
            registry=r, buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0))
        self.ws_clients = Gauge("facestream_websocket_clients", "Connected WebSocket clients",
                                registry=r)
        self.events_dropped = Counter("facestream_events_dropped", "Events a consumer lost "
                                      "because it fell behind", ["consumer"], registry=r)
        self.persistence_failures = Counter("facestream_persistence_failures", "Writes to the "
                                            "gallery that failed (they are retried)", registry=r)
        self.persistence_failing = Gauge("facestream_persistence_failing", "1 while the gallery "
                                         "refuses writes (a full disk)", registry=r)
        self.mqtt_connected = Gauge("facestream_mqtt_connected", "1 while connected to the MQTT "
                                    "broker", registry=r)

    def watch_cameras(self, cameras: Callable[[], Sequence[Camera]]) -> None:
        """Export the cameras' counters and states."""
        self.registry.register(_CameraCollector(cameras))

    def watch_queues(self, depths: Callable[[], Mapping[str, int]]) -> None:
        """Export the events waiting in consumers' queues (``depths``: per consumer)."""
        self.registry.register(_QueueCollector(depths))

    def watch_searches(self, searches: Callable[[], Mapping[str, int]]) -> None:
        """Export where the gallery's searches were answered (``searches``: count by where)."""
        self.registry.register(_SearchCollector(searches))

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
