"""The service's listening socket, bound before anything heavy starts (no torch here), so that
a taken port, or an open address without a token, is a clear error at once."""

from __future__ import annotations

import ipaddress
import socket

from stream.config import ServerSettings
from stream.errors import InputError


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) names this machine only: ``localhost``,
    ``*.localhost``, 127.0.0.0/8 or ::1."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_open(settings: ServerSettings) -> None:
    """Refuse to serve a non-loopback address without a token, unless ``allow_open``: anyone
    who reaches it would see the faces and change the gallery."""
    if settings.token is None and not settings.allow_open and not is_loopback(settings.host):
        raise InputError(
            f"refusing to listen on {settings.host} without a token: anyone who can reach it "
            "could watch the faces and change the gallery; set FACESTREAM_TOKEN (or give "
            "--token-file PATH), or add --allow-open to serve it open")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket: bound before anything else starts, so that a taken port is a clear
    error at once."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(address)
            listener.listen(128)
        except OSError:
            listener.close()
            raise
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port} ({error.strerror or error}); choose "
                         "another --port or --host") from None
    return listener
