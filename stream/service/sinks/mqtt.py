"""The MQTT sink: forwards events to an MQTT broker (aiomqtt), riding out broker outages.

Topics, under ``prefix`` (``MqttSettings.topic_prefix``):

- ``<prefix>/status``: retained ``online`` while connected, ``offline`` after a clean close or, as
  the last will, when the connection dies;
- ``<prefix>/<camera>/events``: every event of that camera, as JSON (not retained);
- ``<prefix>/events``: events without a camera, such as ``events.dropped`` notices;
- ``<prefix>/persons/<person>``: retained JSON with each person's latest state, cleared (an
  empty retained message) once the person is deleted, forgotten or merged into another.

On its first connection the sink reads the retained person states and marks those still
``"present": true`` absent: they were left by a service that stopped without saying so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from types import TracebackType
from typing import Any, Self

import aiomqtt

from stream.config import MqttSettings
from stream.service.bus import Subscription
from stream.service.metrics import Metrics
from stream.types import Event, PersonAppeared, PersonLeft, PersonUpdated

log = logging.getLogger(__name__)
PERSON_EVENTS = (PersonAppeared, PersonUpdated, PersonLeft)
SYNC_TIMEOUT_S = 5.0  # for the broker to send the retained person states, at the first connection


class MqttSink:
    """Publishes the events of one subscription to the broker of ``settings``, until the sink
    is left (or :meth:`close`).

    ``connected`` says whether a broker connection is up, ``published`` counts MQTT messages
    acknowledged (events, person states and status), ``reconnects`` counts connections made after
    the first one. With ``metrics``, ``facestream_mqtt_connected`` follows ``connected``.
    """

    consumer = "mqtt"

    def __init__(self, settings: MqttSettings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.queue = settings.queue
        self.connected = False
        self.published = 0
        self.reconnects = 0
        self._prefix = settings.topic_prefix
        self._persons: dict[str, dict[str, Any]] = {}
        self._removed: set[str] = set()  # out of the gallery: never published again
        self._to_clear: set[str] = set()  # their retained states, still to be cleared
        self._corrected = False  # stale retained states were corrected
        self._retained: dict[str, bytes] = {}  # person -> retained state, while correcting
        self._synced = asyncio.Event()
        self._sync_topic = f"{self._prefix}/sync/{uuid.uuid4().hex}"
        self._subscription: Subscription | None = None
        self._pending: Event | None = None  # taken from the queue, not yet acknowledged
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        if metrics is not None:
            metrics.mqtt_connected.set_function(lambda: float(self.connected))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def run(self, subscription: Subscription) -> None:
        """Forward the events of ``subscription`` until :meth:`close`; broker trouble is
        retried, never raised."""
        if self._closing or self._task is not None:  # closed, or already running one
            subscription.close()
            return
        self._subscription = subscription
        subscription.on_removed(self._person_removed)
        # The work runs in its own task so that close() can cancel it without cancelling the
        # caller of run().
        self._task = asyncio.create_task(self._serve(), name="mqtt connection")
        try:
            await asyncio.wait({self._task})
        finally:
            self._task.cancel()
            await asyncio.wait({self._task})
            subscription.close()
        if not self._task.cancelled():
            self._task.result()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking events, send those already queued (within ``timeout_s``), publish
        ``offline`` and disconnect. Without a connection, just stop."""
        self._closing = True
        if self._subscription is not None:
            self._subscription.close()
        task = self._task
        if task is None or task.done():
            return
        if not self.connected:
            task.cancel()
        await asyncio.wait({task}, timeout=timeout_s)
        if not task.done():
            log.warning("MQTT: gave up sending queued events after %.1f s", timeout_s)
            task.cancel()
            await asyncio.wait({task})
    def _client(self) -> aiomqtt.Client:
        settings = self.settings
        tls_params = tls_insecure = None
        if settings.use_tls:
            tls = settings.tls
            tls_params = aiomqtt.TLSParameters(
                ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                keyfile=str(tls.key_file) if tls and tls.key_file else None)
            tls_insecure = True if tls and tls.insecure else None
        return aiomqtt.Client(
            settings.host, settings.port, identifier=settings.client_id,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            keepalive=settings.keepalive_s, tls_params=tls_params, tls_insecure=tls_insecure,
            will=aiomqtt.Will(f"{self._prefix}/status", "offline", settings.qos, retain=True))

    async def _serve(self) -> None:
        address = f"{self.settings.host}:{self.settings.port}"
        connections = 0
        failures = 0
        backoff = self.settings.backoff()
        while not self._closing:
            error: Exception | None = None
            try:
                async with self._client() as client:
                    self.connected = True
                    connections += 1
                    if connections > 1:
                        self.reconnects += 1
                        log.info("MQTT broker %s reachable again; reconnected", address)
                    else:
                        log.info("connected to MQTT broker %s", address)
                    failures = 0
                    backoff.reset()
                    await self._session(client)
            except* aiomqtt.MqttError as group:
                error = group.exceptions[0]
            finally:
                self.connected = False
            if error is None or self._closing:
                return
            failures += 1
            if failures == 1:
                log.warning("MQTT broker %s unreachable (%s); retrying", address, error)
            wait_s = backoff.next_delay()
            log.debug("MQTT connection to %s failed (%s); next try in %.2f s", address, error,
                      wait_s)
            await asyncio.sleep(wait_s)

    async def _session(self, client: aiomqtt.Client) -> None:
        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(self._watch(client))
            await self._publish(client, f"{self._prefix}/status", "online", retain=True)
            if not self._corrected:
                await self._correct_stale(client)
            await self._forward(client)
            watcher.cancel()

    async def _watch(self, client: aiomqtt.Client) -> None:
        # aiomqtt ends its message iterator with MqttError as soon as the connection drops; that
        # also interrupts a publish still waiting for an acknowledgement that will never come.
        persons = f"{self._prefix}/persons/"
        async for message in client.messages:
            topic = str(message.topic)
            if topic == self._sync_topic:
                self._synced.set()
            elif topic.startswith(persons) and message.retain and isinstance(
                    message.payload, bytes) and message.payload:
                self._retained[topic.removeprefix(persons)] = message.payload

    async def _correct_stale(self, client: aiomqtt.Client) -> None:
        """Mark absent the people a previous run left ``"present": true`` (it crashed), and
        clear the states of people removed since. The broker sends the retained states
        before the message this sink then sends itself, which says they are all in."""
        persons = f"{self._prefix}/persons/+"
        self._retained.clear()
        self._synced.clear()
        await client.subscribe(persons, qos=1)
        await client.subscribe(self._sync_topic, qos=1)
        await client.publish(self._sync_topic, "sync", qos=1)
        try:
            await asyncio.wait_for(self._synced.wait(), SYNC_TIMEOUT_S)
        except TimeoutError:
            log.warning("MQTT: the retained person states did not arrive within %.0f s; "
                        "those a previous run left present stay so", SYNC_TIMEOUT_S)
        await client.unsubscribe(persons)
        await client.unsubscribe(self._sync_topic)
        stale, self._retained = self._retained, {}
        for person, payload in stale.items():
            if person in self._persons:
                continue  # this run's state, sent again below
            if person in self._removed:
                self._to_clear.add(person)
                continue
            try:
                state = json.loads(payload)
            except ValueError:
                continue
            if isinstance(state, dict) and state.get("present") is True:
                await self._publish(client, self._person_topic(person),
                                    _json({**state, "present": False}), retain=True)
        self._corrected = True

    def _person_removed(self, person: str) -> None:
        """``person`` left the gallery: drop their state and clear it on the broker."""
        self._persons.pop(person, None)
        self._removed.add(person)
        self._to_clear.add(person)

    async def _clear_removed(self, client: aiomqtt.Client) -> None:
        for person in sorted(self._to_clear):
            await self._publish(client, self._person_topic(person), "", retain=True)
            self._to_clear.discard(person)

    async def _forward(self, client: aiomqtt.Client) -> None:
        assert self._subscription is not None
        # The broker may have restarted without persistence: its retained states are gone.
        for person, state in list(self._persons.items()):
            await self._publish(client, self._person_topic(person), _json(state), retain=True)
        while True:
            await self._clear_removed(client)
            if self._pending is None:
                try:
                    self._pending = await self._subscription.get()
                except EOFError:
                    break
                self._remember(self._pending)
            await self._send(client, self._pending)
            self._pending = None
        await self._clear_removed(client)
        await self._publish(client, f"{self._prefix}/status", "offline", retain=True)

    def _remember(self, event: Event) -> None:
        """Fold a person event into that person's latest state."""
        if not isinstance(event, PERSON_EVENTS) or event.person in self._removed:
            return
        assert self._subscription is not None
        document = self._subscription.encoded(event).document
        previous = self._persons.get(event.person, {})
        self._persons[event.person] = {
            "person": event.person,
            "present": not isinstance(event, PersonLeft),
            "camera": event.camera,
            "last_event": event.kind,
            "last_seen": document["end" if isinstance(event, PersonLeft) else "time"],
            "thumbnail": document["thumbnail"] or previous.get("thumbnail"),
            "seq": event.seq,
        }

    async def _send(self, client: aiomqtt.Client, event: Event) -> None:
        assert self._subscription is not None
        camera = getattr(event, "camera", None)
        topic = f"{self._prefix}/{camera}/events" if camera else f"{self._prefix}/events"
        await self._publish(client, topic, self._subscription.encoded(event).text, retain=False)
        person = getattr(event, "person", None)
        if isinstance(person, str) and person in self._persons:
            await self._publish(client, self._person_topic(person),
                                _json(self._persons[person]), retain=True)

    def _person_topic(self, person: str) -> str:
        return f"{self._prefix}/persons/{person}"

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: str, *,
                       retain: bool) -> None:
        await client.publish(topic, payload, qos=self.settings.qos, retain=retain)
        self.published += 1


def _json(state: dict[str, Any]) -> str:
    return json.dumps(state, separators=(",", ":"))
