"""The service's listening socket, bound before anything heavy starts (no torch here), so that
a taken port is a clear error at once."""

from __future__ import annotations

import socket

from stream.errors import InputError


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
