"""pvclock scale math and the host TSC (xen_core.time)."""
import pytest
from hypothesis import given, strategies as st

from xen_core import time as xt


def test_scale_matches_xens_normalisation():
    # 2.4 GHz: halved once into (1e9, 2e9], mul = 2^32 * 1e9 / 1.2e9.
    assert xt.time_scale(2_400_000_000) == (3579139413, -1)
    # 1 GHz is not above 1e9: doubled once, mul = 2^31.
    assert xt.time_scale(1_000_000_000) == (1 << 31, 1)
    # 25 MHz (an ARM-ish counter) needs several left shifts.
    mul, shift = xt.time_scale(25_000_000)
    assert shift == 6 and xt.scale_delta(25_000_000, mul, shift) in range(999_999_999, 1_000_000_001)


@given(st.integers(min_value=1_000_000, max_value=20_000_000_000))
def test_one_second_of_ticks_is_one_second(hz):
    mul, shift = xt.time_scale(hz)
    assert 0 < mul < 1 << 32 and -128 <= shift <= 127
    # A day of ticks converts within a few ns per second of the exact value.
    day = 86_400
    ns = xt.scale_delta(hz * day, mul, shift)
    assert abs(ns - day * 1_000_000_000) <= 5 * day


def test_rejects_zero_rate():
    with pytest.raises(ValueError):
        xt.time_scale(0)


def test_host_tsc_runs_at_the_measured_rate():
    hz = xt.tsc_hz()
    assert 100_000_000 < hz < 10_000_000_000
    t0, n0 = xt.sample()
    t1, n1 = xt.sample()
    assert t1 > t0 and n1 >= n0
