"""One capped, jittered exponential backoff, shared by everything that reconnects (cameras, the
MQTT broker). Pure: it computes delays; the caller waits them out however it waits."""

from __future__ import annotations

import random


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
