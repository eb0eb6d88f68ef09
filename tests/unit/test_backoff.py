"""edgeflow.transport.backoff: the delay arithmetic and the retry schedule (pure: no clock, no sleeping)."""

from __future__ import annotations

import random

import pytest

from edgeflow.errors import ConfigError
from edgeflow.transport.backoff import Backoff, RetrySchedule


def test_delays_double_up_to_the_cap():
    b = Backoff(initial=0.1, maximum=1.0, factor=2.0)
    assert [b.delay(n) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_a_long_outage_never_overflows():
    b = Backoff(initial=0.001, maximum=30.0, factor=10.0)
    assert b.delay(10_000) == 30.0 and b.delay(10**9) == 30.0


def test_factor_one_is_a_constant_delay():
    assert {Backoff(initial=0.5, maximum=0.5, factor=1.0).delay(n) for n in range(50)} == {0.5}
    assert [Backoff(initial=0.5, maximum=9.0, factor=1.0).delay(n) for n in (0, 5, 99)] == [0.5, 0.5, 0.5]


def test_jitter_stays_within_its_band_and_below_the_cap():
    b = Backoff(initial=1.0, maximum=8.0, jitter=0.5)
    assert b.delay(3, rand=0.0) == 8.0                    # rand 0: the full delay
    assert b.delay(3, rand=0.5) == 6.0
    rng = random.Random(1)
    draws = [b.delay(10, rng.random()) for _ in range(2000)]
    assert 4.0 <= min(draws) and max(draws) <= 8.0
    assert max(draws) - min(draws) > 3.5, "jitter should spread the delays over the band"


def test_delays_sequence_is_reproducible_with_a_seeded_rng():
    b = Backoff(initial=0.1, maximum=2.0, jitter=0.3)
    first = [d for d, _ in zip(b.delays(random.Random(42)), range(8))]
    again = [d for d, _ in zip(b.delays(random.Random(42)), range(8))]
    assert first == again
    plain = [d for d, _ in zip(Backoff(0.1, 2.0).delays(), range(6))]
    assert plain == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": -1}, {"initial": 2, "maximum": 1},
                                    {"factor": 0.5}, {"jitter": 1.5}, {"jitter": -0.1},
                                    {"initial": float("nan")}, {"maximum": float("inf")}, {"initial": True}])
def test_bad_parameters_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        Backoff(**kwargs)


def test_bad_attempt_or_rand_are_value_errors():
    with pytest.raises(ValueError):
        Backoff().delay(-1)
    with pytest.raises(ValueError):
        Backoff(jitter=0.5).delay(0, rand=1.0)


def test_retry_schedule_grows_then_starts_over():
    retry = RetrySchedule(Backoff(initial=0.1, maximum=0.4))
    assert retry.is_due(0.0) and retry.remaining(0.0) == 0.0
    assert retry.failed(10.0) == pytest.approx(10.1)
    assert not retry.is_due(10.05) and retry.remaining(10.05) == pytest.approx(0.05)
    assert retry.is_due(10.1)
    assert retry.failed(10.1) == pytest.approx(10.3)
    assert retry.failed(10.3) == pytest.approx(10.7)
    assert retry.failed(10.7) == pytest.approx(11.1)        # capped at 0.4
    assert retry.failures == 4
    retry.succeeded()
    assert retry.failures == 0 and retry.is_due(10.8)
    assert retry.failed(20.0) == pytest.approx(20.1)        # back to the initial delay


def test_retry_schedule_jitter_uses_the_given_rng():
    a = RetrySchedule(Backoff(initial=1.0, maximum=1.0, jitter=1.0), rng=random.Random(3))
    b = RetrySchedule(Backoff(initial=1.0, maximum=1.0, jitter=1.0), rng=random.Random(3))
    assert [a.failed(0.0) for _ in range(5)] == [b.failed(0.0) for _ in range(5)]
    assert all(0.0 <= a.failed(0.0) <= 1.0 for _ in range(100))
