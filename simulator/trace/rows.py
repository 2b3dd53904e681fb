"""Row buffers: blocks of trace rows gathered column-wise and turned into arrow tables of
the schema (missing columns take their defaults; nullable columns may be None)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .schema import COLUMN_NAMES, COLUMNS, SCHEMA


class _Rows:
    """Column-wise accumulation of row blocks; ``take()`` returns an arrow table.

    Each ``add`` only records (value, n) segments; ``take`` fills one array per column.
    """

    def __init__(self) -> None:
        self.segs: list[tuple[int, dict[str, Any]]] = []
        self.rows = 0

    def add(self, n: int, **cols: Any) -> None:
        """Add n rows; each column is a scalar (broadcast), an array of n, or None (null)."""
        if n <= 0:
            return
        unknown = cols.keys() - _COLSET
        if unknown:
            raise KeyError(f"unknown trace columns {sorted(unknown)}")
        for name in _REQUIRED:
            if cols.get(name) is None:
                raise ValueError(f"trace column {name!r} is required")
        self.segs.append((n, cols))
        self.rows += n

    def take(self) -> pa.Table:
        if not self.rows:
            return SCHEMA.empty_table()
        total = self.rows
        arrays = []
        for name, typ, nullable, _ in COLUMNS:
            out = np.empty(total, dtype=_NP[name])
            mask = np.zeros(total, dtype=bool) if nullable else None
            default = _DEFAULTS.get(name)
            pos = 0
            for n, cols in self.segs:
                v = cols.get(name, default)
                if v is None:
                    if mask is None:
                        raise ValueError(f"trace column {name!r} cannot be null")
                    mask[pos : pos + n] = True
                    out[pos : pos + n] = "" if _NP[name] is object else 0
                else:
                    if isinstance(v, np.ndarray) and v.ndim and v.shape != (n,):
                        raise ValueError(f"trace column {name!r}: {v.shape} != ({n},)")
                    out[pos : pos + n] = v
                pos += n
            if mask is not None and not mask.any():
                mask = None
            arrays.append(pa.array(out, type=typ, mask=mask))
        self.segs = []
        self.rows = 0
        return pa.Table.from_arrays(arrays, schema=SCHEMA)


_NULLABLE = frozenset(n for n, _, nb, _ in COLUMNS if nb)
_NP: dict[str, Any] = {
    n: {pa.int64(): np.int64, pa.int32(): np.int32, pa.int16(): np.int16,
        pa.bool_(): np.bool_, pa.string(): object}[t]
    for n, t, _, _ in COLUMNS
}
_COLSET = frozenset(COLUMN_NAMES)
_REQUIRED = ("cycle", "query", "module", "layer", "unit", "operation", "result")
_DEFAULTS: dict[str, Any] = {
    "path": "", "tile": -1, "step": -1, "lane": -1, "neuron": -1, "input_index": -1,
    "input_count": 0, "operand_a": None, "operand_b": None, "exact": None, "width": None,
    "signed": None, "overflow": "", "count": 0,
}
