"""One capped, jittered exponential backoff, shared by everything that reconnects (cameras, the
MQTT broker). Pure: it computes delays; the caller waits them out however it waits."""

from __future__ import annotations

import random

REFUSED_FACTOR = 10.0  # a server that refused is first retried this many times later...
REFUSED_MAX_S = 3600.0  # ...and at least once an hour


class Backoff:
    """Delays between retries: the ceiling starts at ``initial_s``, is multiplied by ``factor``
    after every delay, and stops growing at ``max_s``. Each delay is the ceiling scaled by a
    random factor in ``[1 - jitter, 1]``, so that clients that failed together do not retry
    together. :meth:`reset` after a success starts again from ``initial_s``.
    """

    def __init__(self, initial_s: float, max_s: float, *, factor: float = 2.0,
                 jitter: float = 0.5, rng: random.Random | None = None) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got initial_s={initial_s} "
                             f"and max_s={max_s}")
        if factor < 1:
            raise ValueError(f"backoff factor must be at least 1, got {factor}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"backoff jitter must be in [0, 1], got {jitter}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._ceiling = initial_s

    def next_delay(self) -> float:
        """The wait before the next retry, in seconds (never above ``max_s``)."""
        delay = self._ceiling * self._rng.uniform(1 - self.jitter, 1)
        self._ceiling = min(self._ceiling * self.factor, self.max_s)
        return delay

    def reset(self) -> None:
        """Start again from ``initial_s`` (call it once a connection worked)."""
        self._ceiling = self.initial_s

    def refused(self) -> Backoff:
        """The backoff after a server refused (no such stream, a wrong password): it starts at
        :data:`REFUSED_FACTOR` times this one's longest delay and grows to
        :data:`REFUSED_MAX_S`, so that retries do not lock an account or flood a log."""
        max_s = max(REFUSED_MAX_S, self.max_s)
        return Backoff(min(self.max_s * REFUSED_FACTOR, max_s), max_s, factor=self.factor,
                       jitter=self.jitter, rng=self._rng)
