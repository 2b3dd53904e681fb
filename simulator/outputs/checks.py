"""Output paths checked before any computing, and OS errors turned into one-line errors.

``check_out_dir`` / ``check_out_file`` refuse an empty path, an existing file, a path below a
file, a read-only file system and a folder without write permission, creating nothing.
``writing(path)`` re-raises any OSError inside it as :class:`OutputError` naming ``path``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot be written (one line: path, problem and fix)."""


class OutputBusyError(OutputError):
    """Another hwsim job holds the output folder's lock."""


def _why(exc: OSError) -> str:
    code = exc.errno
    if code == errno.EROFS:
        return "read-only file system; choose a writable --out"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied; choose a folder you can write to"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device (or quota exceeded); free space or choose another --out"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a folder; choose another --out"
    if code == errno.EISDIR:
        return "is a folder where a file is needed; choose another path"
    if code == errno.ELOOP:
        return "is a symbolic link where hwsim creates its own entry; remove it"
    if code == errno.ENAMETOOLONG:
        return "path too long; choose a shorter --out"
    return f"{exc.strerror or exc}; check the output folder"


def os_error(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """An OutputError naming ``path`` for an OSError raised while writing it."""
    return OutputError(f"{path}: cannot write ({_why(exc)})")


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise any OSError inside the block as an OutputError naming ``path``."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise os_error(path, exc) from None


def _nearest_existing(p: Path) -> Path:
    cur = p
    while not os.path.lexists(cur):
        if cur.parent == cur:
            break
        cur = cur.parent
    return cur


def check_out_dir(out: str | os.PathLike[str], option: str = "--out") -> Path:
    """Raise OutputError unless ``out`` is (or can be created as) a writable folder.

    Refuses ``""``, an existing file, a path below a file, a read-only file system and a
    folder without write permission; creates nothing.
    """
    text = os.fspath(out)
    if not text.strip():
        raise OutputError(f"{option} '': an empty path; give an output folder, e.g. traces/run1")
    if "\0" in text:
        raise OutputError(f"{option} {text!r}: contains a NUL byte; give a plain folder path")
    p = Path(text)
    if os.path.lexists(p) and not p.is_dir():
        kind = "a broken symbolic link" if p.is_symlink() else "a file"
        raise OutputError(f"{p}: exists and is {kind}, not a folder; choose another {option}")
    base = _nearest_existing(p.absolute())
    if not base.is_dir():
        raise OutputError(
            f"{p}: {base} is a file, not a folder, so {option} cannot be created below it; "
            f"choose another {option}"
        )
    try:
        ro = bool(os.statvfs(base).f_flag & os.ST_RDONLY)
    except OSError:
        ro = False
    if ro:
        raise OutputError(f"{p}: read-only file system; choose a writable {option}")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: permission denied on {base}; choose a folder you can write to")
    return p


def check_out_file(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Raise OutputError unless ``path`` can be written as a file (its folder is checked)."""
    text = os.fspath(path)
    if not text.strip():
        raise OutputError(f"{option} '': an empty path; give a file name, e.g. model.npz")
    p = Path(text)
    if p.is_dir():
        raise OutputError(f"{p}: is a folder; {option} needs a file name, e.g. {p}/model.npz")
    if p.name in ("", ".", ".."):
        raise OutputError(f"{option} {text!r}: give a file name, e.g. model.npz")
    check_out_dir(p.parent if str(p.parent) else Path("."), option)
    return p
