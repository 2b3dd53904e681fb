"""Result sets: every file of one job lands in its output folder together, or not at all.

A :class:`ResultSet` owns one output folder for the length of a job:

1. ``open()`` checks the folder (``check_out_dir``), creates it if needed, opens it once as a
   directory file descriptor and takes an exclusive advisory lock (``fcntl.flock`` on
   ``.hwsim.lock`` inside it, opened with ``O_NOFOLLOW``). A second job on the same folder
   fails at once with one line. Stray staging folders of earlier, dead jobs are removed (or
   their interrupted commit is completed, see below).
2. Files are written into a fresh staging folder ``.hwsim-stage-<pid>-<random>`` *inside* the
   output folder (so the final renames never cross a file system, even when the folder is a
   mount point), created with ``mkdir`` (exclusive, mode 0700) and holding a marker file.
   Every file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` relative to the staging
   folder's descriptor: nothing planted in the output folder can redirect a write.
3. ``commit()`` writes a journal into the staging folder (the new names, and the stale
   entries of earlier sets: names the writer owns, e.g. an old ``trace_op.parquet``), then,
   under the lock, moves the previous index (``report.json``, ``manifest.json``) aside,
   renames each new entry over the old one (a symlink at a final name is replaced, never
   followed), moves the stale entries aside, and renames the new index in *last*. The index
   lists the files that belong to it.
   A crash before the journal leaves the previous set untouched; a crash after it leaves a
   journal the next job completes (roll forward) before doing anything else. Readers never
   see an index that describes files of another set.

Every OS error on an output path is re-raised as :class:`OutputError` naming the path and the
fix (one line, exit 2 on the command line). The design and its proofs: docs/security.md.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from .checks import OutputError, check_out_dir, check_out_file, os_error, writing
from .lock import (
    DIR_FLAGS,
    LOCK_NAME,
    FolderLock,
    fsync_dir,
    host,
    lstat,
    pid_alive,
    rmtree_at,
)

__all__ = ["LOCK_NAME", "STAGE_PREFIX", "OutputError", "ResultSet", "check_out_dir",
           "check_out_file", "os_error", "owned_by_patterns", "write_file_atomic", "writing"]

STAGE_PREFIX = ".hwsim-stage-"
MARKER_NAME = ".hwsim-stage.json"
JOURNAL_NAME = ".hwsim-commit.json"
TRASH_NAME = ".hwsim-old"
_STAGE_RE = re.compile(r"^\.hwsim-stage-(\d+)-([0-9a-f]{16})$")
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


# --- the result set ------------------------------------------------------------------------------


def _top(rel: str) -> str:
    parts = [p for p in rel.replace("\\", "/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"bad relative output name {rel!r}")
    return parts[0]


class ResultSet:
    """One job's files in ``out_dir``, published together by :meth:`commit`.

    index: the file that describes the set (written last, gains ``files``); None for sets
    without one (plots). owned: names of earlier sets this writer may remove when they are
    not part of the new set (it never removes anything else).
    """

    def __init__(self, out_dir: str | os.PathLike[str], index: str | None = None,
                 owned: Callable[[str], bool] | None = None, option: str = "--out") -> None:
        self.raw = os.fspath(out_dir)
        self.out = Path(self.raw)
        self.index = index
        self.owned = owned or (lambda name: False)
        self.option = option
        self.dfd: int | None = None
        self.sfd: int | None = None
        self.stage_name: str | None = None
        self.lock: FolderLock | None = None
        self.created: list[Path] = []
        self.names: list[str] = []
        self.committed = False
        self.recovered: list[str] = []

    # -- life cycle

    def open(self) -> ResultSet:
        out = check_out_dir(self.raw, self.option)
        missing = []
        cur = out.absolute()
        while not os.path.lexists(cur):
            missing.append(cur)
            cur = cur.parent
        with writing(out):
            for d in reversed(missing):
                try:
                    os.mkdir(d)
                except FileExistsError:
                    if d.is_symlink() or not d.is_dir():
                        raise
                    continue  # a concurrent job made it just now: the lock below decides
                self.created.append(d)
            self.dfd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.lock = FolderLock(self.dfd, out)
            self.lock.acquire()
            self.recovered = self._recover()
            self._make_stage()
        except BaseException:
            self._close(remove_created=True)
            raise
        return self

    def __enter__(self) -> ResultSet:
        return self.open() if self.dfd is None else self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        self.close()

    def close(self) -> None:
        """Drop the staging folder (if not committed) and release the lock."""
        self._close(remove_created=not self.committed)

    def _close(self, remove_created: bool) -> None:
        if self.dfd is not None:
            if self.stage_name is not None:
                try:
                    if self.sfd is not None:
                        os.close(self.sfd)
                        self.sfd = None
                    rmtree_at(self.stage_name, self.dfd)
                except OSError:
                    pass
                self.stage_name = None
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            os.close(self.dfd)
            self.dfd = None
        if remove_created:
            for d in reversed(self.created):
                try:
                    os.rmdir(d)
                except OSError:
                    break
            self.created = []

    def _make_stage(self) -> None:
        assert self.dfd is not None
        for _ in range(100):
            name = f"{STAGE_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
            try:
                os.mkdir(name, 0o700, dir_fd=self.dfd)
            except FileExistsError:
                continue
            except OSError as exc:
                raise os_error(self.out, exc) from None
            break
        else:
            raise OutputError(f"{self.out}: cannot create a staging folder; try again")
        self.stage_name = name
        with writing(self.out / name):
            self.sfd = os.open(name, DIR_FLAGS, dir_fd=self.dfd)
            marker = {"tool": "tempo-hwsim", "pid": os.getpid(), "host": host(),
                      "stage": name}
            fd = os.open(MARKER_NAME, _NEW_FILE, 0o600, dir_fd=self.sfd)
            with os.fdopen(fd, "w") as fh:
                json.dump(marker, fh)

    # -- writing into the staging folder

    @property
    def stage_path(self) -> Path:
        """Where the staged files are (for messages and tests; write through the methods)."""
        assert self.stage_name is not None
        return self.out / self.stage_name

    def final_path(self, rel: str) -> Path:
        """Where ``rel`` will be once committed."""
        return self.out / rel

    def _subdir_fd(self, parts: list[str]) -> int:
        assert self.sfd is not None
        fd = os.dup(self.sfd)
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd

    @contextmanager
    def open_file(self, rel: str, text: bool = False) -> Iterator[IO[Any]]:
        """A new file ``rel`` in the staging folder (created exclusively, never followed)."""
        if self.sfd is None:
            raise RuntimeError("ResultSet is not open")
        top = _top(rel)
        parts = [p for p in rel.replace("\\", "/").split("/") if p]
        final = self.final_path(rel)
        with writing(final):
            dfd = self._subdir_fd(parts[:-1])
            try:
                fd = os.open(parts[-1], _NEW_FILE, 0o644, dir_fd=dfd)
            finally:
                os.close(dfd)
            fh: IO[Any] = os.fdopen(fd, "w" if text else "wb")
            try:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fh.close()
        if top not in self.names:
            self.names.append(top)

    def write_bytes(self, rel: str, data: bytes) -> Path:
        with self.open_file(rel) as fh:
            fh.write(data)
        return self.final_path(rel)

    def write_json(self, rel: str, doc: Any) -> Path:
        return self.write_bytes(rel, (json.dumps(doc, indent=2) + "\n").encode())

    def save_npy(self, rel: str, arr: np.ndarray) -> Path:
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return self.write_bytes(rel, buf.getvalue())

    # -- publishing

    def _old_set(self) -> list[str]:
        """Entries of earlier sets this writer owns (its ``owned`` names that are present).

        Only names matching ``owned`` are ever removed - never a name merely listed in an
        earlier index (a crafted report.json cannot make hwsim delete a user's file).
        """
        assert self.dfd is not None
        return sorted(n for n in os.listdir(self.dfd)
                      if self.owned(n) and n != self.index and not n.startswith(".hwsim"))

    def commit(self, index_doc: dict[str, Any] | None = None,
               files_entry: Callable[[list[str]], Any] | None = None) -> list[Path]:
        """Publish the staged files (and ``index_doc`` as the index, written last).

        ``index_doc`` gains ``files`` (the names of the set, or ``files_entry(names)``) unless
        it already has it. Returns the final paths.
        """
        if self.sfd is None or self.dfd is None or self.stage_name is None:
            raise RuntimeError("ResultSet is not open")
        names = [n for n in self.names if n != self.index]
        if self.index is not None and index_doc is not None:
            if "files" not in index_doc:
                index_doc["files"] = files_entry(names) if files_entry else sorted(names)
            self.write_json(self.index, index_doc)
        stale = [n for n in self._old_set() if n not in names]
        journal = {"names": names, "index": self.index if self.index in self.names else None,
                   "stale": stale}
        with writing(self.out / self.stage_name / JOURNAL_NAME):
            fd = os.open(JOURNAL_NAME + ".tmp", _NEW_FILE, 0o600, dir_fd=self.sfd)
            with os.fdopen(fd, "w") as fh:
                json.dump(journal, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(JOURNAL_NAME + ".tmp", JOURNAL_NAME, src_dir_fd=self.sfd,
                      dst_dir_fd=self.sfd)
            fsync_dir(self.sfd)
        with writing(self.out):
            _apply_journal(self.dfd, self.sfd, journal)
        self.committed = True
        self.created = []
        out = [self.final_path(n) for n in names]
        if journal["index"]:
            out.append(self.final_path(journal["index"]))
        self.close()
        return out

    def _recover(self) -> list[str]:
        """Finish or remove the staging folders of dead jobs; return what was done."""
        assert self.dfd is not None
        done = []
        for name in os.listdir(self.dfd):
            m = _STAGE_RE.match(name)
            if m is not None:
                if self._recover_stage(name, int(m.group(1))):
                    done.append(name)
                continue
        return done

    def _recover_stage(self, name: str, pid: int) -> bool:
        assert self.dfd is not None
        st = lstat(name, self.dfd)
        if st is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            return False
        try:
            sfd = os.open(name, DIR_FLAGS, dir_fd=self.dfd)
        except OSError:
            return False
        try:
            try:
                fd = os.open(MARKER_NAME, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=sfd)
                with os.fdopen(fd, "rb") as fh:
                    marker = json.loads(fh.read(4096))
            except (OSError, ValueError):
                return False  # no marker: not provably ours
            if (not isinstance(marker, dict) or marker.get("pid") != pid
                    or marker.get("stage") != name or marker.get("host") != host()
                    or pid_alive(pid)):
                return False
            journal = None
            try:
                fd = os.open(JOURNAL_NAME, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=sfd)
                with os.fdopen(fd, "rb") as fh:
                    journal = json.loads(fh.read())
            except (OSError, ValueError):
                journal = None
            with writing(self.out / name):
                if _valid_journal(journal):  # roll the interrupted commit forward
                    _apply_journal(self.dfd, sfd, journal)  # type: ignore[arg-type]
        finally:
            os.close(sfd)
        with writing(self.out / name):
            rmtree_at(name, self.dfd)
        return True


def _plain_name(n: Any) -> bool:
    """A single entry name of the output folder (no path separator, not ., .., .hwsim*)."""
    return (isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\0" not in n
            and not n.startswith(".hwsim"))


def _valid_journal(journal: Any) -> bool:
    if not isinstance(journal, dict):
        return False
    names = journal.get("names", [])
    stale = journal.get("stale", [])
    index = journal.get("index")
    return (isinstance(names, list) and isinstance(stale, list)
            and all(_plain_name(n) for n in [*names, *stale])
            and (index is None or _plain_name(index)))


def _apply_journal(dfd: int, sfd: int, journal: dict[str, Any]) -> None:
    """Swap the staged entries in (index last); idempotent, so a later job can finish it."""
    if not _valid_journal(journal):
        raise OutputError("a staging journal names entries outside the output folder; "
                          "refusing to apply it")
    try:
        os.mkdir(TRASH_NAME, 0o700, dir_fd=sfd)
    except FileExistsError:
        pass
    tfd = os.open(TRASH_NAME, DIR_FLAGS, dir_fd=sfd)
    try:
        def aside(n: str) -> None:
            if lstat(n, dfd) is None:
                return
            if lstat(n, tfd) is not None:
                rmtree_at(n, tfd)
            os.rename(n, n, src_dir_fd=dfd, dst_dir_fd=tfd)

        index = journal.get("index")
        if index and lstat(index, sfd) is not None:
            aside(index)  # no index describes a half-swapped folder
        for n in journal.get("names", []):
            new = lstat(n, sfd)
            if new is None:
                continue  # already moved in (an earlier, interrupted attempt)
            old = lstat(n, dfd)
            if old is not None and (stat.S_ISDIR(old.st_mode) or stat.S_ISDIR(new.st_mode)):
                aside(n)
            os.rename(n, n, src_dir_fd=sfd, dst_dir_fd=dfd)  # replaces a file or symlink
        for n in journal.get("stale", []):
            aside(n)
        if index and lstat(index, sfd) is not None:
            os.rename(index, index, src_dir_fd=sfd, dst_dir_fd=dfd)
        fsync_dir(dfd)
    finally:
        os.close(tfd)


# --- one file ------------------------------------------------------------------------------------


def write_file_atomic(path: str | os.PathLike[str], write: Callable[[Path], None],
                      option: str = "--out") -> Path:
    """Write one file: ``write(tmp)`` fills a private staging folder beside ``path``, which
    is then renamed over ``path`` (a symlink there is replaced, not followed).

    The staging folder is created exclusively inside the destination folder under the
    folder's lock; OSErrors become OutputError naming ``path``.
    """
    p = check_out_file(path, option)
    rs = ResultSet(p.parent if str(p.parent) else Path("."), option=option)
    with rs:
        tmp = rs.stage_path / p.name
        with writing(p):
            write(tmp)
            if not tmp.is_file() or tmp.is_symlink():
                raise OutputError(f"{p}: the writer produced no file")
        rs.names.append(p.name)
        rs.commit()
    return p


def owned_by_patterns(patterns: Iterable[str]) -> Callable[[str], bool]:
    """``owned`` predicate from regular expressions matched against whole names."""
    regs = [re.compile(p) for p in patterns]
    return lambda name: any(r.fullmatch(name) for r in regs)
