"""Files of a study folder: written whole or not at all, with the umask's permissions,
by one run at a time, never through a symbolic link.

* :func:`atomic_write` writes through a temporary file in the same folder, created
  new (``O_CREAT | O_EXCL | O_NOFOLLOW``: never an existing file or link), flushes
  it to disk (fsync) and renames it over the target (a rename replaces a link, it
  does not follow it): a reader, a resume or a kill never sees a half-written file;
  the temporary file is removed if writing fails, and a failure names the target
  (``results.csv: No space left on device``), not the temporary file.
* ``tempfile.mkstemp`` creates files 0600; :func:`atomic_write` gives them the mode an
  ordinary ``open`` would (0666 minus the umask).
* :class:`FolderLock` (``fcntl.flock`` on ``.lock``) stops a second run from writing
  into a folder in use; the kernel releases it when the holder dies, so a killed run
  leaves no stale lock. A ``.lock`` that is a symbolic link (or not a regular file)
  is refused, never followed: a folder someone else prepared cannot make a run
  truncate a file elsewhere.
* :func:`read_regular` reads a result or settings file of the folder, refusing a
  link (a result cannot be borrowed from elsewhere).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from aggregame.errors import AggregameError

#: Suffix of temporary files; anything ``.*.tmp`` in a study folder is a leftover of a
#: killed run and is removed by the next run (under the folder's lock).
TMP_SUFFIX = ".tmp"


class FolderBusyError(RuntimeError, AggregameError):
    """Another run holds the lock of a study folder."""

    kind = "folder-busy"


class LinkRefusedError(ValueError, AggregameError):
    """A study folder holds a symbolic link (or another non-regular file) where
    aggregame keeps a file of its own."""

    kind = "link-refused"


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


def temp_path(path: Path) -> tuple[Path, os.stat_result]:
    """A new, empty temporary file next to ``path`` (mode 0600 until renamed; made
    by mkstemp: O_CREAT | O_EXCL | O_NOFOLLOW) and its identity."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=TMP_SUFFIX)
    try:
        made = os.fstat(fd)
    finally:
        os.close(fd)
    return Path(tmp), made


def atomic_write(path: Path, write: Callable[[Path], None],
                 on_temp: Callable[[Path | None], None] | None = None) -> None:
    """Write ``path`` whole or not at all: ``write(tmp)`` fills a temporary file that
    is synced and renamed over ``path``. ``on_temp`` is told the temporary file's name
    (and None when it is gone), for cleanup by a watchdog. An OSError (a full disk)
    names ``path``."""
    path = Path(path)
    try:
        tmp, made = temp_path(path)
    except OSError as err:
        raise _naming(err, path) from err
    if on_temp is not None:
        on_temp(tmp)
    try:
        write(tmp)
        _seal(tmp, made, path)
        os.replace(tmp, path)
    except OSError as err:
        raise _naming(err, path) from err
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()
        if on_temp is not None:
            on_temp(None)


def _seal(tmp: Path, made: os.stat_result, path: Path) -> None:
    """Flush ``tmp`` to disk and give it the umask's mode, through a descriptor
    opened without following a link, after checking it is still the file made."""
    fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (made.st_dev, made.st_ino):
            raise LinkRefusedError(f"{path}: its temporary file {tmp.name} was "
                                   f"replaced while written; nothing written")
        os.fsync(fd)
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` naming the file being written (not its temporary file, and also
    where the writer gave no name at all: a failed fsync, pyarrow's own errors)."""
    if err.filename is not None and str(err.filename) == str(path):
        return err
    return OSError(err.errno, err.strerror or " ".join(str(err).split()), str(path))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def read_regular(path: Path) -> str:
    """The UTF-8 text of ``path``, a regular file of a study folder; a symbolic
    link there is refused (LinkRefusedError), a missing file is FileNotFoundError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LinkRefusedError(f"{path}: is a symbolic link; a study folder's "
                                   f"files are its own (remove the link)") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise LinkRefusedError(f"{path}: is not a regular file")
        return fh.read().decode("utf-8")


def remove_stale_temps(folder: Path) -> int:
    """Remove temporary files left by a killed run under ``folder`` (a link among
    them is removed itself, never followed); returns how many."""
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
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise LinkRefusedError(
                    f"{self.path}: is a symbolic link; a study folder's lock must be "
                    f"a file of its own (remove the link)") from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LinkRefusedError(f"{self.path}: is not a regular file; remove "
                                       f"it")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusyError(
                    f"{self.path.parent}: another aggregame run is writing this "
                    f"folder; wait for it to finish or use another --out") from None
            raise
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
