"""Files of a study folder: written whole or not at all, with the umask's permissions,
by one run at a time.

* :func:`atomic_write` writes through a temporary file in the same folder, flushes it
  to disk (fsync) and renames it over the target: a reader, a resume or a kill never
  sees a half-written file; the temporary file is removed if writing fails.
* ``tempfile.mkstemp`` creates files 0600; :func:`atomic_write` gives them the mode an
  ordinary ``open`` would (0666 minus the umask).
* :class:`FolderLock` (``fcntl.flock`` on ``.lock``) stops a second run from writing
  into a folder in use; the kernel releases it when the holder dies, so a killed run
  leaves no stale lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Callable

from aggregame.errors import AggregameError

#: Suffix of temporary files; anything ``.*.tmp`` in a study folder is a leftover of a
#: killed run and is removed by the next run (under the folder's lock).
TMP_SUFFIX = ".tmp"


class FolderBusyError(RuntimeError, AggregameError):
    """Another run holds the lock of a study folder."""


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, brief)
    os.umask(mask)
    return mask


def temp_path(path: Path) -> Path:
    """A new, empty temporary file next to ``path`` (mode 0600 until renamed)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=TMP_SUFFIX)
    os.close(fd)
    return Path(tmp)


def atomic_write(path: Path, write: Callable[[Path], None],
                 on_temp: Callable[[Path | None], None] | None = None) -> None:
    """Write ``path`` whole or not at all: ``write(tmp)`` fills a temporary file that
    is synced and renamed over ``path``. ``on_temp`` is told the temporary file's name
    (and None when it is gone), for cleanup by a watchdog."""
    path = Path(path)
    tmp = temp_path(path)
    if on_temp is not None:
        on_temp(tmp)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        if on_temp is not None:
            on_temp(None)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def remove_stale_temps(folder: Path) -> int:
    """Remove temporary files left by a killed run under ``folder``; returns how
    many."""
    count = 0
    for stale in folder.rglob(f".*{TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
        count += 1
    return count


class FolderLock:
    """An exclusive lock on ``folder`` for one run (a context manager)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusyError(
                    f"{self.path.parent}: another aggregame run is writing this "
                    f"folder; wait for it to finish or use another --out") from None
            raise
        # The lock file stays empty: a folder's files depend on its results only.
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
