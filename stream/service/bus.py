"""Fan-out of events to every consumer (WebSocket clients, MQTT), each with its own bounded queue.

Call everything here from the event loop's thread. A consumer that falls behind loses its oldest
events, never slows the publisher or the other consumers, and is told how many it lost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable

from stream.pipeline.appearances import Event, wall_time

EVENT_SCHEMA = "facestream.event/1"


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
        return self.cameras is None or event.get("camera") in self.cameras

    def offer(self, event: Event) -> None:
        """Queue ``event``; when full, the oldest queued event is dropped."""
        if len(self._events) >= self._maxsize:
            self._events.popleft()
            self.dropped += 1
            self._unreported += 1
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
            notice = {"schema": EVENT_SCHEMA, "type": "events.dropped",
                      "dropped": self._unreported, "time": wall_time()}
            self._unreported, self._noticed = 0, True
            return notice
        self._noticed = False
        return self._events.popleft()

    def close(self) -> None:
        """Stop receiving; queued events can still be taken, then :meth:`get` raises EOFError."""
        if not self.closed:
            self.closed = True
            self._bus.unsubscribe(self)
            self._wakeup.set()


class EventBus:
    """Stamps each event with the schema version and a per-process sequence number, keeps the
    most recent ones for replay, and offers each to every matching subscription."""

    def __init__(self, replay: int = 100,
                 observe: Callable[[Event], None] | None = None) -> None:
        """``observe`` sees every stamped event as it is published (for metrics)."""
        self._observe = observe
        self._recent: deque[Event] = deque(maxlen=replay or None) if replay else deque(maxlen=0)
        self._subscriptions: list[Subscription] = []
        self._seq = 0
        self.published = 0

    def publish(self, event: Event) -> Event:
        """Stamp and deliver ``event`` (its fields other than ``schema`` and ``seq``)."""
        self._seq += 1
        stamped = {"schema": EVENT_SCHEMA, "seq": self._seq, **event}
        stamped.setdefault("time", wall_time())
        self._recent.append(stamped)
        self.published += 1
        if self._observe is not None:
            self._observe(stamped)
        for subscription in self._subscriptions:
            if subscription.wants(stamped):
                subscription.offer(stamped)
        return stamped

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
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions)
