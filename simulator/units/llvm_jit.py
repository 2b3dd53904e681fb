"""Compiling LLVM IR text to a native function (llvmlite, numba's code generator).

Not a hardware unit: the compiler behind the explicit SIMD loops (tile_simd.py,
pre_add_simd.py). One target machine per process (the host CPU and its features, -O3);
each compiled module's engine is kept alive with its function.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

_STATE: dict[str, Any] = {}
_LOCK = threading.RLock()
_ENGINES: list[Any] = []  # keep the machine code of every compiled function


def compile_function(ir: str, name: str, argtypes: Sequence[Any]) -> Any:
    """The ctypes function ``name`` (returning void) of module ``ir``, optimised for this
    host. Raises on an llvmlite without the new pass manager API (typed-pointer era)."""
    import llvmlite.binding as llvm

    if not hasattr(llvm, "create_pass_builder"):
        raise RuntimeError("this llvmlite has no new pass manager API (create_pass_builder)")
    with _LOCK:
        if "tm" not in _STATE:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            target = llvm.Target.from_default_triple()
            _STATE["tm"] = target.create_target_machine(
                cpu=llvm.get_host_cpu_name(),
                features=llvm.get_host_cpu_features().flatten(), opt=3)
        tm = _STATE["tm"]
        mod = llvm.parse_assembly(ir)
        mod.verify()
        pb = llvm.create_pass_builder(tm, llvm.PipelineTuningOptions(speed_level=3))
        pb.getModulePassManager().run(mod, pb)
        engine = llvm.create_mcjit_compiler(mod, tm)
        engine.finalize_object()
        _ENGINES.append(engine)
        return ctypes.CFUNCTYPE(None, *argtypes)(engine.get_function_address(name))
