"""Files that never end half-written, one writer per run folder, and file-system faults in words.

- :func:`atomic_write_text` and :func:`atomic_dir`: write into a temporary sibling (its name carries
  the writer's pid), fsync, rename into place; an existing target is moved aside first and deleted
  last, and put back if the rename fails. A failed write removes its temporary and leaves the old
  target as it was. Temporaries of dead processes are cleaned up; a live process's never are.
- :class:`RunLock`: an exclusive ``flock`` on ``RUN/.lock`` holding the owner's pid. A second process
  fails at once naming the holder; the OS drops the lock of a process that died, so a stale lock is
  simply taken over.
- :func:`describe_os_error`: one line for an ``OSError`` (full disk, read-only, permission, a file in
  the way, a name too long), naming the path and what would be right.

Imports nothing of the project (any package may use it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK_FILE = ".lock"
MIN_FREE_BYTES = 16 << 20  #: a failed write with less free space than this is reported as a full disk


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_name(final: Path, kind: str = "tmp") -> Path:
    return final.with_name(f".{final.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove_stale_temps(final: Path) -> None:
    """Remove temporaries of ``final`` left by processes that no longer run."""
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        pid = stale.name.rsplit(".tmp-", 1)[1].split("-")[0]
        if not pid.isdigit() or not _pid_alive(int(pid)) or int(pid) == os.getpid():
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    stale.unlink()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def _as_disk_full(exc: BaseException, where: Path) -> BaseException:
    """A write error on a (nearly) full disk as ``OSError(ENOSPC)`` naming ``where``; else ``exc``."""
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.filename is None:  # a write that failed deep in a library: name what was being written
            return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(where))
        return exc
    if not isinstance(exc, Exception):
        return exc
    try:
        free = shutil.disk_usage(where.parent if where.parent.exists() else Path.cwd()).free
    except OSError:
        return exc
    if free < MIN_FREE_BYTES:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
    return exc


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is moved aside first, deleted last, and put
    back if the rename fails."""
    if not final.exists():
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return
    old = _temp_name(final, "old")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)
        raise
    fsync_dir(final.parent)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """``with atomic_dir(folder) as tmp:`` write the folder's files into ``tmp``; on success it replaces
    ``folder`` in one rename (fsynced), on any error ``tmp`` is removed and ``folder`` is untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(final)
    tmp = _temp_name(final)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        _swap_into_place(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        converted = _as_disk_full(exc, final)
        if converted is not exc:
            raise converted from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file, fsync and a rename (never half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        converted = _as_disk_full(exc, path)
        if converted is not exc:
            raise converted from exc
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``; a damaged file (truncated, not UTF-8) is a ``ValueError`` naming it."""
    import json

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: damaged ({exc}); delete the folder it belongs to, or restore the file") \
            from None


class RunLock:
    """An exclusive lock on a run folder for this process's lifetime (or the ``with`` block)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(f"{self.path.parent}: in use by another evoarena process (pid {holder}); "
                                 "wait for it to finish, or stop it, then --resume") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


_HINTS = {
    errno.ENOSPC: "free some space or choose another --run-dir",
    errno.EDQUOT: "free some space or choose another --run-dir",
    errno.EROFS: "the file system is read-only; choose a writable --run-dir",
    errno.EACCES: "no permission; choose a folder you can write, or fix its permissions",
    errno.EPERM: "not permitted; choose a folder you can write",
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EEXIST: "a file stands where a folder is needed; choose another path",
    errno.EISDIR: "a folder stands where a file is needed; choose another path",
    errno.ENAMETOOLONG: "the name is too long for the file system; choose a shorter one",
}


def describe_os_error(exc: OSError) -> str:
    """One line for ``exc``: the path, the OS's words, and what would be right."""
    if exc.errno is None:
        return str(exc)
    path = "" if exc.filename is None else str(exc.filename)
    if exc.filename2 is not None:
        path += f" -> {exc.filename2}"
    reason = exc.strerror or str(exc)
    line = f"{path}: {reason}" if path else reason
    hint = _HINTS.get(exc.errno or -1)
    return f"{line} ({hint})" if hint else line
