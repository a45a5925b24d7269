"""Who may talk to the service, checked before any route sees a request.

- ``Host`` must be an IP address, a loopback name, the address served or one of
  ``server.allowed_hosts``: a page whose name was re-pointed at this machine (DNS rebinding)
  sends its own name, and is refused.
- ``Origin``, when a browser sends one (on every WebSocket handshake and every change), must be
  the service's own or one of ``server.allowed_origins``: a page of another site can neither
  read ``/events`` nor make changes, even with no token set. Clients that are not browsers send
  no ``Origin`` and are not concerned.
- A change (POST, PUT, PATCH, DELETE) with a body must send it as ``application/json`` and within
  ``server.max_body_bytes``: a larger one is answered 413 before it is read, and the forms and
  plain text a page may post to another site without asking (``no-cors``) are refused; the
  upload routes (``uploads``) also take ``multipart/form-data``, and change nothing.

Refusals are answered ``{"error": ...}`` and logged by :class:`Refusals`, at a bounded rate.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from stream.config import ServerSettings
from stream.service.net import is_loopback

__all__ = ["AccessGuard", "Refusals", "allowed_host", "same_origin"]
log = logging.getLogger(__name__)
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MULTIPART = "multipart/form-data"
DEFAULT_PORTS = {"http": 80, "https": 443}


class Refusals:
    """Logs refused requests at a bounded rate: the first at once, then at most one line per
    ``interval_s``, which counts the refusals not logged since the last line."""

    def __init__(self, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._quiet_until = -math.inf
        self._held = 0

    def note(self, what: str) -> None:
        """One refusal, described by ``what`` (the request and why it was refused)."""
        now = self._clock()
        if now < self._quiet_until:
            self._held += 1
            return
        more = f" ({self._held} more refused since the last such line)" if self._held else ""
        log.warning("refused %s%s; at most one such line per %g s", what, more,
                    self._interval_s)
        self._held = 0
        self._quiet_until = now + self._interval_s


def _split_host(header: str) -> tuple[str, int | None]:
    """``Host`` as (name, port): ``[::1]:8080`` is ("::1", 8080)."""
    header = header.strip().lower()
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        name, colon, port = header.rpartition(":")
        if not colon or ":" in name:  # no port, or a bare IPv6 address
            name, port = header, ""
    return name.rstrip("."), int(port) if port.isascii() and port.isdigit() else None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_host(header: str, settings: ServerSettings) -> bool:
    """Whether a request's ``Host`` names this service (see the module's description); an
    address is never a rebound name, so any address is allowed."""
    name, _ = _split_host(header)
    return ("*" in settings.allowed_hosts or name in settings.allowed_hosts
            or name == settings.host.lower() or is_loopback(name) or _is_address(name))


def same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` (``scheme://name[:port]``) is the site that ``host`` names."""
    parts = urlsplit(origin.lower())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return False
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return False
    name, host_port = _split_host(host)
    return (parts.hostname, port) == (name, host_port or DEFAULT_PORTS[parts.scheme])


class AccessGuard:
    """ASGI middleware applying the rules of this module to every request and WebSocket
    handshake; WebSocket handshakes to paths other than ``websockets`` are answered 404."""

    def __init__(self, app: ASGIApp, *, settings: ServerSettings, refusals: Refusals,
                 websockets: frozenset[str], uploads: frozenset[str] = frozenset()) -> None:
        self._app = app
        self._settings = settings
        self._refusals = refusals
        self._websockets = websockets
        self._uploads = uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self._problem(scope, headers)
        if problem is None and scope["type"] == "http" and scope["method"] in CHANGES:
            problem, receive = await self._body(headers, receive,
                                                scope["path"] in self._uploads)
        if problem is None:
            await self._app(scope, receive, send)
            return
        status, message = problem
        kind = "WebSocket" if scope["type"] == "websocket" else scope["method"]
        client = scope.get("client") or ("?", 0)
        self._refusals.note(f"{kind} {scope['path']!r} from {client[0]}: {message}")
        response = JSONResponse({"error": message}, status)
        if scope["type"] == "websocket":
            await WebSocket(scope, receive, send).send_denial_response(response)
        else:
            response.headers["Connection"] = "close"  # an unread body may follow
            await response(scope, receive, send)

    def _problem(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        host = headers.get("host")
        if host is not None and not allowed_host(host, self._settings):
            return 403, (f"this service is not {_split_host(host)[0][:64]!r}: connect by its "
                         "address, or add the name to server.allowed_hosts")
        origin = headers.get("origin")
        if origin is not None and not (host is not None and same_origin(origin, host)) \
                and origin.rstrip("/").lower() not in self._settings.allowed_origins:
            return 403, (f"pages of {origin[:100]!r} may not use this service; add the origin "
                         "to server.allowed_origins to allow them")
        if scope["type"] == "websocket" and scope["path"] not in self._websockets:
            return 404, f"no WebSocket at {scope['path'][:100]!r}; events are at /events"
        return None

    async def _body(self, headers: Headers, receive: Receive, upload: bool
                    ) -> tuple[tuple[int, str] | None, Receive]:
        """The request's whole body, read here up to the limit, and a ``receive`` that hands
        it to the route; or why it is refused. ``upload``: multipart/form-data is taken too."""
        limit = self._settings.max_body_bytes
        too_large = 413, f"the body is larger than {limit} bytes (server.max_body_bytes)"
        length = headers.get("content-length", "")
        if length.isascii() and length.isdigit() and int(length) > limit:
            return too_large, receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return None, _replay([], message, receive)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return too_large, receive
            if not message.get("more_body", False):
                break
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        if size and media != "application/json" and not (upload and media == MULTIPART):
            return (415, "send the body as JSON, with Content-Type: application/json"
                    + (f", or as {MULTIPART}" if upload else "")), receive
        return None, _replay(chunks, None, receive)


def _replay(chunks: list[bytes], last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that first gives the body read already (or the message that ended it)."""
    pending: list[Message] = ([last] if last is not None else
                              [{"type": "http.request", "body": b"".join(chunks),
                                "more_body": False}])

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()
    return replayed
