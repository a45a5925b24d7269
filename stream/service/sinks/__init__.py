"""Sinks: where events leave the service. Each is an async context manager (leaving it flushes
what is queued and closes the connection; leaving twice is harmless) whose :meth:`Sink.run`
delivers one bus subscription's events until that subscription is closed.

MQTT is a sink built from the ``mqtt:`` settings (:func:`build_sinks`), run by the service on one
subscription; a WebSocket client is a sink built per connection from the ``server:`` settings by
the ``/events`` endpoint (:mod:`stream.service.http.events`), one subscription each.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from stream.config import ServiceConfig
from stream.service.bus import Subscription
from stream.service.metrics import Metrics
from stream.service.sinks.mqtt import MqttSink

if TYPE_CHECKING:
    from stream.identity.gallery import Gallery

__all__ = ["Sink", "build_sinks"]


class Sink(Protocol):
    """A destination of events. ``consumer`` names its kind (the ``consumer`` label of its drops
    and queue depth); ``queue`` is the size of the subscription it is given."""

    consumer: str
    queue: int

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None: ...

    async def run(self, subscription: Subscription) -> None:
        """Deliver the subscription's events until it is closed and drained."""
        ...


def build_sinks(config: ServiceConfig, metrics: Metrics, gallery: Gallery) -> list[Sink]:
    """The sinks the configuration asks for, besides the WebSocket clients of ``/events``
    (call before the model thread uses ``gallery``)."""
    sinks: list[Sink] = []
    if config.mqtt is not None:
        people = {gallery.label(record.id): record.name
                  for record in gallery.store.identities()}
        sinks.append(MqttSink(config.mqtt, node=config.node, gallery=gallery.store.gallery_id,
                              cameras=[camera.name for camera in config.cameras], people=people,
                              metrics=metrics))
    return sinks
