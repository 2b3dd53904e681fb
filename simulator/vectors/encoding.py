"""Memory-image words: two's complement / unsigned hex, .hex, .coe, .mif and .npy."""

from __future__ import annotations

import io

import numpy as np

from ..engine import InputError

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
class VectorsError(InputError):
    """A vectors job that cannot be done as asked (message names the file and the fix)."""

# --- word encoding ------------------------------------------------------------------------


def register_range(bits: int, signed: bool) -> tuple[int, int]:
    """[min, max] of a ``bits``-bit signed (two's complement) or unsigned register."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def hex_digits(bits: int) -> int:
    """Hex digits of one word of ``bits`` bits: ceil(bits / 4)."""
    return (bits + 3) // 4


def to_words(values: np.ndarray, bits: int, signed: bool, what: str = "values") -> np.ndarray:
    """Integer ``values`` as uint64 words of a ``bits``-bit register (1..64).

    Signed values become two's complement at ``bits`` bits (-1 at 8 bits -> 0xff); raises
    VectorsError if a value does not fit the register.
    """
    if not 1 <= bits <= 64 or (signed and bits < 2):
        raise VectorsError(f"{what}: register width {bits} bits is not supported (1..64)")
    v = np.asarray(values)
    if v.dtype.kind not in "iu":
        raise VectorsError(f"{what}: expected integers, got dtype {v.dtype}")
    lo, hi = register_range(bits, signed)
    if v.size:
        vmin, vmax = int(v.min()), int(v.max())
        if vmin < lo or vmax > hi:
            kind = "signed" if signed else "unsigned"
            raise VectorsError(
                f"{what}: values span {vmin}..{vmax} but the {bits}-bit {kind} register holds "
                f"{lo}..{hi}; widen the register in the config"
            )
    u = v.ravel().astype(np.uint64)  # two's complement modulo 2**64 for negative int64
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    return u & mask


def _hex_matrix(words: np.ndarray, bits: int) -> np.ndarray:
    """uint8 (n, ceil(bits/4)) ASCII lower-case hex digits of uint64 ``words``, MSB first."""
    d = hex_digits(bits)
    shifts = np.arange(d - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = (words[:, None] >> shifts[None, :]) & np.uint64(0xF)
    return _HEX[nibbles.astype(np.intp)]


def hex_words(values: np.ndarray, bits: int, signed: bool) -> list[str]:
    """The words as hex strings (as they appear in the .hex, .coe and .mif files)."""
    mat = _hex_matrix(to_words(values, bits, signed), bits)
    return [bytes(row).decode() for row in mat]


def readmemh_bytes(values: np.ndarray, bits: int, signed: bool, what: str = "values") -> bytes:
    """$readmemh image: one word per line, ceil(bits/4) hex digits, no comments or addresses."""
    mat = _hex_matrix(to_words(values, bits, signed, what), bits)
    nl = np.full((mat.shape[0], 1), ord("\n"), dtype=np.uint8)
    return np.ascontiguousarray(np.concatenate([mat, nl], axis=1)).tobytes()


def coe_bytes(
    values: np.ndarray, bits: int, signed: bool, comment: str = "", what: str = "values"
) -> bytes:
    """Xilinx .coe (radix 16): comment lines ';', one word per line, ',' between, ';' last."""
    mat = _hex_matrix(to_words(values, bits, signed, what), bits)
    if mat.shape[0] == 0:
        raise VectorsError(f"{what}: a .coe file cannot be empty")
    sep = np.empty((mat.shape[0], 2), dtype=np.uint8)
    sep[:, 0] = ord(",")
    sep[:, 1] = ord("\n")
    sep[-1, 0] = ord(";")
    body = np.ascontiguousarray(np.concatenate([mat, sep], axis=1)).tobytes()
    head = "".join(f"; {line}\n" for line in comment.splitlines() if line)
    head += "memory_initialization_radix=16;\nmemory_initialization_vector=\n"
    return head.encode() + body


def mif_bytes(
    values: np.ndarray, bits: int, signed: bool, comment: str = "", what: str = "values"
) -> bytes:
    """Intel .mif: WIDTH, DEPTH, unsigned decimal addresses, hex data, one word per line."""
    mat = _hex_matrix(to_words(values, bits, signed, what), bits)
    d = mat.shape[1]
    strs = np.ascontiguousarray(mat).view(f"S{d}").ravel()
    head = "".join(f"-- {line}\n" for line in comment.splitlines() if line)
    head += (
        f"WIDTH={bits};\nDEPTH={mat.shape[0]};\n\nADDRESS_RADIX=UNS;\nDATA_RADIX=HEX;\n\n"
        "CONTENT BEGIN\n"
    )
    body = b"".join(b"\t%d : %s;\n" % (i, s) for i, s in enumerate(strs))
    return head.encode() + body + b"END;\n"


def npy_dtype(bits: int, signed: bool) -> np.dtype:
    """Smallest numpy integer dtype holding a ``bits``-bit signed/unsigned register."""
    for width in (8, 16, 32, 64):
        if bits <= width:
            return np.dtype(f"{'i' if signed else 'u'}{width // 8}")
    raise VectorsError(f"{bits}-bit words do not fit a numpy integer type")


def npy_bytes(values: np.ndarray, bits: int, signed: bool, what: str = "values") -> bytes:
    """.npy of the values (natural shape) in :func:`npy_dtype`; range-checked like the text."""
    to_words(values, bits, signed, what)
    buf = io.BytesIO()
    np.save(buf, np.asarray(values).astype(npy_dtype(bits, signed)), allow_pickle=False)
    return buf.getvalue()

