"""Where a scenario may read files, and how they are read.

A scenario file comes from someone else: it may name any path. Its data files
(``users = "x.csv"``) must resolve, after following every symbolic link, inside the
scenario's own folder (subfolders included), or inside aggregame's data/ folder (the
package's own files, which shipped and user scenarios may both name). Anything else
(an absolute path elsewhere, ``../``, a link that leads out) is refused before it is
opened, so no message can echo a byte of it, unless the caller allows outside paths
(``load_scenario(..., allow_outside=True)``, the command line's ``--allow-outside``).

Files are opened once, without following a link at the last step (the path was
resolved already: a link appearing there since is refused), without blocking on a
pipe, and read whole up to a size limit.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from aggregame.checks import shown
from aggregame.errors import OutsideFolderError, ScenarioError

#: Largest scenario (TOML) file read, in bytes: a larger one is a mistake (a device, a
#: log file), refused before reading it into memory.
MAX_FILE_BYTES = 64 * 2**20
#: Largest data file (CSV or Parquet of members) read, in bytes: about 3e7 members of
#: a CSV; the members of a larger file would not fit in the memory of one machine as
#: the game holds them.
MAX_DATA_BYTES = 2**30


def data_folder() -> Path:
    """aggregame's data/ folder (the shipped scenarios and users), resolved."""
    from aggregame import data

    return data.path("").resolve()


def is_inside(path: Path, folder: Path) -> bool:
    """Whether the resolved ``path`` is ``folder`` or lies below it."""
    return path == folder or folder in path.parents


def data_file(source: str, base: Path, *, scenario: str, field: str,
              allow_outside: bool) -> Path:
    """The resolved path of the data file ``source`` named by a scenario.

    ``source`` is read relative to ``base`` (the scenario's folder); a relative
    ``source`` that does not exist there is looked up in aggregame's data/ folder.
    A path outside both folders raises OutsideFolderError (``scenario``: the
    scenario's name for the message, ``field``: where it named the file) unless
    ``allow_outside``; one that does not exist raises ScenarioError.
    """
    base = base.resolve()
    shipped = data_folder()
    given = Path(source)
    try:
        local = (base / given).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # a link loop, a NUL byte
        raise ScenarioError(f"{scenario}: {field}: cannot resolve {shown(source)}: "
                            f"{getattr(err, 'strerror', None) or err}").at(
            scenario, field) from None
    allowed = allow_outside or is_inside(local, base) or is_inside(local, shipped)
    if allowed and local.exists():
        return local
    if not given.is_absolute():
        packaged = (shipped / given).resolve()
        if is_inside(packaged, shipped) and packaged.exists():
            return packaged
    if not allowed:
        raise OutsideFolderError(
            f"{scenario}: {field}: {shown(source)} is outside the scenario's folder "
            f"(a path elsewhere, '..', or a symbolic link leading out); a scenario "
            f"reads files of its own folder only, unless you pass --allow-outside"
        ).at(scenario, field)
    raise ScenarioError(f"{scenario}: {field}: file {shown(source)} not found next to "
                        f"the scenario or in aggregame's data/").at(scenario, field)


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES, *, follow: bool = True
               ) -> bytes:
    """The content of the regular file ``path`` (at most ``limit`` bytes); anything
    else is a ScenarioError naming the file. ``follow=False``: a symbolic link at
    the last step is refused (for paths resolved already)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else
                                                          os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP and not follow:
            raise ScenarioError(f"{path}: is a symbolic link (it was not one when "
                                f"checked); not followed").at(path) from None
        raise ScenarioError(f"{path}: cannot read: {err.strerror or err}").at(
            path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device or pipe"
            raise ScenarioError(f"{path}: is {kind}, not a regular file").at(path)
        if info.st_size > limit:
            raise ScenarioError(f"{path}: {info.st_size} bytes, more than the {limit} "
                                f"this file may have").at(path)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = fh.read(limit + 1)
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read: {err.strerror or err}").at(
            path) from None
    finally:
        os.close(fd)
    if len(raw) > limit:  # grew while read
        raise ScenarioError(f"{path}: more than the {limit} bytes this file may "
                            f"have").at(path)
    return raw


def read_text(path: Path, limit: int = MAX_FILE_BYTES, *, follow: bool = True) -> str:
    """The text of a regular UTF-8 file (a byte-order mark is allowed); anything else
    is a ScenarioError naming the file and, for bad UTF-8, the first bad byte."""
    raw = read_bytes(path, limit, follow=follow)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {err.start}: "
                            f"{raw[err.start:err.start + 1]!r})").at(path) from None
