"""The real ``facestream run`` in a subprocess, and a real WebSocket client of its events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

Event = dict[str, Any]
# Of the service's own CPU time: on a loaded machine its start-up is longer in wall time only.
READY_TIMEOUT_S = 90.0
STALLED_S = 30.0  # a start-up that used no CPU for this long (wall) waits on something: fail


class Service:
    """``facestream run ARGS`` as a child process; its log lines are kept in :attr:`log`."""

    def __init__(self, args: list[str], port: int, *, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stream", "run", *args, "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {})})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for_log("listening on", READY_TIMEOUT_S, cpu=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.rstrip("\n"))

    def cpu_s(self) -> float:
        """The CPU seconds the service has used (0 once it is gone)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rsplit(")", 1)[1].split()  # from the state on: utime, stime at 11, 12
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_for_log(self, text: str, timeout_s: float, *, cpu: bool = False) -> str:
        """The first log line holding ``text``, waiting up to ``timeout_s`` seconds: of the
        service's CPU time with ``cpu`` (while it uses some: :data:`STALLED_S`), else of the
        wall clock."""
        spent = self.cpu_s if cpu else time.monotonic
        deadline = spent() + timeout_s
        busy, busy_at = spent(), time.monotonic()
        while spent() < deadline and time.monotonic() - busy_at < STALLED_S:
            found = [line for line in self.log if text in line]
            if found:
                return found[0]
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            if spent() > busy:
                busy, busy_at = spent(), time.monotonic()
            time.sleep(0.05)
        raise AssertionError(f"no log line with {text!r} within {timeout_s} s"
                             f"{' of its CPU time' if cpu else ''}; log:\n" + "\n".join(self.log))

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class EventClient:
    """A real WebSocket client collecting the events of ``/events`` in a thread."""

    def __init__(self, url: str, **options: Any) -> None:
        self.events: list[Event] = []
        self.closed = threading.Event()
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(url, options), daemon=True)
        self._thread.start()
        self._opened.wait(15)
        if self._error is not None:
            raise self._error

    def _read(self, url: str, options: dict[str, Any]) -> None:
        try:
            with connect(url, open_timeout=10, **options) as connection:
                self.connection: ClientConnection = connection
                self._opened.set()
                for message in connection:
                    self.events.append(json.loads(message))
        except ConnectionClosed:
            pass
        except BaseException as error:
            self._error = error
        finally:
            self._opened.set()
            self.closed.set()

    def of_type(self, kind: str) -> list[Event]:
        return [event for event in self.events if event["type"] == kind]

    def wait_for(self, predicate: Callable[[Event], bool], timeout_s: float = 30.0,
                 after: int = 0) -> Event:
        """The first event (from index ``after``) matching ``predicate``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.events[after:]:
                if predicate(event):
                    return event
            time.sleep(0.05)
        seen = [(e["type"], e.get("person"), e.get("status")) for e in self.events]
        raise AssertionError(f"no matching event within {timeout_s} s; got: {seen}")

    def close(self) -> None:
        self.connection.close()
        self._thread.join(5)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
