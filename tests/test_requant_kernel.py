"""The compiled requantizer (simulator/units/requant_kernel.py) against the numpy path.

Both paths of ``requantize`` (HWSIM_NUMBA=1 / 0) on random accumulators of every size up to
2**40, the float32 schemes (fbgemm, qnnpack; ties to even) and fixed_point with every
rounding mode and explicit or automatic shifts: the same codes, unclamped values, per-neuron
clamp counts and first clamp. Products past 2**62 leave the kernel (the numpy path's wide
arithmetic runs). The torch / TFLite oracles of the requantizer run through this kernel too
(tests/test_oracle_torch.py, tests/test_engines_*.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import ConfigError
from simulator.units import requant_kernel, requantizer


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSIM_NUMBA", "1")
    if not requant_kernel.available():
        pytest.skip("numba is not installed")


def _both(monkeypatch: pytest.MonkeyPatch, *args, **kw):  # noqa: ANN002, ANN003
    out = []
    for numba_on in ("1", "0"):
        monkeypatch.setenv("HWSIM_NUMBA", numba_on)
        try:
            out.append(requantizer.requantize(*args, **kw))
        except ConfigError as exc:
            out.append(str(exc))
    return out


def _same(a, b) -> bool:  # noqa: ANN001
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
            and np.array_equal(a[2].low, b[2].low) and np.array_equal(a[2].high, b[2].high)
            and a[2].first == b[2].first)


def _assert_kernel_result(got: tuple, want: np.ndarray, clamp: tuple[int, int],
                          case: int) -> None:
    """A kernel's (codes, unclamped, low counts, high counts, first clamp) against the
    unclamped values ``want`` computed by numpy."""
    assert np.array_equal(got[1], want), case
    assert np.array_equal(got[0], np.clip(want, *clamp)), case
    assert np.array_equal(got[2], (want < clamp[0]).sum(axis=0)), case
    assert np.array_equal(got[3], (want > clamp[1]).sum(axis=0)), case
    outside = np.flatnonzero((want < clamp[0]) | (want > clamp[1]))
    assert got[4] == (int(outside[0]) if outside.size else -1), case


def test_fused_requantizer_equals_numpy(compiled: None, monkeypatch: pytest.MonkeyPatch) -> None:
    used = {"n": 0}
    for name in ("requantize_float32", "requantize_fixed"):
        real = getattr(requant_kernel, name)

        def counting(*a, _real=real, **kw):
            out = _real(*a, **kw)
            used["n"] += out is not None
            return out

        monkeypatch.setattr(requant_kernel, name, counting)
    rng = np.random.default_rng(2027)
    clamped = 0
    for case in range(150):
        q, n = int(rng.integers(1, 40)), int(rng.integers(1, 30))
        mag = int(rng.choice([100, 1 << 16, 1 << 24, 1 << 40]))
        acc = rng.integers(-mag, mag, (q, n))
        acc[0, 0] = -mag
        sw = rng.uniform(1e-4, 1e-2, n)
        sx, sy = float(rng.uniform(1e-3, 1e-1)), float(rng.uniform(1e-2, 10))
        zy = int(rng.integers(0, 256))
        clamp = (0, 255) if rng.random() < 0.5 else (-128, 127)
        for scheme, rnd in (("fbgemm", "half_even"), ("qnnpack", "half_even"),
                            ("fixed_point", str(rng.choice(requant_kernel.MODES)))):
            shift = int(rng.integers(20, 60)) if rng.random() < 0.3 else "auto"
            a, b = _both(monkeypatch, acc, scheme, sx, sw, sy, zy, rnd, clamp, shift=shift)
            assert _same(a, b), (case, scheme, rnd, shift)
            clamped += not isinstance(a, str) and a[2].first is not None
    assert used["n"] > 300 and clamped > 100


@pytest.mark.parametrize("mode", requant_kernel.MODES)
def test_ties_round_as_the_mode_says(mode: str, compiled: None,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact ties: acc * M0 / 2**s at k + 1/2 for k of both signs and parities (fixed
    point), and float32 products at k + 1/2 (ties to even)."""
    acc = np.arange(-9, 10, dtype=np.int64)[None, :] * np.array([[1], [3]])  # (2, 19)
    m0 = np.full(19, 1, dtype=np.int64)
    for shift in (0, 1, 2):
        got = requant_kernel.requantize_fixed(acc, m0, np.full(19, shift), mode, 0, (-50, 50))
        monkeypatch.setenv("HWSIM_NUMBA", "0")
        from simulator.fixedpoint import multiply_shift

        want = multiply_shift(acc, m0[None, :], np.full((1, 19), shift), mode)
        monkeypatch.setenv("HWSIM_NUMBA", "1")
        assert got is not None and np.array_equal(got[1], want), (mode, shift)
    if mode == "half_even":
        halves = np.arange(-7, 8, dtype=np.int64)[None, :]  # * 0.5: every k + 1/2 and k
        codes = requant_kernel.requantize_float32(halves, np.full(15, 0.5, np.float32), 3,
                                                  (-100, 100))[1]
        assert np.array_equal(codes, np.rint(halves * 0.5).astype(np.int64) + 3)


def test_wide_products_leave_the_kernel(compiled: None, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = np.array([[1 << 40, -(1 << 40)]], dtype=np.int64)
    assert requant_kernel.requantize_fixed(acc, np.array([1 << 30, 5]), np.array([40, 3]),
                                           "half_even", 0, (0, 255)) is None
    a, b = _both(monkeypatch, acc, "fixed_point", 1.0, np.array([0.9, 0.3]), 1.0, 0,
                 "half_even", (-(1 << 50), 1 << 50), multiplier_bits=31)
    assert _same(a, b)


def test_half_even_int32_loop_equals_numpy(compiled: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The half_even loop for |acc|, M0 < 2**31 (int32 x int32 products): accumulators at
    +-(2**31 - 1), M0 up to 2**31 - 1, shifts 1..62, exact ties of both parities, and the
    clamp counts of rows with and without clamps; the same as multiply_shift + zy."""
    from simulator.fixedpoint import multiply_shift

    rng = np.random.default_rng(31)
    top = (1 << 31) - 1
    for case in range(40):
        q, n = int(rng.integers(1, 12)), int(rng.integers(1, 40))
        acc = rng.integers(-top, top + 1, (q, n)) >> int(rng.integers(0, 31))
        acc[0, 0] = top if case % 2 else -top
        m0 = rng.integers(0, top + 1, n) >> int(rng.integers(0, 31))
        m0[0] = top
        shift = rng.integers(1, 63, n)
        if case % 4 == 0:  # ties: acc * M0 = (2k + 1) * 2**(s - 1)
            m0[:] = 1
            acc = (2 * rng.integers(-1000, 1000, (q, n)) + 1) << (shift - 1).clip(0, 20)
            shift = shift.clip(1, 21)
        zy = int(rng.integers(-50, 50))
        clamp = (-(1 << 40), 1 << 40) if case % 3 == 0 else (-60, 60)
        got = requant_kernel.requantize_fixed(acc, m0, shift, "half_even", zy, clamp)
        assert got is not None
        want = multiply_shift(acc, m0[None, :], shift[None, :], "half_even") + zy
        _assert_kernel_result(got, want, clamp, case)


@pytest.mark.parametrize("kind", ["float32", "fixed", "half_even_int32"])
def test_rows_with_and_without_clamps(kind: str, compiled: None) -> None:
    """Only rows with a clamp are clipped into the codes; the others are copied: rows of
    every sort mixed in one block and across blocks, against np.clip and counts by numpy."""
    from simulator.fixedpoint import multiply_shift

    rng = np.random.default_rng(7)
    for case in range(30):
        q, n = int(rng.integers(1, 70)), int(rng.integers(1, 50))
        acc = rng.integers(-40, 41, (q, n))  # in range once scaled ...
        wild = rng.random(q) < rng.uniform(0, 1)  # ... except these rows
        acc[wild] *= int(rng.integers(2, 9))
        zy, clamp = int(rng.integers(-5, 6)), (-50, 50)
        if kind == "float32":
            m = np.full(n, 1.0, np.float32)
            got = requant_kernel.requantize_float32(acc, m, zy, clamp)
            want = acc + zy
        else:
            m0, shift = np.full(n, 3, np.int64), np.full(n, 1, np.int64)
            mode = "half_even" if kind == "half_even_int32" else "half_up"
            got = requant_kernel.requantize_fixed(acc, m0, shift, mode, zy, clamp)
            assert got is not None
            want = multiply_shift(acc, m0[None, :], shift[None, :], mode) + zy
        _assert_kernel_result(got, want, clamp, case)


def test_register_range_spares_the_scan(compiled: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """requantize_fixed with the accumulator register's range (acc_range) gives what it gives
    after scanning: a 32-bit register (-2**31 itself included) settles the int32 loop
    without a scan; a 48-bit register's bound is too wide for int64 products with a 31-bit
    M0, so the accumulators are scanned and the kernel still runs."""
    from simulator.fixedpoint import multiply_shift
    from simulator.units import offset_inputs

    scans = {"n": 0}
    real = requant_kernel.value_range

    def counting(a):  # noqa: ANN001, ANN202
        scans["n"] += 1
        return real(a)

    monkeypatch.setattr(requant_kernel, "value_range", counting)
    rng = np.random.default_rng(5)
    top = 1 << 31
    for bits, want_scans in ((32, 0), (48, 1)):
        acc = rng.integers(-top, top, (9, 23))
        acc[0, :3] = (-top, top - 1, 0)
        m0 = rng.integers(1 << 29, top, 23)
        shift = rng.integers(31, 40, 23)
        scans["n"] = 0
        reg = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        got = requant_kernel.requantize_fixed(acc, m0, shift, "half_even", 3, (-9, 9), reg)
        assert got is not None and scans["n"] == want_scans, bits
        want = multiply_shift(acc, m0[None, :], shift[None, :], "half_even") + 3
        assert np.array_equal(got[1], want) and np.array_equal(got[0], np.clip(want, -9, 9))
        assert offset_inputs.value_range(acc) == (-top, top - 1)
