"""What lives in a loopback volume directory, and the durable file operations on it.

Naming convention (the whole on-disk state of the driver; there is no other metadata):

- ``volume-<id>``         a managed volume (``VolumeView.name``)
- ``snapshot-<id>``       a managed snapshot (``SnapshotView.name``)
- ``.blockmgr-tmp-*``     work in progress: a file being created or copied. It only becomes
                          visible under its final name by an atomic rename once complete and
                          fsynced, so a crash never leaves a half-written volume or snapshot.
                          The name carries its owner (``<host>+<pid>+<start>+...``, see
                          :func:`owner_tag`): a service starting on a directory shared with
                          running peers removes only the temp files of dead processes.
- ``<parent>@<name>``     a *snapshot-like* foreign file: a snapshot of the file ``<parent>``
                          (listed by ``get_manageable_snapshots``; unmanaging a snapshot renames
                          it to ``<volume name>@<snapshot name>``)
- ``unmanaged-<name>``    what ``unmanage`` renames a volume to (foreign again, manageable)
- anything else           a foreign file, manageable as a volume

Names are validated before they are joined to the directory, so no name (from a view or
from a user's manage reference) can reach outside it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import socket
import time
import uuid

from blockmgr import exception

VOLUME_PREFIX = "volume-"
SNAPSHOT_PREFIX = "snapshot-"
TEMP_PREFIX = ".blockmgr-tmp-"
UNMANAGED_PREFIX = "unmanaged-"
SNAPSHOT_SEPARATOR = "@"

#: Mode of files the driver creates: volume data is readable by its owner only.
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700

MAX_NAME_BYTES = 255

GiB = 1024 ** 3

LOG = logging.getLogger(__name__)

#: Separator of the owner fields in a temp file's name (no hostname contains it).
OWNER_SEPARATOR = "+"

#: A temp file whose owner runs on another host (its liveness cannot be checked from here),
#: or one without an owner in its name, is removed at start only once it is older than
#: this: no copy or create runs for a day without touching its file.
STALE_TEMP_SECONDS = 24 * 3600

#: Longest purpose kept in a temp file's name (names stay far below MAX_NAME_BYTES).
_MAX_PURPOSE = 80


def _start_token(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, ``/proc/<pid>/stat``
    field 22), which tells a live process from a later one that reuses its pid; None when
    the process does not exist (or ``/proc`` cannot say)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat_line = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat_line.rpartition(")")[2].split()   # after "(comm)", which may hold spaces
    if len(fields) <= 19 or fields[0] in ("Z", "X"):   # a zombie has finished its work
        return None
    return fields[19]


_OWNER_CACHE: dict[int, str] = {}


def owner_tag() -> str:
    """``<hostname>+<pid>+<start token>`` of this process (computed again after a fork)."""
    pid = os.getpid()
    tag = _OWNER_CACHE.get(pid)
    if tag is None:
        host = socket.gethostname().replace(OWNER_SEPARATOR, "-") or "localhost"
        tag = OWNER_SEPARATOR.join((host, str(pid), _start_token(pid) or "0"))
        _OWNER_CACHE.clear()
        _OWNER_CACHE[pid] = tag
    return tag


def temp_name(purpose: str) -> str:
    """A fresh temp file name owned by this process: ``.blockmgr-tmp-<owner>+<purpose>-<hex>``."""
    return "%s%s%s%s-%s" % (TEMP_PREFIX, owner_tag(), OWNER_SEPARATOR,
                            purpose[:_MAX_PURPOSE], uuid.uuid4().hex)


def temp_owner(name: str) -> tuple[str, int, str] | None:
    """``(host, pid, start token)`` from a temp file's name; None when it names no owner."""
    fields = name[len(TEMP_PREFIX):].split(OWNER_SEPARATOR, 3)
    if not name.startswith(TEMP_PREFIX) or len(fields) != 4 or not fields[1].isdigit():
        return None
    return fields[0], int(fields[1]), fields[2]


def owner_alive(host: str, pid: int, token: str) -> bool | None:
    """Whether the owner of a temp file still runs: True/False for a process of this host,
    None for one of another host (not checkable from here)."""
    if host != owner_tag().split(OWNER_SEPARATOR, 1)[0]:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass   # exists, another user's
    current = _start_token(pid)
    if current is None:   # a zombie or gone since (dead), unless there is no /proc to ask
        return not os.path.isdir("/proc/self")
    return token == "0" or current == token


def name_problem(name) -> str | None:
    """Why ``name`` cannot be a file name in the directory, or None when it can."""
    if not isinstance(name, str) or not name:
        return "a file name must be a non-empty string, got %r" % (name,)
    if "/" in name or "\0" in name:
        return "a file name cannot contain '/' or NUL: %r" % name
    if name in (".", ".."):
        return "%r is not a file name" % name
    if name.startswith("."):
        return "hidden names (starting with '.') are reserved: %r" % name
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return "a file name is at most %d bytes: %r" % (MAX_NAME_BYTES, name)
    return None


def is_managed_name(name: str) -> bool:
    """True for names the driver gives to volumes and snapshots it manages (a snapshot-like
    ``volume-x@y`` is foreign)."""
    return (name.startswith(VOLUME_PREFIX) or name.startswith(SNAPSHOT_PREFIX)) \
        and not is_snapshot_like(name)


def is_snapshot_like(name: str) -> bool:
    """True for foreign ``<parent>@<name>`` files (both parts non-empty)."""
    parent, sep, child = name.partition(SNAPSHOT_SEPARATOR)
    return bool(sep and parent and child)


def snapshot_parent(name: str) -> str | None:
    """The ``<parent>`` of a snapshot-like name, else None."""
    return name.partition(SNAPSHOT_SEPARATOR)[0] if is_snapshot_like(name) else None


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def rename_noreplace(source: str, target: str) -> None:
    """Rename ``source`` to ``target``, failing with FileExistsError if ``target`` exists.

    ``os.rename`` silently replaces the target, which would destroy a volume's data if two
    names collided; ``renameat2(RENAME_NOREPLACE)`` checks and renames atomically.
    """
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is not None:
        result = renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target),
                           _RENAME_NOREPLACE)
        if result == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: the filesystem lacks the flag
            raise OSError(err, os.strerror(err), source, None, target)
    # Fallback for filesystems without RENAME_NOREPLACE: a hard link fails atomically if the
    # target exists; then drop the old name.
    os.link(source, target)
    os.unlink(source)


class VolumeDirectory:
    """One backend's directory: name-to-path mapping and crash-safe file operations."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def path_of(self, name: str) -> str:
        """Absolute path of ``name``; raises InvalidInput for a name that is not a plain
        file name (so nothing can escape the directory)."""
        problem = name_problem(name)
        if problem:
            raise exception.InvalidInput(reason=problem)
        return os.path.join(self.path, name)

    def ensure_exists(self) -> None:
        os.makedirs(self.path, mode=DIRECTORY_MODE, exist_ok=True)

    def sync(self) -> None:
        """fsync the directory, making renames and unlinks in it durable."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def stat(self, name: str) -> os.stat_result | None:
        """lstat of ``name``, or None if there is no such file."""
        try:
            return os.lstat(self.path_of(name))
        except FileNotFoundError:
            return None

    def new_temp_path(self, purpose: str) -> str:
        """Path of a fresh temp file owned by this process (see :func:`temp_name`)."""
        return os.path.join(self.path, temp_name(purpose))

    def publish(self, temp_path: str, name: str) -> None:
        """Give the complete, fsynced file ``temp_path`` its final ``name`` and make the rename
        durable. FileExistsError if ``name`` exists (the temp file is then left to the caller).
        """
        rename_noreplace(temp_path, self.path_of(name))
        self.sync()

    def rename(self, old: str, new: str) -> None:
        """Durably rename ``old`` to ``new``; FileExistsError if ``new`` exists."""
        rename_noreplace(self.path_of(old), self.path_of(new))
        self.sync()

    def remove(self, name: str) -> bool:
        """Durably delete ``name``; False if it was already gone."""
        try:
            os.unlink(self.path_of(name))
        except FileNotFoundError:
            return False
        self.sync()
        return True

    def create_sparse(self, name: str, size_bytes: int) -> None:
        """Create ``name`` as a sparse file of ``size_bytes`` (all holes), atomically."""
        temp_path = self.new_temp_path(name)
        try:
            fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         FILE_MODE)
            try:
                os.ftruncate(fd, size_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.publish(temp_path, name)
        finally:
            unlink_quietly(temp_path)

    def grow(self, name: str, size_bytes: int) -> None:
        """Grow ``name`` to ``size_bytes`` (a hole at the end); never shrinks."""
        grow_file(self.path_of(name), size_bytes)

    def names(self) -> list[str]:
        """Names of the regular files and symlinks in the directory, hidden ones excluded."""
        result = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_symlink() or entry.is_file(follow_symlinks=False):
                    result.append(entry.name)
        return result

    def remove_leftover_temp_files(self, stale_seconds: float = STALE_TEMP_SECONDS,
                                   now: float | None = None) -> list[str]:
        """Delete the ``.blockmgr-tmp-*`` files whose owner is gone; returns their names.

        Safe while other processes work in the directory (cluster members sharing it,
        several services on one host): a temp file is removed only when its owner, named in
        the file name, no longer runs -- a process of this host whose pid is gone or now
        belongs to a later process (start token) -- or, when that cannot be checked (a
        process of another host, a name without an owner), once the file is older than
        ``stale_seconds`` (mtime). Files of live processes, this one included, are kept.
        """
        now = time.time() if now is None else now
        removed = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                if not (entry.name.startswith(TEMP_PREFIX)
                        and entry.is_file(follow_symlinks=False)):
                    continue
                owner = temp_owner(entry.name)
                alive = owner_alive(*owner) if owner is not None else None
                if alive is None:
                    try:
                        age = now - entry.stat(follow_symlinks=False).st_mtime
                    except FileNotFoundError:
                        continue
                    if age < stale_seconds:
                        LOG.info("Keeping %s: its owner cannot be checked from this host "
                                 "and it is %.0f s old (removed after %d s)", entry.name,
                                 age, stale_seconds)
                        continue
                elif alive:
                    continue
                unlink_quietly(entry.path)
                removed.append(entry.name)
        if removed:
            self.sync()
        return removed


def grow_file(path: str, size_bytes: int) -> None:
    """Grow the file at ``path`` to ``size_bytes`` with a hole, fsynced; never shrinks."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size < size_bytes:
            os.ftruncate(fd, size_bytes)
            os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    """Remove ``path`` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
