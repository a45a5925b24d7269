"""Home Assistant MQTT discovery: the retained configs that turn the MQTT sink's topics into
Home Assistant entities (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery).

- One device per camera, with two sensors read from the camera's retained state
  ``<prefix>/<camera>/state``: "People present" (how many people are on the camera now) and
  "Last person seen" (the name of the last person to appear, else their ID).
- One ``device_tracker`` per named person, read from their retained state
  ``<prefix>/<gallery>/persons/<id>``: ``home`` while they are on a camera, ``not_home`` once
  they left. Its ``source_type`` is ``router``: Home Assistant counts it as a stationary
  tracker, so a ``person`` it is attached to is home as soon as a camera sees them, while
  ``not_home`` (out of sight) never overrides a phone's GPS (a ``gps`` tracker without
  coordinates would be shown away). A ``binary_sensor`` could not be attached to a ``person``.

Every entity is available while ``<prefix>/status/<node>`` says ``online``. A person's entity is
removed (an empty retained config) once they are unnamed, deleted, forgotten or merged away.
Pure: this module makes topics and payloads; :class:`~stream.service.sinks.mqtt.MqttSink`
sends them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from stream import __version__
from stream.config import MqttSettings

__all__ = ["Discovery", "object_id"]

ORIGIN = {"name": "facestream", "sw_version": __version__}


def object_id(text: str) -> str:
    """``text`` with each character that Home Assistant refuses in the IDs of a discovery topic
    (all but letters, digits, ``_`` and ``-``) replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


class Discovery:
    """The discovery configs of one sink: its cameras' devices and its gallery's named people.

    ``availability`` is the node's status topic; ``gallery`` names the gallery in the topics.
    Entities' unique IDs start with the topic prefix, so two installations on one broker (with
    their own prefixes) do not meet in Home Assistant.
    """

    def __init__(self, settings: MqttSettings, *, gallery: str, availability: str) -> None:
        self._prefix = settings.discovery_prefix
        self._base = object_id(settings.topic_prefix)
        self._gallery = object_id(gallery)
        self._availability = {"availability_topic": availability,
                              "payload_available": "online", "payload_not_available": "offline"}

    @property
    def persons_filter(self) -> str:
        """The topic filter of the person configs of this gallery (for stale ones)."""
        return f"{self._prefix}/device_tracker/{self._base}_{self._gallery}/+/config"

    def camera(self, camera: str, state_topic: str) -> list[tuple[str, str]]:
        """The configs (topic, payload) of a camera's device and its two sensors."""
        device_id = f"{self._base}_{object_id(camera)}"
        device = {"identifiers": [device_id], "name": camera, "manufacturer": "facestream",
                  "model": "camera", "sw_version": __version__}
        present = {"name": "People present", "unique_id": f"{device_id}_present",
                   "state_topic": state_topic, "value_template": "{{ value_json.present }}",
                   "state_class": "measurement", "unit_of_measurement": "people",
                   "icon": "mdi:account-group"}
        # An unnamed person shows as their ID; with nobody seen yet, "None" reads as unknown.
        last = {"name": "Last person seen", "unique_id": f"{device_id}_last_person",
                "state_topic": state_topic,
                "value_template": "{{ value_json.last_name or value_json.last_person }}",
                "json_attributes_topic": state_topic,
                "json_attributes_template": "{{ {'person': value_json.last_person, "
                                            "'name': value_json.last_name, "
                                            "'seen': value_json.last_seen} | tojson }}",
                "icon": "mdi:account-eye"}
        return [(f"{self._prefix}/sensor/{device_id}/{key}/config",
                 self._payload({**entity, "device": device}))
                for key, entity in (("present", present), ("last_person", last))]

    def person_topic(self, person: str) -> str:
        """The config topic of ``person``'s tracker."""
        return (f"{self._prefix}/device_tracker/{self._base}_{self._gallery}/"
                f"{object_id(person)}/config")

    def person(self, person: str, name: str, state_topic: str) -> str:
        """The config of the tracker of ``person``, called ``name``."""
        return self._payload({
            "name": name, "unique_id": f"{self._base}_{self._gallery}_{object_id(person)}",
            "state_topic": state_topic,
            "value_template": "{{ 'home' if value_json.present else 'not_home' }}",
            "payload_home": "home", "payload_not_home": "not_home", "source_type": "router",
            "json_attributes_topic": state_topic,
            "json_attributes_template": "{{ {'person': value_json.person, "
                                        "'camera': value_json.camera, "
                                        "'last_seen': value_json.last_seen} | tojson }}",
            "icon": "mdi:face-recognition"})

    def _payload(self, entity: dict[str, Any]) -> str:
        return json.dumps({**entity, **self._availability, "origin": ORIGIN},
                          separators=(",", ":"))
