"""The MQTT sink: forwards events to an MQTT broker (aiomqtt), riding out broker outages.

Topics, under ``prefix`` (``MqttSettings.topic_prefix``), for a process named ``node`` (the
``node:`` setting) whose gallery is named ``gallery`` (``mqtt.gallery_name``, else the gallery's
own ID: each gallery on a broker has its own person states):

- ``<prefix>/status/<node>``: retained ``online`` while connected, ``offline`` after a clean
  close or, as the last will, when the connection dies; one topic per node, since a connection
  has one last will;
- ``<prefix>/<camera>/events``: every event of that camera, as JSON (not retained);
- ``<prefix>/events``: events without a camera, such as ``events.dropped`` notices;
- ``<prefix>/<camera>/state``: retained JSON with who is on the camera now (``present``, the
  count, and ``persons``) and who appeared last (``last_person``, ``last_name``, ``last_seen``);
- ``<prefix>/<gallery>/persons/<person>``: retained JSON with each person's latest state (their
  ``name`` included, sent again when they are renamed), cleared (an empty retained message) once
  the person is deleted, forgotten or merged into another. Nodes of one gallery share these
  topics: the latest sighting wins (a node does not replace another node's state by one whose
  ``last_seen`` is older), so a person who left one node's camera for another's stays present;
- ``<prefix>/<camera>/<person>/snapshot`` (``mqtt.snapshots``): the JPEG of the best face of
  the person's appearance so far, whenever it gets better (retained with ``snapshot_retain``,
  and then cleared with the person on every camera);
- Home Assistant discovery configs (``mqtt.discovery``), see
  :mod:`stream.service.sinks.homeassistant`.

On its first connection the sink reads the retained person states of its gallery: it marks
this node's still ``"present": true`` absent (they were left by a service that stopped without
saying so), and clears what it keeps of people no longer in the gallery; with discovery, it also
removes the entities of people no longer named.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiomqtt

from stream.config import MqttSettings
from stream.imaging import jpeg_bytes
from stream.service.bus import Subscription
from stream.service.metrics import Metrics
from stream.service.sinks.homeassistant import Discovery
from stream.types import (
    Event,
    IdentityCreated,
    IdentityRenamed,
    PersonAppeared,
    PersonLeft,
    PersonUpdated,
)

log = logging.getLogger(__name__)
PERSON_EVENTS = (PersonAppeared, PersonUpdated, PersonLeft)
SYNC_TIMEOUT_S = 5.0  # for the broker to send the retained person states, at the first connection


@dataclass
class _Camera:
    """Who is on a camera now, and who appeared on it last."""

    # person -> their appearances open here: a past appearance told late (late recall) ends
    # while the person's current one goes on.
    open: dict[str, set[str]] = field(default_factory=dict)
    last_person: str | None = None
    last_seen: str | None = None


class MqttSink:
    """Publishes the events of one subscription to the broker of ``settings``, until the sink
    is left (or :meth:`close`), as the process ``node`` of the gallery ``gallery`` (its ID, or
    ``settings.gallery_name`` when set: :attr:`gallery`). ``cameras`` have a state (and a Home
    Assistant device) from the start. ``people`` are the gallery's people when the sink starts
    (ID -> name or ``None``): the broker's states and entities of anyone else are cleared at
    the first connection (they were removed while no sink was running); without it, they stay.

    ``connected`` says whether a broker connection is up, ``published`` counts MQTT messages
    acknowledged (events, person states and status), ``reconnects`` counts connections made after
    the first one. With ``metrics``, ``facestream_mqtt_connected`` follows ``connected``.
    """

    consumer = "mqtt"

    def __init__(self, settings: MqttSettings, *, node: str, gallery: str,
                 cameras: Iterable[str] = (), people: Mapping[str, str | None] | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.queue = settings.queue
        self.connected = False
        self.published = 0
        self.reconnects = 0
        self._prefix = settings.topic_prefix
        self._node = node
        self._status_topic = f"{self._prefix}/status/{node}"
        self.gallery = settings.gallery_name or gallery
        self._persons_prefix = f"{self._prefix}/{self.gallery}/persons/"
        self._discovery = Discovery(settings, gallery=self.gallery,
                                    availability=self._status_topic) \
            if settings.discovery else None
        self._cameras = {camera: _Camera() for camera in cameras}
        self._dirty_cameras: set[str] = set()  # their states, still to be sent
        self._known = None if people is None else set(people)  # the gallery's, at the start
        self._names = {person: name for person, name in (people or {}).items() if name}
        self._announced: dict[str, str] = {}  # the person configs on the broker: ID -> name
        self._configs: set[str] = set()  # retained person config topics, while correcting
        self._persons: dict[str, dict[str, Any]] = {}
        self._elsewhere: dict[str, str] = {}  # person -> last_seen of another node's state
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
            settings.host, settings.port,
            identifier=settings.client_id or f"facestream-{self._node}",  # one per node
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            keepalive=settings.keepalive_s, tls_params=tls_params, tls_insecure=tls_insecure,
            will=aiomqtt.Will(self._status_topic, "offline", settings.qos, retain=True))

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
                        log.info("connected to MQTT broker %s; person states on %s+", address,
                                 self._persons_prefix)
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
            await self._publish(client, self._status_topic, "online", retain=True)
            await client.subscribe(f"{self._persons_prefix}+", qos=1)  # other nodes' states
            if not self._corrected:
                await self._correct_stale(client)
            await self._announce(client)
            await self._forward(client)
            watcher.cancel()

    async def _watch(self, client: aiomqtt.Client) -> None:
        # aiomqtt ends its message iterator with MqttError as soon as the connection drops; that
        # also interrupts a publish still waiting for an acknowledgement that will never come.
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic == self._sync_topic:
                self._synced.set()
            elif topic.startswith(self._persons_prefix):
                person = topic.removeprefix(self._persons_prefix)
                self._note_elsewhere(person, payload)
                if message.retain and payload and not self._corrected:
                    self._retained[person] = payload
            elif self._discovery is not None and message.retain and payload:
                self._configs.add(topic)

    def _note_elsewhere(self, person: str, payload: bytes) -> None:
        """Keep when another node last saw ``person`` while its state is the broker's."""
        try:
            state = json.loads(payload) if payload else None
        except ValueError:
            return
        if isinstance(state, dict) and state.get("node") != self._node \
                and isinstance(state.get("last_seen"), str):
            self._elsewhere[person] = state["last_seen"]
        else:  # this node's state, or none
            self._elsewhere.pop(person, None)

    async def _correct_stale(self, client: aiomqtt.Client) -> None:
        """Mark absent the people a previous run left ``"present": true`` (it crashed), clear
        the states of people removed since and the entities of people no longer named. The
        broker sends the retained messages before the message this sink then sends itself,
        which says they are all in. The states read are kept, to be renamed."""
        filters = [] if self._discovery is None else [self._discovery.persons_filter]
        self._retained.clear()
        self._configs.clear()
        self._synced.clear()
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)
        await client.subscribe(self._sync_topic, qos=1)
        await client.publish(self._sync_topic, "sync", qos=1)
        try:
            await asyncio.wait_for(self._synced.wait(), SYNC_TIMEOUT_S)
        except TimeoutError:
            log.warning("MQTT: the retained person states did not arrive within %.0f s; "
                        "those a previous run left present stay so", SYNC_TIMEOUT_S)
        for topic_filter in filters:
            await client.unsubscribe(topic_filter)
        await client.unsubscribe(self._sync_topic)
        stale, self._retained = self._retained, {}
        if self._discovery is not None:
            named = {self._discovery.person_topic(person) for person in self._names}
            for topic in sorted(self._configs - named):
                await self._publish(client, topic, "", retain=True)
        for person, payload in stale.items():
            if person in self._persons:
                continue  # this run's state, sent again by _announce
            if person in self._removed or (self._known is not None
                                           and person not in self._known):
                self._to_clear.add(person)
                continue
            try:
                state = json.loads(payload)
            except ValueError:
                continue
            if isinstance(state, dict) and state.get("node") in (None, self._node):
                # Sent again by _announce, absent; another node's states are its own.
                self._persons[person] = {**state, "present": False} \
                    if state.get("present") is True else state
        self._corrected = True

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Send what a broker that restarted without persistence lost: the discovery configs
        and every camera's and person's state."""
        if self._discovery is not None:
            for camera in self._cameras:
                for topic, payload in self._discovery.camera(camera, self._camera_topic(camera)):
                    await self._publish(client, topic, payload, retain=True)
            for person, name in list(self._announced.items()):  # the changes: in _flush
                await self._publish(client, self._discovery.person_topic(person),
                                    self._discovery.person(person, name,
                                                           self._person_topic(person)),
                                    retain=True)
        self._dirty_cameras.update(self._cameras)
        for person in list(self._persons):
            await self._publish_person(client, person)

    def _person_removed(self, person: str) -> None:
        """``person`` left the gallery: drop their state and name, take them off the cameras,
        and clear what the broker keeps of them."""
        self._persons.pop(person, None)
        self._names.pop(person, None)
        self._removed.add(person)
        self._to_clear.add(person)
        for name, camera in self._cameras.items():
            if person in camera.open or camera.last_person == person:
                camera.open.pop(person, None)
                if camera.last_person == person:
                    camera.last_person = camera.last_seen = None
                self._dirty_cameras.add(name)

    async def _flush(self, client: aiomqtt.Client) -> None:
        """Send the changes the events made beyond their own messages: removed people cleared,
        person configs made or removed, camera states."""
        for person in sorted(self._to_clear):
            if self._discovery is not None:
                await self._publish(client, self._discovery.person_topic(person), "",
                                    retain=True)
            # Earlier runs' snapshots too: every camera, not only those that saw them now.
            for camera in sorted(self._cameras) if self.settings.snapshot_retain else ():
                await self._publish(client, self._snapshot_topic(camera, person), "",
                                    retain=True)
            await self._publish(client, self._person_topic(person), "", retain=True)
            self._announced.pop(person, None)
            self._to_clear.discard(person)
        if self._discovery is not None:
            for person in sorted(self._names.keys() | self._announced.keys()):
                name = self._names.get(person)
                if name == self._announced.get(person):
                    continue
                payload = "" if name is None else self._discovery.person(
                    person, name, self._person_topic(person))
                await self._publish(client, self._discovery.person_topic(person), payload,
                                    retain=True)
                if name is None:
                    del self._announced[person]
                else:
                    self._announced[person] = name
        for name in sorted(self._dirty_cameras):
            await self._publish(client, self._camera_topic(name), _json(self._camera_state(name)),
                                retain=True)
            self._dirty_cameras.discard(name)

    async def _forward(self, client: aiomqtt.Client) -> None:
        assert self._subscription is not None
        while True:
            await self._flush(client)
            if self._pending is None:
                try:
                    self._pending = await self._subscription.get()
                except EOFError:
                    break
                self._remember(self._pending)
            await self._send(client, self._pending)
            self._pending = None
        await self._flush(client)
        await self._publish(client, self._status_topic, "offline", retain=True)

    def _remember(self, event: Event) -> None:
        """Fold an event into the states it changes: names, the person's, the camera's."""
        if isinstance(event, IdentityRenamed | IdentityCreated):
            self._rename(event.person, event.name)
            return
        if not isinstance(event, PERSON_EVENTS) or event.person in self._removed:
            return
        assert self._subscription is not None
        self._rename(event.person, event.name)
        document = self._subscription.encoded(event).document
        camera = self._cameras.setdefault(event.camera, _Camera())
        was_present = event.person in camera.open
        appearances = camera.open.setdefault(event.person, set())
        if isinstance(event, PersonLeft):
            appearances.discard(event.appearance)
            if not appearances:
                del camera.open[event.person]
        else:
            appearances.add(event.appearance)
        if isinstance(event, PersonAppeared):
            camera.last_person, camera.last_seen = event.person, document["time"]
        if isinstance(event, PersonAppeared) or was_present != (event.person in camera.open):
            self._dirty_cameras.add(event.camera)
        previous = self._persons.get(event.person, {})
        self._persons[event.person] = {
            "person": event.person,
            "node": self._node,
            "name": event.name,
            "present": any(event.person in c.open for c in self._cameras.values()),
            "camera": event.camera,
            "appearance": event.appearance,
            "last_event": event.kind,
            "last_seen": document["end" if isinstance(event, PersonLeft) else "time"],
            "thumbnail": document["thumbnail"] or previous.get("thumbnail"),
            "seq": event.seq,
        }

    def _rename(self, person: str, name: str | None) -> None:
        """``person`` is called ``name`` now (``None``: unnamed)."""
        if person in self._removed or self._names.get(person) == name:
            return
        if name is None:
            self._names.pop(person, None)
        else:
            self._names[person] = name
        if person in self._persons:
            self._persons[person] = {**self._persons[person], "name": name}
        self._dirty_cameras.update(camera for camera, state in self._cameras.items()
                                   if state.last_person == person)

    def _camera_state(self, name: str) -> dict[str, Any]:
        camera = self._cameras[name]
        last = camera.last_person
        return {"camera": name, "present": len(camera.open),
                "persons": sorted(camera.open), "last_person": last,
                "last_name": self._names.get(last) if last else None,
                "last_seen": camera.last_seen}

    async def _send(self, client: aiomqtt.Client, event: Event) -> None:
        assert self._subscription is not None
        camera = getattr(event, "camera", None)
        topic = f"{self._prefix}/{camera}/events" if camera else f"{self._prefix}/events"
        await self._publish(client, topic, self._subscription.encoded(event).text, retain=False)
        person = getattr(event, "person", None)
        if isinstance(person, str) and person in self._persons:
            await self._publish_person(client, person)
        if (self.settings.snapshots and isinstance(event, PERSON_EVENTS)
                and event.thumbnail is not None and event.person not in self._removed):
            await self._publish(client, self._snapshot_topic(event.camera, event.person),
                                jpeg_bytes(event.thumbnail), retain=self.settings.snapshot_retain)

    async def _publish_person(self, client: aiomqtt.Client, person: str) -> None:
        """Send ``person``'s state, unless another node saw them later."""
        state = self._persons[person]
        if self._elsewhere.get(person, "") <= str(state.get("last_seen") or ""):
            await self._publish(client, self._person_topic(person), _json(state), retain=True)

    def _person_topic(self, person: str) -> str:
        return f"{self._persons_prefix}{person}"

    def _camera_topic(self, camera: str) -> str:
        return f"{self._prefix}/{camera}/state"

    def _snapshot_topic(self, camera: str, person: str) -> str:
        return f"{self._prefix}/{camera}/{person}/snapshot"

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: str | bytes, *,
                       retain: bool) -> None:
        await client.publish(topic, payload, qos=self.settings.qos, retain=retain)
        self.published += 1


def _json(state: dict[str, Any]) -> str:
    return json.dumps(state, separators=(",", ":"))
