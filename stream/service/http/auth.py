"""The shared token (``server.token``), and the guard every HTTP route is served behind: it
refuses requests without the token and turns refusals into ``{"error": ...}`` responses."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from stream.errors import GalleryError
from stream.service.http.openapi import Handler

UNAUTHORIZED = "a valid token is required: send 'Authorization: Bearer TOKEN' or ?token=TOKEN"


class ApiError(Exception):
    """A request the API refuses: the HTTP status, and the message sent as ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def authorized(connection: HTTPConnection, token: str | None) -> bool:
    """Whether the request (or WebSocket handshake) carries ``token``, when one is required."""
    if token is None:
        return True
    header = connection.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else connection.query_params.get(
        "token", "")
    return hmac.compare_digest(given.encode(), token.encode())


def guard(token: str | None) -> Callable[[Handler], Handler]:
    """Wraps a handler: 401 without ``token``; :class:`ApiError` as its status and a
    ``GalleryError`` (an operation refused what the request asked) as 400, both as JSON."""
    def wrap(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if not authorized(request, token):
                return JSONResponse({"error": UNAUTHORIZED}, 401,
                                    headers={"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request)
            except ApiError as error:
                return JSONResponse({"error": str(error)}, error.status)
            except GalleryError as error:
                return JSONResponse({"error": str(error)}, 400)
        return guarded
    return wrap
