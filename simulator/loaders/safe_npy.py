"""Header-first, pickle-free reading of ``.npy`` files and ``.npz`` archives.

Every array file the simulator reads (models, seed mats, inputs) goes through this module:

* The header (magic, version, dtype, shape) is read first; the shape and dtype are checked
  against the caller's limits **before** any data is allocated or decompressed.
* Python objects are never unpickled, with one exception: :func:`load_npy_numbers` reads the
  seed's scale-factor files (object arrays of plain numbers written with
  ``np.save(..., allow_pickle=True)``) through :class:`NumbersOnlyUnpickler`, which admits only
  numpy's array and scalar reconstruction and refuses every other global.
* ``.npz`` members are read with :mod:`zipfile` without extracting. A member's size declared in
  the zip central directory must equal what its header describes (magic + header + shape x
  itemsize) before its data is decompressed; decompression then stops at that size
  (:mod:`zipfile` never returns more than the declared size and checks the CRC at the end), so
  neither a zip bomb nor a lying central directory can make the reader allocate more than the
  checked shape.

Limits (documented in docs/security.md (Inputs)):

``MAX_INPUT_ELEMENTS``        elements of one input array (queries x inputs), 2**27
``MAX_MODEL_WEIGHTS``         int8 weights of one model module when no hardware config is
                              known, 2**30 (with a config: ``weights.capacity_kib``)
``MAX_ARRAY_BYTES``           bytes of any other single array in a model file, 2**28
``MAX_NPZ_MEMBERS``           members of one ``.npz``, 65536
``MAX_OBJECT_PICKLE_BYTES``   size of a seed scale-factor object array, 65536 bytes

The numbers-only unpickler itself is in :mod:`simulator.loaders.safe_pickle`.

Errors are raised as ``error(f"{source}: ...")`` with the caller's exception class
(``ModelError``, ``InputError``), one line each.
"""

from __future__ import annotations

import ast
import io
import math
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from .safe_pickle import NumbersOnlyUnpickler, unpickle_numbers

__all__ = [
    "MAX_ARRAY_BYTES", "MAX_INPUT_ELEMENTS", "MAX_MODEL_WEIGHTS", "MAX_NPZ_MEMBERS",
    "MAX_OBJECT_PICKLE_BYTES", "NpyHeader", "NumbersOnlyUnpickler", "SafeNpz", "load_npy",
    "load_npy_numbers", "open_npz", "read_npy_header", "read_npy_data", "sniff",
]

MAX_INPUT_ELEMENTS = 1 << 27
"""Largest input array (queries x inputs) read from a file: 134,217,728 values."""

MAX_MODEL_WEIGHTS = 1 << 30
"""Largest number of weights in one module of a model when no hardware config is given."""

MAX_ARRAY_BYTES = 1 << 28
"""Largest non-weight array (scales, zero points, metadata string) in a model file: 256 MiB."""

MAX_NPZ_MEMBERS = 1 << 16
"""Largest number of arrays in one ``.npz``."""

MAX_OBJECT_PICKLE_BYTES = 1 << 16
"""Largest pickled object array read by :func:`load_npy_numbers` (four numbers need ~250 B)."""

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
MAX_HEADER_BYTES = 10000  # numpy's own default limit for a header

ErrorType = Callable[[str], Exception]

OBJECT_REFUSAL = (
    "holds an object array (dtype object, pickled Python objects); Object arrays are never "
    "read: this tool does not unpickle data files; save a plain numeric array instead"
)

NO_PICKLE_HINT = (
    "this tool never unpickles data files; save the values as a plain numeric array, "
    "e.g. np.save(path, np.asarray(values, dtype=np.float32))"
)


@dataclass(frozen=True)
class NpyHeader:
    """What an ``.npy`` header declares.

    shape / dtype / fortran_order: as in the header; offset: bytes before the data.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def describe(self) -> str:
        return f"{self.dtype} {self.shape}"


def sniff(path: str | os.PathLike[str]) -> str:
    """``"npy"``, ``"zip"``, ``"empty"`` or ``"other"`` from a file's first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if not head:
        return "empty"
    if head == NPY_MAGIC:
        return "npy"
    if head[:4] in ZIP_MAGICS:
        return "zip"
    return "other"


def read_npy_header(fh: IO[bytes], source: str, error: ErrorType) -> NpyHeader:
    """Read the magic string and header of an ``.npy`` stream positioned at its start."""
    start = fh.read(8)
    if len(start) < 8 or start[:6] != NPY_MAGIC:
        raise error(f"{source}: not a .npy array (no NUMPY magic string)")
    version = (start[6], start[7])
    try:
        if version == (1, 0):
            hdr = np.lib.format.read_array_header_1_0(io.BytesIO(_header_bytes(fh, 2, source,
                                                                                 error)))
        elif version == (2, 0):
            hdr = np.lib.format.read_array_header_2_0(io.BytesIO(_header_bytes(fh, 4, source,
                                                                                 error)))
        elif version == (3, 0):
            hdr = _read_header_3_0(fh, source, error)
        else:
            raise error(f"{source}: .npy format version {version[0]}.{version[1]} is not known")
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError..
        if isinstance(exc, _error_types(error)) or _is_io_error(exc):
            raise
        raise error(f"{source}: damaged .npy header ({_one_line(exc)})") from None
    shape, fortran, dtype = hdr
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise error(f"{source}: damaged .npy header (shape {shape!r})")
    offset = fh.tell() if hasattr(fh, "tell") else 0
    return NpyHeader(tuple(int(d) for d in shape), np.dtype(dtype), bool(fortran), offset)


_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError,
               NotImplementedError, struct.error, OverflowError)
"""What zipfile and zlib raise on a damaged archive (damaged headers, data, CRCs)."""


def _is_io_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and not isinstance(exc, zipfile.BadZipFile)


def _error_types(error: ErrorType) -> tuple[type, ...]:
    return (error,) if isinstance(error, type) else ()


def _header_bytes(fh: IO[bytes], len_bytes: int, source: str, error: ErrorType) -> bytes:
    """The length field and header text, re-framed so numpy's public parser can read them."""
    raw_len = fh.read(len_bytes)
    if len(raw_len) < len_bytes:
        raise error(f"{source}: truncated .npy header")
    n = struct.unpack("<H" if len_bytes == 2 else "<I", raw_len)[0]
    if n > MAX_HEADER_BYTES:
        raise error(f"{source}: .npy header of {n} bytes is larger than numpy ever writes")
    text = fh.read(n)
    if len(text) < n:
        raise error(f"{source}: truncated .npy header")
    return raw_len + text


def _read_header_3_0(
    fh: IO[bytes], source: str, error: ErrorType
) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Version 3.0 = version 2.0 with a UTF-8 header (numpy reads it the same way)."""
    raw = _header_bytes(fh, 4, source, error)[4:]
    d = ast.literal_eval(raw.decode("utf-8"))
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise error(f"{source}: damaged .npy header")
    return tuple(d["shape"]), bool(d["fortran_order"]), np.lib.format.descr_to_dtype(d["descr"])


def check_numeric(
    hdr: NpyHeader, source: str, error: ErrorType, kinds: str = "biuf", hint: str = ""
) -> None:
    """Refuse object, structured, string and other dtypes not in ``kinds``."""
    if hdr.dtype.hasobject:
        raise error(f"{source}: {OBJECT_REFUSAL}")
    if hdr.dtype.kind not in kinds or hdr.dtype.fields is not None or hdr.dtype.subdtype:
        raise error(f"{source}: dtype {hdr.dtype} is not supported here{hint}")


def check_elements(hdr: NpyHeader, limit: int, source: str, error: ErrorType, what: str) -> None:
    """Refuse a header declaring more than ``limit`` elements, before any allocation."""
    if hdr.size > limit:
        raise error(
            f"{source}: declares {hdr.describe()} = {hdr.size:,} values "
            f"({_human(hdr.nbytes)}), more than {what} ({limit:,} values); refusing to read it"
        )


def read_npy_data(fh: IO[bytes], hdr: NpyHeader, source: str, error: ErrorType) -> np.ndarray:
    """Read exactly the data the (already checked) header declares; never more."""
    if hdr.dtype.hasobject:
        raise error(f"{source}: {OBJECT_REFUSAL}")
    shape = hdr.shape[::-1] if hdr.fortran_order else hdr.shape
    arr = np.empty(shape, dtype=hdr.dtype)
    view = memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else memoryview(b"")
    got = 0
    while got < hdr.nbytes:
        chunk = fh.read(min(hdr.nbytes - got, 1 << 24))
        if not chunk:
            raise error(
                f"{source}: truncated: the header declares {hdr.nbytes:,} data bytes, "
                f"the file holds {got:,}"
            )
        view[got : got + len(chunk)] = chunk
        got += len(chunk)
    return arr.T if hdr.fortran_order else arr


def load_npy(
    path: str | os.PathLike[str],
    error: ErrorType,
    max_elements: int,
    limit_name: str,
    kinds: str = "biuf",
    check: Callable[[NpyHeader], None] | None = None,
    hint: str = "",
) -> np.ndarray:
    """Read one ``.npy`` file: header, checks (dtype kinds, ``max_elements``, ``check``), data."""
    src = str(path)
    try:
        with open(path, "rb") as fh:
            hdr = read_npy_header(fh, src, error)
            check_numeric(hdr, src, error, kinds, hint)
            check_elements(hdr, max_elements, src, error, limit_name)
            if check is not None:
                check(hdr)
            return read_npy_data(fh, hdr, src, error)
    except OSError as exc:
        raise error(f"{src}: cannot read ({exc.strerror or exc})") from None


# --- .npz ------------------------------------------------------------------------------------


class SafeNpz:
    """An ``.npz`` opened for header-first reading: ``headers[key]`` then ``read(key)``.

    Keys are member names without ``.npy`` (as :func:`numpy.load` names them). Use as a
    context manager.
    """

    def __init__(self, path: str | os.PathLike[str], error: ErrorType) -> None:
        self.source = str(path)
        self.error = error
        try:
            self._zip = zipfile.ZipFile(path)
        except _ZIP_ERRORS as exc:
            raise error(f"{self.source}: not a readable .npz archive ({_one_line(exc)})") from None
        try:
            self._members, self.headers = self._read_headers()
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> SafeNpz:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    @property
    def files(self) -> list[str]:
        return list(self.headers)

    def _where(self, key: str) -> str:
        return f"{self.source}: key {key!r}"

    def _read_headers(self) -> tuple[dict[str, zipfile.ZipInfo], dict[str, NpyHeader]]:
        infos = self._zip.infolist()
        if len(infos) > MAX_NPZ_MEMBERS:
            raise self.error(
                f"{self.source}: {len(infos):,} archive members, more than MAX_NPZ_MEMBERS "
                f"({MAX_NPZ_MEMBERS:,})"
            )
        members: dict[str, zipfile.ZipInfo] = {}
        headers: dict[str, NpyHeader] = {}
        for info in infos:
            if info.is_dir():
                continue
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            where = self._where(key)
            if key in members:
                raise self.error(f"{where}: appears twice in the archive")
            if info.flag_bits & 0x1:
                raise self.error(f"{where}: is encrypted; .npz members never are")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self.error(
                    f"{where}: compression method {info.compress_type} is not one numpy writes "
                    "(stored or deflated)"
                )
            try:
                with self._zip.open(info) as fh:
                    hdr = read_npy_header(fh, where, self.error)
                    hdr = NpyHeader(hdr.shape, hdr.dtype, hdr.fortran_order, fh.tell())
            except _ZIP_ERRORS as exc:
                if isinstance(exc, _error_types(self.error)):
                    raise
                raise self.error(f"{where}: unreadable ({_one_line(exc)}); is it truncated?") \
                    from None
            if hdr.dtype.hasobject:
                raise self.error(
                    f"{where}: {OBJECT_REFUSAL}"
                )
            declared = hdr.offset + hdr.nbytes
            if info.file_size != declared:
                raise self.error(
                    f"{where}: the archive declares {info.file_size:,} bytes for this member "
                    f"but its header ({hdr.describe()}) needs {declared:,}; the file is "
                    "damaged or crafted"
                )
            members[key] = info
            headers[key] = hdr
        return members, headers

    def read(self, key: str) -> np.ndarray:
        """Decompress and return one member, at most its checked, declared size."""
        hdr = self.headers[key]
        where = self._where(key)
        try:
            with self._zip.open(self._members[key]) as fh:
                fh.read(hdr.offset)
                arr = read_npy_data(fh, hdr, where, self.error)
                if fh.read(1):  # never true: zipfile stops at the declared size
                    raise self.error(f"{where}: holds more data than declared")
        except _ZIP_ERRORS as exc:
            if isinstance(exc, _error_types(self.error)):
                raise
            raise self.error(f"{where}: unreadable ({_one_line(exc)}); is it truncated?") \
                from None
        return arr

    def __iter__(self) -> Iterator[str]:
        return iter(self.headers)


def open_npz(path: str | os.PathLike[str], error: ErrorType, kind: str = ".npz model") -> SafeNpz:
    """Open an ``.npz``; a plain ``.npy`` (or anything else) under that name is one clear line."""
    src = str(path)
    try:
        form = sniff(path)
    except OSError as exc:
        raise error(f"{src}: cannot read ({exc.strerror or exc})") from None
    if form == "npy":
        raise error(
            f"{src}: is a single .npy array, not an .npz archive; a {kind} is an .npz "
            "(numpy.savez) holding several named arrays"
        )
    if form == "empty":
        raise error(f"{src}: is empty; is it truncated?")
    if form != "zip":
        raise error(f"{src}: not an .npz archive (no zip signature); is it truncated?")
    return SafeNpz(path, error)


# --- the seed's pickled scale factors ----------------------------------------------------------


def load_npy_numbers(path: str | os.PathLike[str], count: int, error: ErrorType) -> np.ndarray:
    """Read exactly ``count`` finite real numbers from a ``.npy`` file.

    A numeric array is read as stored. An object array (the seed's ``allow_pickle=True``
    files) goes through :class:`NumbersOnlyUnpickler` and must hold plain numbers; float32
    elements stay float32 if all are float32, otherwise float64. Anything else is one line.
    """
    src = str(path)
    try:
        with open(path, "rb") as fh:
            hdr = read_npy_header(fh, src, error)
            if hdr.size != count:
                raise error(f"{src}: needs exactly {count} numbers, the header declares "
                            f"{hdr.describe()}")
            if not hdr.dtype.hasobject:
                check_numeric(hdr, src, error, "iuf")
                values = read_npy_data(fh, hdr, src, error).ravel()
            else:
                blob = fh.read(MAX_OBJECT_PICKLE_BYTES + 1)
                if len(blob) > MAX_OBJECT_PICKLE_BYTES:
                    raise error(f"{src}: object array larger than {MAX_OBJECT_PICKLE_BYTES} "
                                f"bytes; {count} numbers need far less; {NO_PICKLE_HINT}")
                values = _unpickle_numbers(blob, count, src, error)
    except OSError as exc:
        raise error(f"{src}: cannot read ({exc.strerror or exc})") from None
    if values.dtype != np.float32:
        values = values.astype(np.float64)
    return values  # finiteness and range: QuantizedNetwork.validate names the key


def _unpickle_numbers(blob: bytes, count: int, src: str, error: ErrorType) -> np.ndarray:
    refusal = (f"{src}: holds pickled Python objects that are not {count} numbers; "
               f"{NO_PICKLE_HINT}")
    try:
        items = unpickle_numbers(blob)
    except pickle.UnpicklingError:
        raise error(refusal) from None
    if len(items) != count:
        raise error(refusal)
    if all(isinstance(v, np.float32) for v in items):
        return np.array(items, dtype=np.float32)
    try:
        return np.array([float(v) for v in items], dtype=np.float64)
    except OverflowError:
        raise error(f"{src}: a number does not fit float64") from None


# --- small helpers ---------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text or type(exc).__name__)[:200]


def _human(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:,.0f} {unit}" if unit == "B" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1024  # type: ignore[assignment]
    return f"{nbytes} B"  # pragma: no cover
