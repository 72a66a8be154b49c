"""Copying volume files: reflink where the filesystem can, sparse-aware copy otherwise.

A reflink (the ``FICLONE`` ioctl, btrfs and xfs with ``reflink=1``) shares the source's
extents copy-on-write: it takes milliseconds whatever the size, uses no space until either
file is written, and is atomic with respect to writes to the source (the kernel holds both
inodes' locks and flushes the source's dirty pages first). ext4 and tmpfs cannot do it.

The fallback walks the source's data extents with ``SEEK_DATA``/``SEEK_HOLE`` and copies only
those, skipping chunks that read back as zeros too, so the copy stays sparse: a 1 GiB volume
holding 1 MiB of data costs about 1 MiB of reads, writes and space. It is *not* atomic: a
write to the source during the copy may or may not be in the result.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os

from blockmgr.drivers.loopback import layout

LOG = logging.getLogger(__name__)

#: ``_IOW(0x94, 9, int)`` from linux/fs.h.
FICLONE = 0x40049409

#: errnos with which FICLONE says "not possible here" (as opposed to a real I/O failure).
_REFLINK_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV,
                                  errno.ENOSYS, errno.EPERM})

CHUNK_BYTES = 1024 * 1024
_ZEROS = bytes(CHUNK_BYTES)


class ReflinkUnsupported(Exception):
    """FICLONE is not possible between these files (filesystem or device boundary)."""


def reflink(src_fd: int, dst_fd: int) -> None:
    """Make ``dst_fd`` share all of ``src_fd``'s extents (``dst`` becomes the same size).

    :raises ReflinkUnsupported: the filesystem cannot reflink these files.
    :raises OSError: a real failure (e.g. EIO, ENOSPC).
    """
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _REFLINK_UNSUPPORTED:
            raise ReflinkUnsupported(os.strerror(exc.errno)) from None
        raise


def sparse_copy(src_fd: int, dst_fd: int) -> int:
    """Copy ``src_fd`` into the empty file ``dst_fd`` keeping holes; return bytes written.

    The destination ends exactly as long as the source.
    """
    length = os.fstat(src_fd).st_size
    written = 0
    offset = 0
    while offset < length:
        try:
            data_start = os.lseek(src_fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                break
            raise
        try:
            data_end = os.lseek(src_fd, data_start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            data_end = length
        written += _copy_range(src_fd, dst_fd, data_start, min(data_end, length))
        offset = data_end
    os.ftruncate(dst_fd, length)
    return written


def _copy_range(src_fd: int, dst_fd: int, start: int, end: int) -> int:
    written = 0
    position = start
    while position < end:
        chunk = os.pread(src_fd, min(CHUNK_BYTES, end - position), position)
        if not chunk:  # the source shrank under us; the final ftruncate settles the length
            break
        if chunk != _ZEROS[:len(chunk)]:
            view = memoryview(chunk)
            done = 0
            while done < len(chunk):
                done += os.pwrite(dst_fd, view[done:], position + done)
            written += len(chunk)
        position += len(chunk)
    return written


def copy_file(src_path: str, dst_path: str, use_reflink: bool, mode: int = 0o600) -> str:
    """Create ``dst_path`` (must not exist) as a copy of ``src_path``, fsynced.

    Tries reflink first when ``use_reflink``; falls back to a sparse copy if the filesystem
    refuses. Returns ``"reflink"`` or ``"sparse-copy"``: how it was done.
    """
    src_fd = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst_fd = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            method = "sparse-copy"
            if use_reflink:
                try:
                    reflink(src_fd, dst_fd)
                    method = "reflink"
                except ReflinkUnsupported as exc:
                    LOG.info("reflink %s -> %s not possible (%s); making a sparse copy",
                             src_path, dst_path, exc)
            if method == "sparse-copy":
                sparse_copy(src_fd, dst_fd)
            os.fsync(dst_fd)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    return method


def probe_reflink(directory: str) -> tuple[bool, str]:
    """Whether FICLONE works between two files in ``directory``, and why not if it does not.

    Creates and removes two small hidden files.
    """
    src_path = os.path.join(directory, layout.temp_name("reflink-probe-src"))
    dst_path = os.path.join(directory, layout.temp_name("reflink-probe-dst"))
    try:
        with open(src_path, "wb") as src:
            src.write(b"\xa5" * 65536)
            src.flush()
            os.fsync(src.fileno())
        src_fd = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            dst_fd = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o600)
            try:
                reflink(src_fd, dst_fd)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)
        return True, "FICLONE works in %s" % directory
    except ReflinkUnsupported as exc:
        return False, "the filesystem of %s cannot reflink (FICLONE: %s)" % (directory, exc)
    finally:
        for path in (src_path, dst_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
