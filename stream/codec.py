"""The wire form of events: JSON with ISO 8601 times and base64 JPEG thumbnails.

Events are made as typed dataclasses (``stream.types``) holding plain numbers and pixels; this
module is the one place that encodes them, once per event, for every sink. It also derives the
events' JSON Schema from the same types, for the OpenAPI document.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import types
import typing
from typing import Any

from stream.imaging import square_jpeg
from stream.types import EVENT_TYPES, Event, Wire

EVENT_SCHEMA = "facestream.event/1"
Document = dict[str, Any]


def wall_time(seconds: float | None = None) -> str:
    """An ISO 8601 UTC timestamp with milliseconds, for event fields."""
    seconds = time.time() if seconds is None else seconds
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int(seconds * 1000) % 1000:03d}Z"


def _wire(hint: Any) -> Wire | None:
    """The :class:`Wire` marker of a field's type hint (``Timestamp``, ``Jpeg | None``, ...)."""
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is typing.Annotated:
            marker = candidate.__metadata__[0]
            return marker if isinstance(marker, Wire) else None
    return None


def _fields(kind: type[Any]) -> tuple[tuple[str, Wire | None], ...]:
    hints = typing.get_type_hints(kind, include_extras=True)
    return tuple((field.name, _wire(hints[field.name])) for field in dataclasses.fields(kind))


_FIELDS = {kind: _fields(kind) for kind in EVENT_TYPES}  # name and wire form of each field


class EventEncoder:
    """Turns events into JSON documents; ``thumbnail_px`` is the side of thumbnails, ``node``
    names the process that made them (the ``node:`` setting of ``facestream run``)."""

    def __init__(self, thumbnail_px: int = 96, *, node: str | None = None) -> None:
        self.thumbnail_px = thumbnail_px
        self.node = node

    def document(self, event: Event) -> Document:
        """``event`` as a JSON-ready dict: ``schema``, ``node`` (when named), ``seq`` (when
        stamped), ``type``, fields."""
        document: Document = {"schema": EVENT_SCHEMA}
        if self.node is not None:
            document["node"] = self.node
        if event.seq:
            document["seq"] = event.seq
        document["type"] = event.kind
        for name, wire in _FIELDS[type(event)]:
            if name == "seq":
                continue
            value = getattr(event, name)
            if value is None or wire is None:
                document[name] = list(value) if isinstance(value, tuple) else value
            elif wire is Wire.TIMESTAMP:
                document[name] = wall_time(value)
            else:
                document[name] = base64.b64encode(
                    square_jpeg(value, self.thumbnail_px)).decode("ascii")
        return document

    def text(self, event: Event) -> str:
        """``event`` as JSON text."""
        return json.dumps(self.document(event), separators=(", ", ": "))


def _schema_of(hint: Any, wire: Wire | None) -> Document:
    if wire is Wire.TIMESTAMP:
        return {"type": "string", "format": "date-time"}
    if wire is Wire.JPEG:
        schema: Document = {"type": "string", "contentEncoding": "base64",
                            "contentMediaType": "image/jpeg"}
        return {"anyOf": [schema, {"type": "null"}]} if _optional(hint) else schema
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if _optional(hint) and len(args) == 1:
        return {"anyOf": [_schema_of(args[0], None), {"type": "null"}]}
    origin = typing.get_origin(hint)
    if origin is tuple:
        items = typing.get_args(hint)
        if len(items) == 2 and items[1] is Ellipsis:
            return {"type": "array", "items": _schema_of(items[0], None)}
        return {"type": "array", "prefixItems": [_schema_of(i, None) for i in items],
                "minItems": len(items), "maxItems": len(items)}
    plain = {str: "string", bool: "boolean", int: "integer", float: "number"}
    return {"type": plain[hint]}


def _optional(hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return (typing.get_origin(hint) in (typing.Union, types.UnionType)
            and type(None) in typing.get_args(hint))


def event_schemas() -> dict[str, Document]:
    """A JSON Schema per event type, derived from the event dataclasses (for OpenAPI)."""
    schemas: dict[str, Document] = {}
    for kind in EVENT_TYPES:
        hints = typing.get_type_hints(kind, include_extras=True)
        properties: Document = {"schema": {"const": EVENT_SCHEMA},
                                "node": {"type": "string", "description": "the process that "
                                         "made the event (`node:` of `facestream run`)"},
                                "type": {"const": kind.kind}}
        required = ["schema", "type"]
        for field in dataclasses.fields(kind):
            hint = hints[field.name]
            if field.name == "seq":
                properties["seq"] = {"type": "integer", "minimum": 1,
                                     "description": "per-process sequence number"}
                continue
            wire = _wire(hint)
            base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated \
                else hint
            properties[field.name] = _schema_of(base if wire is None else hint, wire)
            if field.default is dataclasses.MISSING:
                required.append(field.name)
        schemas[kind.__name__] = {"type": "object", "description": (kind.__doc__ or "").strip(),
                                  "required": required, "properties": properties}
    return schemas
