"""A numbers-only unpickler for the seed's scale-factor files (object arrays of 4 numbers).

The seed saves its scale factors with ``np.save(..., allow_pickle=True)``. What numpy emits
for an object array of Python floats/ints, ``np.float32`` or ``np.float64`` (checked with
``pickletools.dis``) uses four globals:

* ``numpy._core.multiarray._reconstruct`` (``numpy.core...`` before numpy 2), called as
  ``_reconstruct(numpy.ndarray, (0,), b'b')`` and then BUILD with the array state
  ``(1, shape, dtype, is_fortran, [items])``;
* ``numpy.ndarray`` as that first argument;
* ``numpy.dtype``, called as ``dtype('O8', False, True)`` / ``dtype('f4', False, True)`` and
  then BUILD with ``(3, '<', None, None, None, -1, -1, flags)``;
* ``numpy._core.multiarray.scalar``, called as ``scalar(dtype('f4'), b'...')``.

:class:`NumbersOnlyUnpickler` admits exactly these, and none of them reaches numpy with a
state from the file: ``_reconstruct`` and ``dtype`` return inert records whose
``__setstate__`` only validates and stores plain values (numpy's own ``__setstate__`` is never
called -- a crafted array state can crash it), and ``scalar`` decodes its bytes with
``np.frombuffer`` after checking their length. Every other global, and any persistent id, is
refused with :class:`pickle.UnpicklingError`. Nothing named in the file is ever called.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any

import numpy as np

MAX_ITEMS = 64
"""Largest object array accepted (the seed's have 4 items)."""

_NUMERIC_CODES = {f"{k}{n}" for k, ns in (("f", (2, 4, 8)), ("i", (1, 2, 4, 8)),
                                          ("u", (1, 2, 4, 8)), ("b", (1,))) for n in ns}
_OBJECT_CODES = {"O4", "O8"}


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` inside a pickle: usable only as ``_reconstruct``'s class."""


_NDARRAY = _NdarrayToken()


class DtypeRecord:
    """What ``numpy.dtype(code, align, copy)`` + BUILD describes: a type code and byte order."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError("dtype state is not one numpy writes")
        self.byteorder = state[1]

    def numeric(self) -> np.dtype:
        if self.code not in _NUMERIC_CODES:
            raise pickle.UnpicklingError(f"dtype {self.code!r} is not a number type")
        dt = np.dtype(self.code)
        return dt if self.byteorder in ("|", "=") else dt.newbyteorder(self.byteorder)


class ArrayRecord:
    """What ``_reconstruct(ndarray, (0,), b'b')`` + BUILD describes: shape and object items."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self.items: list[Any] = []

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError("array state is not one numpy writes")
        _version, shape, dtype, _fortran, items = state
        if not isinstance(dtype, DtypeRecord) or dtype.code not in _OBJECT_CODES:
            raise pickle.UnpicklingError("only object arrays are read this way")
        if not isinstance(shape, tuple) or not all(
            isinstance(d, int) and 0 <= d <= MAX_ITEMS for d in shape
        ):
            raise pickle.UnpicklingError("array shape is not admitted")
        if not isinstance(items, list) or len(items) != math.prod(shape) \
                or len(items) > MAX_ITEMS:
            raise pickle.UnpicklingError("array items do not match its shape")
        self.shape = shape
        self.items = items


def _reconstruct(cls: Any, shape: Any, dtype_code: Any) -> ArrayRecord:
    if isinstance(dtype_code, str):  # a Python 2 pickle's str, decoded as latin-1
        dtype_code = dtype_code.encode("latin-1")
    if cls is not _NDARRAY or shape != (0,) or dtype_code != b"b":
        raise pickle.UnpicklingError("_reconstruct is admitted only as numpy writes it")
    return ArrayRecord()


def _dtype(code: Any, align: Any = False, copy: Any = False) -> DtypeRecord:
    if not isinstance(code, str) or code not in _NUMERIC_CODES | _OBJECT_CODES:
        raise pickle.UnpicklingError("dtype is admitted only for a number or object code")
    return DtypeRecord(code)


def _scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, DtypeRecord):
        raise pickle.UnpicklingError("scalar is admitted only for numbers")
    dt = dtype.numeric()
    if isinstance(data, str):  # a Python 2 pickle's str, decoded as latin-1
        data = data.encode("latin-1")
    if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise pickle.UnpicklingError("scalar data does not match its dtype")
    return np.frombuffer(data, dtype=dt)[0]


ADMITTED_GLOBALS: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    ADMITTED_GLOBALS[(_mod, "_reconstruct")] = _reconstruct
    ADMITTED_GLOBALS[(_mod, "scalar")] = _scalar
ADMITTED_GLOBALS[("numpy", "ndarray")] = _NDARRAY
ADMITTED_GLOBALS[("numpy", "dtype")] = _dtype


class NumbersOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy object arrays of plain numbers and nothing else (see module doc)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ADMITTED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not admitted") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not admitted")


def unpickle_numbers(blob: bytes) -> list[int | float | np.integer | np.floating]:
    """The items of a pickled object array of real numbers; UnpicklingError for anything else.

    Items are Python ints/floats or numpy integer/float scalars (no bools, no arrays).
    """
    try:
        obj = NumbersOnlyUnpickler(io.BytesIO(blob), encoding="latin1").load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # EOFError, KeyError (memo), struct.error, ValueError, ...
        raise pickle.UnpicklingError(f"damaged pickle ({type(exc).__name__})") from None
    if not isinstance(obj, ArrayRecord) or obj.shape is None:
        raise pickle.UnpicklingError("not an object array")
    for v in obj.items:
        if isinstance(v, bool | np.bool_) or not isinstance(
            v, int | float | np.integer | np.floating
        ):
            raise pickle.UnpicklingError("an item is not a real number")
    return list(obj.items)
