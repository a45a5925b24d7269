"""Fan-out of events to every consumer (WebSocket clients, MQTT), each with its own bounded queue.

Call everything here from the event loop's thread. A consumer that falls behind loses its oldest
events, never slows the publisher or the other consumers, and is told how many it lost. Events
stay typed up to the sinks; each is encoded to JSON once, here, for all of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from stream.codec import Document, EventEncoder
from stream.service.metrics import Metrics
from stream.types import Event, EventsDropped, IdentityDeleted, IdentityMerged

E = TypeVar("E", bound=Event)
ENCODED_CACHE = 1024  # events whose JSON is kept for the consumers still to be sent them
PERSON_FIELDS = ("person", "merged", "new_person")  # the fields of an event that name a person


@dataclass(frozen=True)
class Encoded:
    """An event's wire form: the JSON document and its text."""

    document: Document
    text: str


class Subscription:
    """One consumer's view of the bus: a bounded queue that drops its oldest events."""

    def __init__(self, bus: EventBus, maxsize: int, cameras: set[str] | None,
                 consumer: str) -> None:
        self._bus = bus
        self.consumer = consumer  # what kind of consumer, for metrics: websocket, mqtt
        self._events: deque[Event] = deque()
        self._maxsize = maxsize
        self._wakeup = asyncio.Event()
        self.cameras = cameras
        self.dropped = 0  # in total
        self._unreported = 0  # since the consumer was last told
        self._noticed = False  # the last thing given out was a notice
        self.closed = False

    def wants(self, event: Event) -> bool:
        return self.cameras is None or getattr(event, "camera", None) in self.cameras

    def offer(self, event: Event) -> None:
        """Queue ``event``; when full, the oldest queued event is dropped (and counted)."""
        if len(self._events) >= self._maxsize:
            self._events.popleft()
            self.dropped += 1
            self._unreported += 1
            self._bus.count_drop(self.consumer)
        self._events.append(event)
        self._wakeup.set()

    def __len__(self) -> int:
        return len(self._events)

    async def get(self) -> Event:
        """The next event. After a loss, first an ``events.dropped`` notice with the count;
        never two notices in a row, so a consumer that stays behind still gets events."""
        while not self._events and not self.closed:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.closed and not self._events:
            raise EOFError("subscription closed")
        if self._unreported and not self._noticed:
            notice = EventsDropped(dropped=self._unreported, time=time.time())
            self._unreported, self._noticed = 0, True
            return notice
        self._noticed = False
        return self._events.popleft()

    def encoded(self, event: Event) -> Encoded:
        """The wire form of ``event`` (encoded once for every consumer)."""
        return self._bus.encoded(event)

    def on_removed(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(person)`` when an event removes ``person`` from the gallery, before
        that event is queued here (see :meth:`EventBus.on_removed`)."""
        self._bus.on_removed(hook)

    def close(self) -> None:
        """Stop receiving; queued events can still be taken, then :meth:`get` raises EOFError."""
        if not self.closed:
            self.closed = True
            self._bus.unsubscribe(self)
            self._wakeup.set()


def removed_person(event: Event) -> str | None:
    """The ID an event takes out of the gallery (deleted, forgotten or merged away), if any."""
    if isinstance(event, IdentityDeleted):
        return event.person
    if isinstance(event, IdentityMerged):
        return event.merged
    return None


def names(event: Event, person: str) -> bool:
    """Whether ``event`` is about ``person``."""
    return any(getattr(event, key, None) == person for key in PERSON_FIELDS)


class EventBus:
    """Stamps each event with a per-process sequence number, keeps the most recent ones for
    replay, and offers each to every matching subscription.

    An event that removes an ID from the gallery (``identity.deleted``, ``identity.merged``)
    purges the bus of that person: their earlier events leave the replay buffer and the encoded
    cache (faces and names are not kept for new clients), and the callbacks given to
    :meth:`on_removed` are told, before any consumer is offered the event. Events already
    queued for a consumer are still sent, in order, before it.

    With ``metrics``, counts events by type, their latency, and each consumer's drops.
    """

    def __init__(self, replay: int = 100, *, encoder: EventEncoder | None = None,
                 metrics: Metrics | None = None) -> None:
        self._encoder = encoder or EventEncoder()
        self._metrics = metrics
        self._recent: deque[Event] = deque(maxlen=replay)
        self._subscriptions: list[Subscription] = []
        self._consumers: set[str] = set()
        self._encoded: OrderedDict[int, Encoded] = OrderedDict()
        self._seq = 0
        self._removed_hooks: list[Callable[[str], None]] = []
        self.published = 0

    def on_removed(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(person)`` whenever an event removes ``person`` from the gallery, before
        it is offered to anyone (a sink's own copies of the person go then)."""
        self._removed_hooks.append(hook)

    def publish(self, event: E) -> E:
        """Stamp ``event`` with the next ``seq`` and deliver it; returns the stamped event."""
        self._seq += 1
        stamped = dataclasses.replace(event, seq=self._seq)
        removed = removed_person(stamped)
        if removed is not None:
            self._purge(removed)
        self._recent.append(stamped)
        self.published += 1
        if self._metrics is not None:
            self._metrics.events.labels(stamped.kind).inc()
            latency_ms = getattr(stamped, "latency_ms", None)
            if latency_ms is not None:
                self._metrics.event_latency.observe(latency_ms / 1000)
        for subscription in self._subscriptions:
            if subscription.wants(stamped):
                subscription.offer(stamped)
        return stamped

    def _purge(self, person: str) -> None:
        """Forget every copy of ``person``'s events that the bus keeps for later."""
        kept = [event for event in self._recent if not names(event, person)]
        self._recent.clear()
        self._recent.extend(kept)
        for seq in [seq for seq, encoded in self._encoded.items()
                    if any(encoded.document.get(key) == person for key in PERSON_FIELDS)]:
            del self._encoded[seq]
        for hook in self._removed_hooks:
            hook(person)

    def encoded(self, event: Event) -> Encoded:
        """The wire form of ``event``, cached by ``seq`` for the consumers still to send it
        (an unstamped event, such as one consumer's loss notice, is encoded each time)."""
        cached = self._encoded.get(event.seq) if event.seq else None
        if cached is not None:
            return cached
        document = self._encoder.document(event)
        encoded = Encoded(document, json.dumps(document))  # as EventEncoder.text writes it
        if event.seq:
            self._encoded[event.seq] = encoded
            if len(self._encoded) > ENCODED_CACHE:
                self._encoded.popitem(last=False)
        return encoded

    def subscribe(self, maxsize: int, *, cameras: Iterable[str] | None = None,
                  replay: int = 0, consumer: str = "other") -> Subscription:
        """A new subscription, first given up to ``replay`` recent events of its cameras."""
        subscription = Subscription(self, maxsize, set(cameras) if cameras is not None else None,
                                    consumer)
        if replay > 0:
            recent = [event for event in self._recent if subscription.wants(event)]
            for event in recent[-replay:]:
                subscription.offer(event)
        self._subscriptions.append(subscription)
        if consumer not in self._consumers:
            self._consumers.add(consumer)
            if self._metrics is not None:
                self._metrics.events_dropped.labels(consumer)  # exported from 0 on
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def count_drop(self, consumer: str) -> None:
        """One event lost by a consumer of kind ``consumer``."""
        if self._metrics is not None:
            self._metrics.events_dropped.labels(consumer).inc()

    def depths(self) -> dict[str, int]:
        """Events waiting, per kind of consumer that has subscribed so far."""
        depths = dict.fromkeys(sorted(self._consumers), 0)
        for subscription in self._subscriptions:
            depths[subscription.consumer] += len(subscription)
        return depths

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions)
