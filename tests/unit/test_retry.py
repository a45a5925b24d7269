"""The one backoff: capped, jittered, reset after a success; and the settings that build it."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.config import MqttSettings, SourceSettings
from stream.retry import Backoff

initials = st.floats(min_value=0.001, max_value=60)
spans = st.floats(min_value=1, max_value=100)  # max_s / initial_s
factors = st.floats(min_value=1, max_value=10)
jitters = st.floats(min_value=0, max_value=1)


@given(initials, spans, factors, jitters, st.integers(0, 2**32))
def test_delays_stay_within_zero_and_max(initial: float, span: float, factor: float,
                                         jitter: float, seed: int) -> None:
    backoff = Backoff(initial, initial * span, factor=factor, jitter=jitter,
                      rng=random.Random(seed))
    for _ in range(60):
        assert 0 <= backoff.next_delay() <= backoff.max_s


@given(initials, spans, st.floats(min_value=1.1, max_value=10), st.integers(0, 2**32))
def test_the_ceiling_grows_by_factor_until_capped(initial: float, span: float, factor: float,
                                                  seed: int) -> None:
    # jitter 0: each delay is the ceiling itself
    backoff = Backoff(initial, initial * span, factor=factor, jitter=0, rng=random.Random(seed))
    delays = [backoff.next_delay() for _ in range(60)]
    for attempt, delay in enumerate(delays):
        assert delay == pytest.approx(min(initial * factor**attempt, backoff.max_s))
    assert delays[-1] == backoff.max_s


@given(initials, spans, jitters, st.integers(0, 2**32), st.integers(1, 30))
def test_each_delay_is_its_ceiling_jittered_down(initial: float, span: float, jitter: float,
                                                 seed: int, failures: int) -> None:
    backoff = Backoff(initial, initial * span, jitter=jitter, rng=random.Random(seed))
    for attempt in range(failures):
        ceiling = min(initial * 2**attempt, backoff.max_s)
        assert ceiling * (1 - jitter) * (1 - 1e-9) <= backoff.next_delay() <= ceiling


@given(initials, spans, st.integers(1, 30), st.integers(0, 2**32))
def test_reset_starts_again_from_initial(initial: float, span: float, failures: int,
                                         seed: int) -> None:
    backoff = Backoff(initial, initial * span, rng=random.Random(seed))
    for _ in range(failures):
        backoff.next_delay()
    backoff.reset()
    assert initial / 2 <= backoff.next_delay() <= initial


@pytest.mark.parametrize(("initial", "maximum", "factor", "jitter", "message"), [
    (0, 1, 2, 0.5, "0 < initial_s <= max_s"),
    (2, 1, 2, 0.5, "0 < initial_s <= max_s"),
    (1, 2, 0.5, 0.5, "factor must be at least 1"),
    (1, 2, 2, 1.5, "jitter must be in [0, 1]"),
])
def test_bad_settings_fail_in_the_constructor(initial: float, maximum: float, factor: float,
                                              jitter: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Backoff(initial, maximum, factor=factor, jitter=jitter)


@pytest.mark.parametrize("settings", [
    SourceSettings(backoff_initial_s=0.5, backoff_max_s=2),
    MqttSettings(url="mqtt://broker", backoff_initial_s=0.5, backoff_max_s=2),
])
def test_cameras_and_mqtt_take_their_backoff_from_their_settings(
        settings: SourceSettings | MqttSettings) -> None:
    backoff = settings.backoff()
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [0.5, 1, 2, 2, 2, 2], strict=True):
        assert ceiling / 2 <= delay <= ceiling


def test_mqtt_backoff_is_validated_like_the_cameras() -> None:
    with pytest.raises(ValueError, match="backoff_max_s must be at least backoff_initial_s"):
        MqttSettings(url="mqtt://broker", backoff_initial_s=10, backoff_max_s=5)
