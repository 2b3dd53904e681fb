"""numba's parallel kernels: the threading layer they run on, and concurrent callers.

Off the main thread hwsim uses its numpy fallbacks unless HWSIM_NUMBA_THREADS=1
(chunk_stepper.numba_enabled); the thread tests below ask for numba explicitly.

simulator/units/chunk_stepper.py picks numba's ``workqueue`` layer (idle workers sleep; the
default OpenMP layer's spinning workers slowed the BLAS products between kernels several
times, docs/performance.md) unless NUMBA_THREADING_LAYER is set, and every parallel kernel
call holds ``PARALLEL_LOCK``: the workqueue layer ends the process when two threads enter it
at once. Each check runs in a fresh interpreter, where the layer is still unchosen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from simulator.units import chunk_stepper


def _run(code: str, env_extra: dict[str, str] | None = None) -> str:
    if not chunk_stepper.numba_enabled():
        pytest.skip("numba is not installed")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env["HWSIM_NUMBA"] = "1"
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip().splitlines()[-1]


_CONCURRENT = """
    import threading
    import numba
    import numpy as np
    from simulator.bench import bench_config, bench_inputs, bench_network
    from simulator.engine import simulate

    net = bench_network(320, 256, 64)
    x = bench_inputs(24, 320)
    cfgs = [bench_config(["accumulator.bits=17", 'accumulator.overflow="wrap"']),
            bench_config(["accumulator.bits=16", 'accumulator.overflow="saturate"'])]
    alone = [simulate(net, c, x) for c in cfgs]
    def events(r, kind):
        return sum(int(getattr(st, kind).sum()) for lr in r.layers for st in lr.mac.values())
    assert events(alone[0], "acc_wrap") > 0 and events(alone[1], "acc_saturate") > 0
    got = [None] * 8
    def work(i):
        got[i] = simulate(net, cfgs[i % 2], x)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(got):
        ref = alone[i % 2]
        assert np.array_equal(r.outputs, ref.outputs)
        for a, b in zip(r.layers, ref.layers):
            for path in b.acc:
                assert np.array_equal(a.acc[path], b.acc[path])
                for kind in ("acc_wrap", "acc_saturate"):
                    assert np.array_equal(getattr(a.mac[path], kind), getattr(b.mac[path], kind))
    print(numba.threading_layer())
"""


def test_parallel_kernels_run_on_workqueue_and_tolerate_threads() -> None:
    """Eight threads run wrap and saturate configs at once: no abort, the same integers as
    one at a time, and the parallel kernels ran (``threading_layer`` raises otherwise) on the
    workqueue layer."""
    assert _run(_CONCURRENT, {"HWSIM_NUMBA_THREADS": "1", "HWSIM_SIMD": "0"}) == "workqueue"


def test_simd_tiles_tolerate_threads() -> None:
    """The same eight threads with the SIMD tile loop (its own worker threads per call,
    compiled on first use by whichever thread comes first): the same integers."""
    code = _CONCURRENT.replace("print(numba.threading_layer())", "print('same')")
    assert _run(code, {"HWSIM_NUMBA_THREADS": "1", "HWSIM_SIMD": "1"}) == "same"


def test_threading_layer_from_the_environment_is_kept() -> None:
    code = """
        import numba
        from simulator.units.chunk_stepper import numba_enabled
        assert numba_enabled()
        print(numba.config.THREADING_LAYER)
    """
    assert _run(code, {"NUMBA_THREADING_LAYER": "omp"}) == "omp"
    assert _run(code) == "workqueue"


def test_first_kernel_on_a_worker_thread_keeps_numbas_default_layer() -> None:
    """A Dask worker or thread pool runs hwsim off the main thread: the layer is left alone."""
    code = """
        import threading
        import numba
        from simulator.units import chunk_stepper
        t = threading.Thread(target=chunk_stepper.numba_enabled)
        t.start()
        t.join()
        print(numba.config.THREADING_LAYER)
    """
    assert _run(code, {"HWSIM_NUMBA_THREADS": "1"}) == "default"


def test_off_the_main_thread_the_numpy_fallbacks_run_unless_asked() -> None:
    code = """
        import threading
        from simulator.units import chunk_stepper
        got = []
        t = threading.Thread(target=lambda: got.append(chunk_stepper.numba_enabled()))
        t.start()
        t.join()
        print(got[0], chunk_stepper.numba_enabled())
    """
    assert _run(code) == "False True"
    assert _run(code, {"HWSIM_NUMBA_THREADS": "1"}) == "True True"


def test_cached_kernels_close_over_no_dispatcher() -> None:
    """numba keys a cached function by its pickled closure, and a dispatcher pickles
    differently in every process: a kernel closing over another compiled function was
    compiled again (~12 s for prefix_screen's) and cached anew in every process."""
    pytest.importorskip("numba")
    from numba.core.dispatcher import Dispatcher

    from simulator.units import (
        chunk_stepper,
        chunk_sums,
        pre_add_kernel,
        prefix_screen,
        requant_kernel,
        sign_split,
        tile_stepper,
        wrap_stream,
    )

    kernels = [chunk_stepper._compile(), tile_stepper._compile(), wrap_stream._compile(),
               *pre_add_kernel._compile()]
    for make in (prefix_screen._screen_pass, prefix_screen._tile_open, prefix_screen._pair_bounds,
                 chunk_sums._chunk_extremes, prefix_screen._prefix_range,
                 requant_kernel._kernel,
                 sign_split._pos_dots, sign_split._open_pairs, sign_split._finish):
        locked = make()
        kernels.append(next(c.cell_contents for c in locked.__closure__
                            if isinstance(c.cell_contents, Dispatcher)))
    kernels.append(sign_split._tile_pairs())  # not parallel: the dispatcher itself
    assert len(kernels) == 15
    for k in kernels:
        assert isinstance(k, Dispatcher)
        cells = [c.cell_contents for c in (k.py_func.__closure__ or ())]
        assert not any(isinstance(c, Dispatcher) for c in cells), k.py_func.__qualname__
