"""The shared token (``server.token``), and the guard every HTTP route is served behind: it
refuses requests without the token and turns refusals into ``{"error": ...}`` responses."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from stream.errors import GalleryError, StorageError
from stream.service.http.access import Refusals
from stream.service.http.openapi import Handler

UNAUTHORIZED = "a valid token is required: send 'Authorization: Bearer TOKEN' or ?token=TOKEN"


class ApiError(Exception):
    """A request the API refuses: the HTTP status, and the message sent as ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def problem(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """``{"error": message}`` with ``status``; text that is not valid Unicode (a lone
    surrogate from a request) is escaped, never a reason to fail."""
    text = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": text}, status, headers=headers)


def authorized(connection: HTTPConnection, token: str | None) -> bool:
    """Whether the request (or WebSocket handshake) carries ``token``, when one is required."""
    if token is None:
        return True
    header = connection.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else connection.query_params.get(
        "token", "")
    return hmac.compare_digest(given.encode(errors="replace"), token.encode())


def refused(connection: HTTPConnection) -> str:
    """How :class:`Refusals` names a request refused for want of the token."""
    kind = connection.scope.get("method", "WebSocket")
    client = connection.client.host if connection.client else "?"
    return f"{kind} {connection.url.path!r} from {client}: no valid token"


def guard(token: str | None, refusals: Refusals) -> Callable[[Handler, bool], Handler]:
    """Wraps a handler: 401 without ``token`` (unless the route is ``public``);
    :class:`ApiError` as its status and a ``GalleryError`` (an operation refused what the
    request asked) as 400, both as JSON."""
    def wrap(handler: Handler, public: bool) -> Handler:
        async def guarded(request: Request) -> Response:
            if not public and not authorized(request, token):
                refusals.note(refused(request))
                return problem(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request)
            except ApiError as error:
                return problem(error.status, str(error))
            except StorageError as error:  # the gallery cannot take changes now: retry later
                return problem(503, str(error))
            except GalleryError as error:
                return problem(400, str(error))
        return guarded
    return wrap
