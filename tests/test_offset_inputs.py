"""The compiled offset-operand scan (simulator/units/offset_inputs.py) against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.units import chunk_stepper, offset_inputs
from simulator.units.accumulator import narrow


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSIM_NUMBA", "1")
    if not chunk_stepper.numba_enabled():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(offset_inputs, "MIN_COMPILED", 1)


def _numpy(x: np.ndarray, zx: int) -> tuple[np.ndarray, int, int, np.ndarray]:
    xlo, xhi = int(x.min(initial=0)) - zx, int(x.max(initial=0)) - zx
    xdt = np.int16 if -(1 << 15) < xlo and xhi < (1 << 15) else np.int64
    ox = (x - zx).astype(xdt)
    return ox, xlo, xhi, np.abs(ox).sum(axis=1, dtype=np.int64)


def test_scan_equals_numpy(compiled: None) -> None:
    """x', its bounds and row sums of |x'|: int16 from -32767 to 32767, int64 from -32768
    (whose magnitude int16 cannot hold) or past 32767; the narrowed x' of acc_chunked.py
    likewise (int8 to int32)."""
    rng = np.random.default_rng(5)
    cases = [(rng.integers(lo, hi, (int(rng.integers(1, 40)), int(rng.integers(1, 300)))), zx)
             for lo, hi, zx in ((0, 256, 0), (0, 256, 255), (0, 256, 17), (-128, 128, 0),
                                (0, 70000, 3), (-40000, 40000, 0), (5, 9, 0))]
    edge = np.zeros((3, 4), dtype=np.int64)
    edge[0, 0], edge[1, 1] = 32767, -32768
    cases += [(edge, 0), (edge + 1, 0), (edge - 1, 0), (edge, 1), (edge, -1)]
    for x, zx in cases:
        x = np.ascontiguousarray(x, dtype=np.int64)
        got = offset_inputs.offset_inputs(x, zx)
        want = _numpy(x, zx)
        assert got[0].dtype == want[0].dtype and np.array_equal(got[0], want[0])
        assert got[1:3] == want[1:3] and np.array_equal(got[3], want[3])
        ox, xr = offset_inputs.narrow_offset(x, zx)
        wx, wr = narrow(x - zx)
        assert ox.dtype == wx.dtype and np.array_equal(ox, wx) and xr == wr
        assert offset_inputs.value_range(x) == (int(x.min()), int(x.max()))
        want_active = [sum(int(v) != zx for v in row) for row in x.tolist()]
        assert offset_inputs.count_active(x, zx).tolist() == want_active


def test_numpy_path_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    """HWSIM_NUMBA=0 and inputs that are not C-ordered int64 take the numpy path."""
    monkeypatch.setenv("HWSIM_NUMBA", "0")
    x = np.arange(24, dtype=np.int64).reshape(4, 6)
    for a in (x, x.T, x.astype(np.int32)):
        got = offset_inputs.offset_inputs(a, 2)
        want = _numpy(a, 2)
        assert np.array_equal(got[0], want[0]) and got[1:3] == want[1:3]


def test_count_active_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSIM_NUMBA", "0")
    x = np.array([[0, 3, 3, 7], [3, 3, 3, 3], [1, 2, 4, 5]], dtype=np.int64)
    got = offset_inputs.count_active(x, 3)
    assert got.dtype == np.int64 and got.tolist() == [2, 0, 4]
