"""Cheap structural checks of an image file before OpenCV decodes it.

OpenCV's PNG decoder prints ``libpng error: ...`` / ``[ WARN ...]`` lines on stderr for a
damaged file before returning None; the checks here refuse such files first, so the user sees
only the simulator's one line. They also bound the decoded size from the header:

* PNG: the chunk sequence is walked (lengths, CRC-32 of every chunk, an IHDR first, an IEND
  last); the IHDR's width x height must not exceed ``MAX_IMAGE_PIXELS``.
* JPEG: the markers up to the first frame header (SOFn) are walked; its width x height must
  not exceed ``MAX_IMAGE_PIXELS``; the file must end with an EOI marker (trailing padding
  allowed), else it is truncated.

* BMP, PGM/PPM: width x height from the header against ``MAX_IMAGE_PIXELS``.

Other formats (TIFF, WebP) go to OpenCV as they are (bounded by OpenCV's own pixel limit).
"""

from __future__ import annotations

import re
import struct
import zlib

MAX_IMAGE_BYTES = 1 << 28
"""Largest image file read: 256 MiB."""

MAX_IMAGE_PIXELS = 1 << 26
"""Largest image decoded: 67,108,864 pixels (e.g. 8192 x 8192)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_problem(data: bytes) -> str | None:
    """None if the file may be decoded, else what is wrong (one phrase, no file name)."""
    if data.startswith(PNG_SIGNATURE):
        return _png_problem(data)
    if data.startswith(JPEG_SOI):
        return _jpeg_problem(data)
    if data.startswith(b"BM"):
        return _bmp_problem(data)
    if data[:2] in (b"P2", b"P3", b"P5", b"P6"):
        return _pnm_problem(data)
    return None


def _bmp_problem(data: bytes) -> str | None:
    if len(data) < 26:
        return "truncated BMP header"
    width, height = struct.unpack("<ii", data[18:26])
    return _too_big(abs(width), abs(height))


def _pnm_problem(data: bytes) -> str | None:
    fields = re.sub(rb"#[^\n]*", b" ", data[2:256]).split()
    if len(fields) < 2 or not fields[0].isdigit() or not fields[1].isdigit():
        return "damaged PNM header"
    return _too_big(int(fields[0]), int(fields[1]))


def _too_big(width: int, height: int) -> str | None:
    if width * height > MAX_IMAGE_PIXELS:
        return (f"declares {width} x {height} = {width * height:,} pixels, more than "
                f"MAX_IMAGE_PIXELS ({MAX_IMAGE_PIXELS:,}); place images are small")
    return None


def _png_problem(data: bytes) -> str | None:
    pos = len(PNG_SIGNATURE)
    first = True
    while True:
        if pos + 12 > len(data):
            return "truncated PNG (the file ends before its IEND chunk)"
        length, raw_type = struct.unpack(">I4s", data[pos : pos + 8])
        ctype = raw_type.decode("latin-1")
        end = pos + 12 + length
        if end > len(data):
            return f"truncated PNG (chunk {ctype!r} runs past the end of the file)"
        body = data[pos + 4 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : end])
        if zlib.crc32(body) & 0xFFFFFFFF != crc:
            return f"damaged PNG (chunk {ctype!r} fails its CRC check)"
        if first:
            if ctype != "IHDR" or length != 13:
                return "damaged PNG (no IHDR chunk first)"
            width, height = struct.unpack(">II", data[pos + 8 : pos + 16])
            big = _too_big(width, height)
            if big:
                return big
            first = False
        if ctype == "IEND":
            return None
        pos = end


def _jpeg_problem(data: bytes) -> str | None:
    pos = 2
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) \
                and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return "truncated or damaged JPEG (no frame header)"
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS:
            if pos + 9 > len(data):
                return "truncated JPEG (frame header cut)"
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            big = _too_big(width, height)
            if big:
                return big
            break
        if marker == 0xDA or length < 2:
            return "damaged JPEG (scan data before the frame header)"
        pos += 2 + length
    tail = data.rstrip(b"\x00\r\n \t")
    if not tail.endswith(b"\xff\xd9"):
        return "truncated JPEG (no end-of-image marker)"
    return None
