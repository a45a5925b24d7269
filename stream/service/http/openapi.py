"""Routes and their OpenAPI 3.1 description, made from one list: every route is added with its
:class:`Operation`, so the document describes every route and no other. Request and response
bodies are pydantic models (their ``model_json_schema``); events come from
:func:`stream.codec.event_schemas`, derived from the event dataclasses."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp

from stream.codec import Document, event_schemas
from stream.types import EVENT_TYPES, Event

Handler = Callable[[Request], Awaitable[Response]]
REF = "#/components/schemas/{model}"
PERSON_ID: Document = {"type": "string", "pattern": "^[pP]?[0-9]+$"}
ANY_EVENT: Document = {"$ref": REF.format(model="Event")}
PATH_PARAMETERS: dict[str, Document] = {  # the path templates' parameters, by name
    "id": {"description": "a person ID, such as p12", "schema": {"$ref": REF.format(
        model="PersonId")}},
    "name": {"description": "a camera name", "schema": {"type": "string"}},
}


class Error(BaseModel):
    """A refused request."""

    error: str


@dataclass(frozen=True)
class Reply:
    """One response: ``body`` is a pydantic model, an event type or a JSON Schema (such as
    :data:`ANY_EVENT`); ``many``: an array of them."""

    description: str
    body: type[BaseModel] | type[Event] | Document | None = None
    media: str = "application/json"
    many: bool = False


@dataclass(frozen=True)
class Operation:
    """What the document says of one route and method."""

    summary: str
    replies: Mapping[int, Reply]
    body: type[BaseModel] | None = None
    query: tuple[Document, ...] = ()  # OpenAPI parameter objects
    upload: str | None = None  # the body may also be multipart/form-data with this file field


def error(description: str) -> Reply:
    """An ``{"error": ...}`` response."""
    return Reply(description, Error)


UNAUTHORIZED = error("a token is required (the service was started with one)")
FORBIDDEN = error("the Host or Origin is not this service's (server.allowed_hosts, "
                  "server.allowed_origins)")
TOO_LARGE = error("the body is larger than server.max_body_bytes")
NOT_JSON = error("a body that is not sent as application/json")


class Api:
    """Collects routes (Starlette's) and the operations that describe them."""

    def __init__(self, guard: Callable[[Handler, bool], Handler]) -> None:
        self._guard = guard  # (handler, public): the handler behind the token, errors as JSON
        self.routes: list[BaseRoute] = []
        self.uploads: set[str] = set()  # paths that also take multipart/form-data bodies
        self._operations: list[tuple[str, str, Operation]] = []

    def add(self, method: str, path: str, handler: Handler, operation: Operation, *,
            public: bool = False) -> None:
        """Serve ``handler`` behind the guard (the token unless ``public``, errors as JSON);
        a 401 is documented."""
        self.routes.append(Route(path, self._guard(handler, public), methods=[method]))
        if operation.upload is not None:
            self.uploads.add(path)
        replies = {**operation.replies, 403: FORBIDDEN}
        if not public:
            replies[401] = UNAUTHORIZED
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            replies |= {413: TOO_LARGE, 415: NOT_JSON}
        self._operations.append((path, method, Operation(
            operation.summary, replies, operation.body, operation.query, operation.upload)))

    def websocket(self, path: str, handler: ASGIApp | Callable[..., Awaitable[None]],
                  operation: Operation) -> None:
        """A WebSocket route, documented as the GET that upgrades to it."""
        self.routes.append(WebSocketRoute(path, handler))
        self._operations.append((path, "GET", operation))

    def document(self) -> Document:
        """The OpenAPI 3.1 document of the routes added so far."""
        models: dict[str, type[BaseModel]] = {}
        paths: dict[str, dict[str, Document]] = {}
        for path, method, operation in self._operations:
            item: Document = {"summary": operation.summary}
            parameters = [{"name": name, "in": "path", "required": True,
                           **PATH_PARAMETERS[name]} for name in re.findall(r"{(\w+)}", path)]
            if parameters or operation.query:
                item["parameters"] = [*parameters, *operation.query]
            if operation.body is not None:
                item["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": _schema(operation.body, models)}}}
            if operation.upload is not None:
                item["requestBody"]["content"]["multipart/form-data"] = {"schema": {
                    "type": "object", "required": [operation.upload], "properties": {
                        operation.upload: {"type": "string", "contentMediaType": "image/*"}}}}
            item["responses"] = {str(status): _reply(reply, models)
                                 for status, reply in sorted(operation.replies.items())}
            paths.setdefault(path, {})[method.lower()] = item
        schemas: Document = {**event_schemas(), "PersonId": PERSON_ID, "Event": {
            "oneOf": [{"$ref": REF.format(model=kind.__name__)} for kind in EVENT_TYPES]}}
        _, definitions = models_json_schema(
            [(model, "validation") for _, model in sorted(models.items())], ref_template=REF)
        schemas |= definitions.get("$defs", {})
        return {
            "openapi": "3.1.0",
            "info": {"title": "facestream", "version": "1",
                     "description": "The live service: events, health, metrics and the gallery. "
                                    "With a token, every route but /healthz requires it; "
                                    "/healthz tells the details only with it."},
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "query": {"type": "apiKey", "in": "query", "name": "token"}}},
            "security": [{}, {"bearer": []}, {"query": []}],
        }


def _schema(body: type[BaseModel] | type[Event] | Document,
            models: dict[str, type[BaseModel]]) -> Document:
    if isinstance(body, dict):
        return body
    if issubclass(body, BaseModel):
        models[body.__name__] = body
    return {"$ref": REF.format(model=body.__name__)}


def _reply(reply: Reply, models: dict[str, type[BaseModel]]) -> Document:
    document: Document = {"description": reply.description}
    if reply.body is not None:
        schema = _schema(reply.body, models)
        document["content"] = {reply.media: {"schema": {"type": "array", "items": schema}
                                             if reply.many else schema}}
    return document


def text(description: str) -> Reply:
    """A plain-text response."""
    return Reply(description, {"type": "string"}, "text/plain")


def jpeg(description: str) -> Reply:
    """A JPEG image."""
    return Reply(description, {"type": "string", "contentMediaType": "image/jpeg"}, "image/jpeg")


def parameter(name: str, description: str, schema: Document) -> Document:
    """A query parameter."""
    return {"name": name, "in": "query", "description": description, "schema": schema}

