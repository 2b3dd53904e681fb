"""The output folder's lock and the descriptor-relative helpers writers share.

Everything here works relative to an open directory descriptor and never follows a symlink
inside the folder (``O_NOFOLLOW``, ``follow_symlinks=False``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from pathlib import Path

from .checks import OutputBusyError, OutputError, os_error

LOCK_NAME = ".hwsim.lock"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def lstat(name: str, dfd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def rmtree_at(name: str, dfd: int) -> None:
    """Remove the entry ``name`` of the folder ``dfd`` (never following a symlink)."""
    st = lstat(name, dfd)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        sub = os.open(name, DIR_FLAGS, dir_fd=dfd)
        try:
            for child in os.listdir(sub):
                rmtree_at(child, sub)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)


def fsync_dir(dfd: int) -> None:
    try:
        os.fsync(dfd)
    except OSError:
        pass


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def host() -> str:
    return socket.gethostname()


# --- the lock ------------------------------------------------------------------------------------


class FolderLock:
    """An exclusive ``flock`` on ``.hwsim.lock`` inside a folder (given as a descriptor).

    The lock file is opened with O_NOFOLLOW (a planted symlink is removed, never followed),
    taken without waiting (a busy folder fails at once) and removed on release while still
    held; a job that locked a file which was unlinked meanwhile retries on the new one.
    """

    def __init__(self, dfd: int, where: Path) -> None:
        self.dfd = dfd
        self.where = where
        self.fd: int | None = None

    def acquire(self) -> None:
        for _ in range(20):
            try:
                fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600, dir_fd=self.dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # a symlink planted at the lock's name
                    os.unlink(LOCK_NAME, dir_fd=self.dfd)
                    continue
                raise os_error(self.where / LOCK_NAME, exc) from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OutputError(f"{self.where / LOCK_NAME}: is not a regular file; remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = ""
                try:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                except OSError:
                    pass
                os.close(fd)
                raise OutputBusyError(
                    f"{self.where}: another hwsim job is writing here"
                    f"{f' ({holder})' if holder else ''}; wait for it or choose another --out"
                ) from None
            except OSError as exc:
                os.close(fd)
                raise os_error(self.where / LOCK_NAME, exc) from None
            cur = lstat(LOCK_NAME, self.dfd)
            mine = os.fstat(fd)
            if cur is None or (cur.st_ino, cur.st_dev) != (mine.st_ino, mine.st_dev):
                os.close(fd)  # unlinked by its previous holder meanwhile: lock the new one
                continue
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on {host()}\n".encode(), 0)
            except OSError:
                pass
            self.fd = fd
            return
        raise OutputError(f"{self.where / LOCK_NAME}: cannot take the lock; try again")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            cur = lstat(LOCK_NAME, self.dfd)
            mine = os.fstat(self.fd)
            if cur is not None and (cur.st_ino, cur.st_dev) == (mine.st_ino, mine.st_dev):
                os.unlink(LOCK_NAME, dir_fd=self.dfd)
        except OSError:
            pass
        finally:
            os.close(self.fd)  # closing releases the flock
            self.fd = None


class HeldFolder:
    """Hold a folder's ``.hwsim.lock`` for a long job that writes many files over time (a
    sweep): a second job into the same folder fails at once instead of mixing files.

    The folder is created if missing (parents included); use as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str], option: str = "--out") -> None:
        self.path = Path(path)
        self.option = option
        self.dfd: int | None = None
        self.lock: FolderLock | None = None

    def __enter__(self) -> HeldFolder:
        from .checks import check_out_dir, writing

        out = check_out_dir(self.path, self.option)
        with writing(out):
            out.mkdir(parents=True, exist_ok=True)
            self.dfd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            self.lock = FolderLock(self.dfd, out)
            self.lock.acquire()
        except BaseException:
            os.close(self.dfd)
            self.dfd = None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.dfd is not None:
            os.close(self.dfd)
            self.dfd = None
