"""The SIMD tile loop (simulator/units/tile_simd.py) against plain step loops.

Unit level: :func:`tile_simd.step_dense` against a Python-integer step loop written here, on
random shapes (G = 1..7, ragged neuron counts, negative offset inputs, every register width
the int32 lanes allow), subsets of lane blocks, and hand-made register edges. Engine level:
whole networks through ``simulate`` against the stepwise engine, with the whole-pair tiles
forced, with wrapping runs routed to the tiles, through the every-pair route (wrap and
saturate, the exact sums taken from the loop), and the fallback when the self-test fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_overflow_paths import _check, _count_results, _one_layer_net, chunked_case

from simulator.config import load_config
from simulator.engine import simulate
from simulator.engine.stepwise import compare_with_fast, simulate_stepwise
from simulator.fixedpoint import Register
from simulator.units import acc_chunked, chunk_stepper, tile_simd, tile_stepper


@pytest.fixture
def simd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSIM_NUMBA", "1")
    monkeypatch.setenv("HWSIM_SIMD", "1")
    if not chunk_stepper.numba_enabled():
        pytest.skip("numba (and its llvmlite) is not installed")
    import llvmlite.binding

    if not hasattr(llvmlite.binding, "create_pass_builder"):
        pytest.skip("this llvmlite predates the IR the SIMD loop is written in")
    if not tile_simd.available():  # a current llvmlite: a failed self-test is a bug
        pytest.fail(f"the SIMD tile loop is unavailable: {tile_simd.why_unavailable()}")


def _plain(ox: np.ndarray, ow: np.ndarray, g: int, reg: Register, wrap: bool
           ) -> dict[str, np.ndarray]:
    """Per pair, in Python integers: register, events, first event step and value (the
    unclipped / unwrapped sum), min and max of the checkpoint partial sums (0 included), the
    exact sum."""
    q, k = ox.shape
    n = ow.shape[0]
    names = ("r", "events", "first_step", "first_value", "pmin", "pmax", "sums")
    out = {nm: np.zeros((q, n), dtype=np.int64) for nm in names}
    out["first_step"][:] = -1
    for i in range(q):
        for j in range(n):
            r = p = lo = hi = events = 0
            first = (-1, 0)
            for step, a in enumerate(range(0, k, g)):
                t = sum(int(ox[i, kk]) * int(ow[j, kk]) for kk in range(a, min(a + g, k)))
                e = r + t
                p += t
                lo, hi = min(lo, p), max(hi, p)
                if wrap:
                    c = (e - reg.min) % (1 << reg.bits) + reg.min
                else:
                    c = min(max(e, reg.min), reg.max)
                if c != e:
                    events += 1
                    if first[0] < 0:
                        first = (step, e)
                r = c
            vals = (r, events, first[0], first[1], lo, hi, p)
            for nm, v in zip(names, vals, strict=True):
                out[nm][i, j] = v
    return out


@pytest.mark.parametrize("shape", [(16, 1), (8, 3)])
def test_step_dense_equals_a_plain_loop(simd: None, shape: tuple[int, int],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """shape: (lanes, queries) per item: the production one, and one that shares each
    weight load among three queries (padding rows, several chains per step)."""
    monkeypatch.setattr(tile_simd, "LANES", shape[0])
    monkeypatch.setattr(tile_simd, "QUERIES", shape[1])
    rng = np.random.default_rng(31 + shape[1])
    names = ("r", "events", "first_step", "first_value", "pmin", "pmax", "sums")
    for case in range(160 if shape[1] == 1 else 60):
        q, k, n = int(rng.integers(1, 4)), int(rng.integers(1, 60)), int(rng.integers(1, 40))
        g = int(rng.integers(1, 8))
        xr = (-255, 255) if rng.random() < 0.4 else (0, 255)
        ox = rng.integers(xr[0], xr[1] + 1, (q, k))
        ow = rng.integers(-255, 256, (n, k)) if rng.random() < 0.3 else \
            rng.integers(-128, 128, (n, k))
        if rng.random() < 0.3:
            ox[:, rng.random(k) < 0.5] = 0  # steps with no product at all
        bits = int(rng.choice([4, 8, 12, 16, 20, 24, 28]))
        reg = Register(bits, bool(rng.random() < 0.8))  # some unsigned
        wrap = bool(rng.random() < 0.5)
        assert tile_simd.fits(reg, g, k, (-255, 255), (-255, 255))
        mask = rng.random((q, n)) < (1.0 if rng.random() < 0.5 else 0.3)
        track = rng.random((q, n)) < 0.5 if rng.random() < 0.5 else np.zeros((q, n), bool)
        items = tile_simd.items_of(mask & ~track)
        titems = tile_simd.items_of(track)
        got = dict(zip(names, tile_simd.step_dense(ox, ow, g, reg, wrap, items, titems),
                       strict=True))
        want = _plain(ox, ow, g, reg, wrap)
        blocks = np.arange(n) // tile_simd.LANES
        stepped = np.zeros((q, n), dtype=bool)
        qb = tile_simd.QUERIES
        for its in (items, titems):
            for qq, b in its:
                stepped[qq:qq + qb, blocks == b] = True
        tracked = np.zeros((q, n), dtype=bool)
        for qq, b in titems:
            tracked[qq:qq + qb, blocks == b] = True
        assert (stepped >= (mask | track)).all()
        for nm in names:
            sel = tracked if nm in ("pmin", "pmax") or nm == "sums" and not wrap else stepped
            a = got[nm].astype(np.int64)
            assert np.array_equal(a[sel], want[nm][sel]), \
                f"case {case} {nm}: G={g} bits={bits} wrap={wrap}"
            blank = -1 if nm == "first_step" else 0
            assert (a[~stepped] == blank).all(), f"case {case} {nm}: a pair not stepped was written"


@pytest.mark.parametrize("wrap", [False, True])
def test_register_edges(simd: None, wrap: bool) -> None:
    """A sum exactly at max, then exactly at min (no event); one past either (an event at
    that step, its value kept); a 4-input step checked once, at its end (-256)."""
    reg = Register(8, True)
    w = np.array([[1, -1, 1, 1], [1, -1, 1, -1], [1, -1, 1, 1]])
    x = np.array([[127, 255, 0, 0], [128, 0, 0, 0], [0, 255, 0, 0]])
    items = tile_simd.items_of(np.ones((3, 3), dtype=bool))
    r, ev, fs, fv, _, _, _ = tile_simd.step_dense(x, w, 1, reg, wrap, items)
    assert ev[0, 0] == 0 and r[0, 0] == -128
    assert ev[1, 1] == 1 and fs[1, 1] == 0 and fv[1, 1] == 128
    assert ev[2, 2] == 1 and fs[2, 2] == 1 and fv[2, 2] == -255
    x4 = np.array([[127, 127, 255, 255]])
    w4 = np.array([[1, 1, -1, -1]])  # one step of G=4: +254 then -510 inside the tree
    r, ev, fs, fv, lo, hi, _ = tile_simd.step_dense(x4, w4, 4, reg, wrap,
                                                 np.zeros((0, 2), np.int64),
                                                 tile_simd.items_of(np.ones((1, 1), bool)))
    assert ev[0, 0] == 1 and fv[0, 0] == -256 and lo[0, 0] == -256 and hi[0, 0] == 0
    assert r[0, 0] == (0 if wrap else -128)


def test_fits_bounds() -> None:
    assert tile_simd.fits(Register(30, True), 4, 3136, (0, 255), (-128, 127))
    assert not tile_simd.fits(Register(31, True), 4, 3136, (0, 255), (-128, 127))
    assert not tile_simd.fits(Register(20, True), 4, 3136, (0, 32768), (-1, 1))
    assert not tile_simd.fits(Register(20, True), 4, 70_000, (0, 255), (-128, 127))  # |P|


def test_switch_and_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSIM_SIMD", "0")
    assert not tile_simd.available() and tile_simd.why_unavailable() == "HWSIM_SIMD=0"


def _count(monkeypatch: pytest.MonkeyPatch, mod: object, name: str) -> dict[str, int]:
    calls = {"n": 0}
    real = getattr(mod, name)

    def counting(*a, **kw):
        calls["n"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(mod, name, counting)
    return calls


def _count_gathered(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the SIMD tile calls of event-driven schedules (gathered weight rows)."""
    gathered = {"n": 0}
    real = tile_simd.step_dense

    def counting(*a, **kw):
        gathered["n"] += kw.get("active") is not None
        return real(*a, **kw)

    monkeypatch.setattr(tile_simd, "step_dense", counting)
    return gathered


@pytest.mark.slow  # ~20 s: the stepwise engine on 60 configurations
def test_simd_tiles_equal_stepwise(simd: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole-pair tiles forced (events_dense), random configurations of every mode, dense
    and event-driven (gathered weights), all in SIMD tiles where the values fit int32."""
    monkeypatch.setattr(acc_chunked, "events_dense", lambda *a: True)
    used = _count(monkeypatch, tile_simd, "step_dense")
    gathered = _count_gathered(monkeypatch)
    for seed in range(60):
        net, cfg, x, sets = chunked_case(30_000 + seed)
        diffs = compare_with_fast(simulate(net, cfg, x), simulate_stepwise(net, cfg, x))
        assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
    assert used["n"] > 15 and gathered["n"] > 5


def test_wrap_runs_in_simd_tiles(simd: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrapping registers, dense schedule, most pairs live: SIMD tiles instead of the
    streamed pass; exact against the stepwise engine."""
    monkeypatch.setattr(acc_chunked, "events_dense", lambda *a: False)
    used = _count(monkeypatch, tile_simd, "step_dense")
    streamed = _count(monkeypatch, acc_chunked, "evaluate_wrap_streamed")
    for seed in range(30):
        net, cfg, x, sets = chunked_case(40_000 + seed)
        sets = [*sets, "accumulator.overflow=wrap", "schedule.mode=dense"]
        cfg = load_config(cfg.name, sets)
        diffs = compare_with_fast(simulate(net, cfg, x), simulate_stepwise(net, cfg, x))
        assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
    assert used["n"] > 10 and used["n"] > streamed["n"]


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("policy", ["wrap", "saturate"])
def test_width_tracked_in_simd_tiles(sign: int, policy: str, simd: None,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """min_safe_acc_bits from partial sums tracked in the SIMD tiles: the widest partial sum
    sits one past a power of two (15 bits exactly), events on the 12-bit register."""
    monkeypatch.setattr(acc_chunked, "events_dense", lambda *a: True)
    ranged = _count(monkeypatch, acc_chunked, "_partial_range")
    used = _count(monkeypatch, tile_simd, "step_dense")
    row = [-127] * 64 + [-65] + [127] * 65 if sign > 0 else [127] * 64 + [64] + [-127] * 65
    st = _check(_one_layer_net(np.array([row, row, row])),
                ["accumulator.adder_tree_width=1", "mac.lanes=1", "accumulator.bits=12",
                 f"accumulator.overflow={policy}"], np.ones((4, len(row))), None, monkeypatch)
    assert used["n"] > 0 and ranged["n"] == 0
    assert st.min_safe_acc_bits == 15
    assert (st.acc_wrap.sum() if policy == "wrap" else st.acc_saturate.sum()) > 0


def test_failed_self_test_keeps_the_float_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop that fails its self-test is never used; the float tiles give the same results."""
    monkeypatch.setenv("HWSIM_NUMBA", "1")
    if not tile_stepper.tiles_available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(tile_simd, "_STATE", {"ok": False, "why": "broken on purpose"})
    monkeypatch.setattr(acc_chunked, "events_dense", lambda *a: True)
    used = _count(monkeypatch, tile_simd, "step_dense")
    floats = _count(monkeypatch, tile_stepper, "step_tiles")
    net, cfg, x, sets = chunked_case(30_001)
    cfg = load_config(cfg.name, [*sets, "schedule.mode=dense"])
    assert not compare_with_fast(simulate(net, cfg, x), simulate_stepwise(net, cfg, x))
    assert used["n"] == 0 and floats["n"] > 0
    assert tile_simd.why_unavailable() == "broken on purpose"


def test_self_test_catches_a_wrong_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The self-test compares with a plain loop: an off-by-one first step must fail it."""
    if not tile_simd.enabled():
        pytest.skip("HWSIM_SIMD=0")
    try:
        import llvmlite  # noqa: F401
    except ImportError:
        pytest.skip("llvmlite is not installed")
    real = tile_simd.step_dense

    def off_by_one(*a, **kw):
        out = list(real(*a, **kw))
        out[2] = np.where(out[2] >= 0, out[2] + 1, out[2])
        return tuple(out)

    monkeypatch.setattr(tile_simd, "step_dense", off_by_one)
    assert "differs" in tile_simd._self_test()


@pytest.mark.parametrize("sign", [1, -1])
def test_wrap_tiles_track_what_the_sign_hull_leaves_open(sign: int, simd: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrapping with inputs >= 0: neither the absolute-sum product nor the live-pair
    sample runs; the sign hull [S - U, U] (exact for the few pairs it leaves open) decides
    which pairs the tiles track, and the width is still exact (15 bits, one past a power of
    two)."""
    sampled = _count(monkeypatch, acc_chunked, "_most_pairs_live")
    hulls = _count(monkeypatch, acc_chunked, "_sign_hull")
    used = _count(monkeypatch, tile_simd, "step_dense")
    row = [-127] * 64 + [-65] + [127] * 65 if sign > 0 else [127] * 64 + [64] + [-127] * 65
    quiet = [1, -1] * (len(row) // 2)  # partial sums in {0, 1}: inside every width
    st = _check(_one_layer_net(np.array([row, quiet, row])),
                ["accumulator.adder_tree_width=1", "mac.lanes=1", "accumulator.bits=12",
                 "accumulator.overflow=wrap"], np.ones((4, len(row))), None, monkeypatch)
    assert used["n"] > 0 and hulls["n"] > 0 and sampled["n"] == 0
    assert st.min_safe_acc_bits == 15 and st.acc_wrap.sum() > 0


@pytest.mark.slow  # ~15 s: the stepwise engine on 80 configurations
def test_wrap_everywhere_steps_every_pair_first(simd: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Registers that wrap in nearly every pair (forced here: EVENTS_EVERYWHERE = 0): every
    pair is stepped in SIMD tiles before any full product, S comes from the loop's exact
    path, and partial sums are tracked in a second pass for the pairs the hull leaves open
    (the sign hull for inputs >= 0, the absolute sums otherwise) or in the one pass
    (report.headroom = bound); dense and event-driven schedules, random configurations,
    exact against the stepwise engine."""
    monkeypatch.setattr(acc_chunked, "EVENTS_EVERYWHERE", 0.0)
    taken = _count_results(monkeypatch, "_every_pair", acc_chunked._every_pair)
    reopened = {"n": 0}
    real = acc_chunked._outside_hull

    def outside(*a, **kw):
        qs, js = real(*a, **kw)
        reopened["n"] += qs.size > 0
        return qs, js

    monkeypatch.setattr(acc_chunked, "_outside_hull", outside)
    gathered = _count_gathered(monkeypatch)
    for seed in range(80):
        net, cfg, x, sets = chunked_case(70_000 + seed)
        sets = [*sets, "accumulator.overflow=wrap", "mac.operand=offset"]
        cfg = load_config(cfg.name, sets)
        diffs = compare_with_fast(simulate(net, cfg, x), simulate_stepwise(net, cfg, x))
        assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
    assert taken["n"] > 40 and reopened["n"] > 3 and gathered["n"] > 10


@pytest.mark.slow  # ~10 s: the stepwise engine on 60 configurations
def test_saturate_everywhere_steps_every_pair(simd: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Saturating registers that clip nearly everywhere (forced here: EVENTS_EVERYWHERE =
    0): every pair stepped in SIMD tiles first, with the exact sums carried alongside (no
    separate product), partial sums tracked in a second pass where the sign hull leaves the
    final sums' width; dense and event-driven, exact against the stepwise engine."""
    monkeypatch.setattr(acc_chunked, "EVENTS_EVERYWHERE", 0.0)
    taken = _count_results(monkeypatch, "_every_pair", acc_chunked._every_pair)
    for seed in range(60):
        net, cfg, x, sets = chunked_case(80_000 + seed)
        sets = [*sets, "accumulator.overflow=saturate", "mac.operand=offset"]
        cfg = load_config(cfg.name, sets)
        diffs = compare_with_fast(simulate(net, cfg, x), simulate_stepwise(net, cfg, x))
        assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
    assert taken["n"] > 20


@pytest.mark.parametrize("sign", [1, -1])
def test_wrap_everywhere_width_from_the_second_pass(sign: int, simd: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pair stepped first (forced), untracked; the widest partial sum, one past a
    power of two, lies in a pair the sign hull leaves open: the second pass must find
    min_safe_acc_bits = 15 exactly, with no full product for S."""
    monkeypatch.setattr(acc_chunked, "EVENTS_EVERYWHERE", 0.0)
    taken = _count_results(monkeypatch, "_every_pair", acc_chunked._every_pair)
    products = _count(monkeypatch, acc_chunked, "exact_matmul")
    row = [-127] * 64 + [-65] + [127] * 65 if sign > 0 else [127] * 64 + [64] + [-127] * 65
    quiet = [1, -1] * (len(row) // 2)
    st = _check(_one_layer_net(np.array([row, quiet, row])),
                ["accumulator.adder_tree_width=1", "mac.lanes=1", "accumulator.bits=12",
                 "accumulator.overflow=wrap"], np.ones((4, len(row))), None, monkeypatch)
    assert taken["n"] > 0
    assert st.min_safe_acc_bits == 15 and st.acc_wrap.sum() > 0
    assert products["n"] == taken["n"]  # only the samples of _events_nearly_everywhere


@pytest.mark.parametrize("sign", [1, -1])
def test_saturate_everywhere_tracks_what_the_hull_leaves_open(
        sign: int, simd: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pair stepped (forced), clipping on a 12-bit register, the sums carried in the
    loop; the widest partial sum, one past a power of two, in a pair the sign hull leaves
    open: 15 bits exactly, with no full product for S."""
    monkeypatch.setattr(acc_chunked, "EVENTS_EVERYWHERE", 0.0)
    taken = _count_results(monkeypatch, "_every_pair", acc_chunked._every_pair)
    products = _count(monkeypatch, acc_chunked, "exact_matmul")
    row = [-127] * 64 + [-65] + [127] * 65 if sign > 0 else [127] * 64 + [64] + [-127] * 65
    quiet = [1, -1] * (len(row) // 2)
    st = _check(_one_layer_net(np.array([row, quiet, row])),
                ["accumulator.adder_tree_width=1", "mac.lanes=1", "accumulator.bits=12",
                 "accumulator.overflow=saturate"], np.ones((4, len(row))), None, monkeypatch)
    assert taken["n"] > 0
    assert st.min_safe_acc_bits == 15 and st.acc_saturate.sum() > 0
    assert products["n"] == taken["n"]  # only the samples of _events_nearly_everywhere


def test_positive_bound_is_an_upper_bound() -> None:
    from simulator.units.sign_split import positive_bound

    rng = np.random.default_rng(5)
    for _ in range(20):
        q, k, n = (int(v) for v in rng.integers(1, 300, 3))
        x = rng.integers(0, 256, (q, k))
        x[rng.random((q, k)) < 0.3] = 0
        w = rng.integers(-128, 128, (n, k)).astype(np.int8)
        u = positive_bound(x.astype(np.int16), w, int(x.max()))
        pos = x.astype(np.int64) @ np.maximum(w, 0).astype(np.int64).T
        assert u is not None and u.dtype == np.int64
        assert (u >= pos).all()
        # inputs constant over each block of 4: the bound is exact
        one = np.repeat(x[:, ::4], 4, axis=1)[:, :k]
        u1 = positive_bound(one.astype(np.int16), w, max(int(one.max()), 1))
        assert np.array_equal(u1, one.astype(np.int64) @ np.maximum(w, 0).astype(np.int64).T)


def test_a_failing_variant_stays_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each variant is checked against a plain loop before its first use: one that differs
    is never used (the float tiles run, with the same results), the others still are."""
    monkeypatch.setenv("HWSIM_NUMBA", "1")
    if not tile_stepper.tiles_available() or not tile_simd.available():
        pytest.skip("no compiled tiles here")
    state = {k: v for k, v in tile_simd._STATE.items() if not (
        isinstance(k, tuple) and k[0] == "ready")}
    monkeypatch.setattr(tile_simd, "_STATE", state)
    real = tile_simd._check
    monkeypatch.setattr(tile_simd, "_check", lambda g, wrap, gather=False:
                        "broken" if -(-g // 2) == 1 else real(g, wrap, gather))
    assert not tile_simd.ready(1, True) and not tile_simd.ready(2, False)
    assert tile_simd.ready(3, True) and tile_simd.ready(4, False)
    monkeypatch.setattr(acc_chunked, "events_dense", lambda *a: True)
    used = _count(monkeypatch, tile_simd, "step_dense")
    floats = _count(monkeypatch, tile_stepper, "step_tiles")
    row = [-127] * 64 + [-65] + [127] * 65
    _check(_one_layer_net(np.array([row, row])),
           ["accumulator.adder_tree_width=2", "mac.lanes=1", "accumulator.bits=12",
            "accumulator.overflow=saturate"], np.ones((3, len(row))), None, monkeypatch)
    assert used["n"] == 0 and floats["n"] > 0


def test_event_driven_tiles_equal_a_plain_loop(simd: None) -> None:
    """Event-driven steps: each query's active inputs only, G of them per step (a query
    may have none); the plain loop drops the inactive inputs first."""
    rng = np.random.default_rng(77)
    names = ("r", "events", "first_step", "first_value", "pmin", "pmax", "sums")
    for case in range(80):
        q, k, n = int(rng.integers(1, 5)), int(rng.integers(1, 50)), int(rng.integers(1, 35))
        g = int(rng.integers(1, 6))
        active = rng.random((q, k)) < rng.uniform(0.0, 1.0)
        ox = np.where(active, rng.integers(-255, 256, (q, k)), 0)
        ow = rng.integers(-128, 128, (n, k))
        reg = Register(int(rng.choice([6, 10, 14, 20])), True)
        wrap = bool(rng.random() < 0.5)
        track = rng.random() < 0.5
        its = tile_simd.items_of(np.ones((q, n), dtype=bool), 1)
        got = dict(zip(names, tile_simd.step_dense(
            ox, ow, g, reg, wrap, its[:0] if track else its, its if track else None,
            active=active), strict=True))
        for i in range(q):
            want = _plain(ox[i:i + 1, active[i]], ow[:, active[i]], g, reg, wrap)
            for nm in names if track else names[:4] + (("sums",) if wrap else ()):
                assert np.array_equal(got[nm][i].astype(np.int64), want[nm][0]), \
                    f"case {case} query {i} {nm}: G={g} wrap={wrap}"


def test_first_events_of_the_first_query_with_one(simd: None) -> None:
    """The loop without first events, then tile_stepper's second run of the first query
    that has an event: that query's first events equal the full loop's (dense and
    event-driven, items with and without tracking); every other query keeps -1 / 0."""
    rng = np.random.default_rng(78)
    seen = set()
    for case in range(60):
        q, k, n = int(rng.integers(2, 6)), int(rng.integers(1, 50)), int(rng.integers(1, 40))
        g = int(rng.integers(1, 6))
        quiet = int(rng.integers(0, q))  # queries before this one have no input at all
        ox = rng.integers(-255, 256, (q, k))
        ox[:quiet] = 0
        ow = rng.integers(-128, 128, (n, k))
        reg = Register(int(rng.choice([6, 10, 14])), True)
        wrap = bool(rng.random() < 0.5)
        gather = bool(rng.random() < 0.5)
        active = (rng.random((q, k)) < 0.7) if gather else None
        if active is not None:
            ox = np.where(active, ox, 0)
        its = tile_simd.items_of(np.ones((q, n), dtype=bool), 1 if gather else None)
        cut = int(rng.integers(0, len(its) + 1))  # some blocks in the tracking run
        parts = (its[:cut], its[cut:] if cut < len(its) else None)
        full = tile_simd.step_dense(ox, ow, g, reg, wrap, *parts, active=active)
        fast = tile_simd.step_dense(ox, ow, g, reg, wrap, *parts, active=active,
                                    first_events=False)
        for a, b in zip(full[:2] + full[4:], fast[:2] + fast[4:], strict=True):
            assert np.array_equal(a, b), f"case {case}"
        assert (fast[2] == -1).all() and not fast[3].any()
        tile_stepper._first_query_events(ox, ow, g, reg, wrap, parts[0], parts[1], None,
                                         active, fast[1], fast[2], fast[3])
        hit = np.flatnonzero(full[1].any(axis=1))
        for i in range(q):
            if hit.size and i == hit[0]:
                seen.add(i > 0)
                assert np.array_equal(fast[2][i], full[2][i]), f"case {case} query {i}"
                assert np.array_equal(fast[3][i], full[3][i]), f"case {case} query {i}"
            else:
                assert (fast[2][i] == -1).all() and not fast[3][i].any(), f"case {case}"
    assert seen == {False, True}  # the first query with an event: query 0 and a later one


def test_first_events_only_among_the_pairs_asked_for(simd: None) -> None:
    """An event of a pair outside ``live`` (stepped only because its lane block was) does
    not pick the query: the first query with an event among the live pairs does."""
    rng = np.random.default_rng(79)
    q, k, n = 3, 40, 16
    ox = rng.integers(0, 256, (q, k))
    ow = rng.integers(-128, 128, (n, k))
    reg = Register(6, True)  # every pair has events
    its = tile_simd.items_of(np.ones((q, n), dtype=bool))
    full = tile_simd.step_dense(ox, ow, 4, reg, True, its)
    fast = tile_simd.step_dense(ox, ow, 4, reg, True, its, first_events=False)
    live = np.zeros((q, n), dtype=bool)
    live[2, 5] = True  # query 0 and 1 have events, but only in pairs not asked for
    tile_stepper._first_query_events(ox, ow, 4, reg, True, its, None, None, None, fast[1],
                                     fast[2], fast[3], live)
    assert full[1][0].any() and full[1][2, 5] > 0
    assert np.array_equal(fast[2][2], full[2][2]) and np.array_equal(fast[3][2], full[3][2])
    assert (fast[2][:2] == -1).all()


@pytest.mark.parametrize("policy", ["wrap", "saturate"])
def test_registers_match_fxpmath(simd: None, policy: str) -> None:
    """The register of every pair, stepped by fxpmath (a separate fixed-point library):
    each step's exact tree output added to an ``Fxp(n_word=bits, overflow=policy)``
    register; an event iff fxpmath's value differs from the exact sum. The SIMD loop must
    give the same registers, event counts, first event steps and values."""
    fxpmath = pytest.importorskip("fxpmath")
    rng = np.random.default_rng(2027 + (policy == "wrap"))
    for bits, g in ((9, 4), (12, 3), (16, 2), (20, 4)):
        q, k, n = 2, 300, 18
        ox = rng.integers(0, 256, (q, k))
        ow = rng.integers(-128, 60, (n, k))  # sums drift down: events at every width here
        reg = Register(bits, True)
        its = tile_simd.items_of(np.ones((q, n), dtype=bool))
        r, ev, fs, fv, _, _, _ = tile_simd.step_dense(ox, ow, g, reg, policy == "wrap", its)
        prods = ox[:, None, :] * ow[None, :, :]
        acc = np.zeros((q, n), dtype=np.int64)
        events = np.zeros((q, n), dtype=np.int64)
        first = np.full((q, n), -1, dtype=np.int64)
        value = np.zeros((q, n), dtype=np.int64)
        for s, a in enumerate(range(0, k, g)):
            e = acc + prods[:, :, a:a + g].sum(axis=2)
            held = np.asarray(fxpmath.Fxp(e, signed=True, n_word=bits, n_frac=0,
                                          overflow=policy).val).astype(np.int64)
            hit = held != e
            new = hit & (first < 0)
            first[new], value[new] = s, e[new]
            events += hit
            acc = held
        assert events.sum() > 0, f"{bits} bits: no event to compare"
        for name, got, want in (("register", r, acc), ("events", ev, events),
                                ("first step", fs, first), ("first value", fv, value)):
            assert np.array_equal(got.astype(np.int64), want), f"{policy} {bits} bits {name}"


def test_run_shared_covers_every_item_once_and_reraises() -> None:
    """The pieces handed to the threads cover [0, count) exactly once; an error in any
    thread comes back to the caller."""
    import threading

    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def run(i0: int, i1: int) -> None:
        with lock:
            seen.append((i0, i1))

    for count, threads in ((1000, 2), (7, 3), (0, 2), (33, 8)):
        seen.clear()
        tile_simd.run_shared(run, count, threads)
        covered = sorted(i for a, b in seen for i in range(a, b))
        assert covered == list(range(count)), (count, threads)

    def fails(i0: int, i1: int) -> None:
        if i0 > 0:
            raise RuntimeError("piece failed")

    with pytest.raises(RuntimeError, match="piece failed"):
        tile_simd.run_shared(fails, 100, 2)
