"""Copying and zeroing LV data with ``dd``, run through the command chokepoint.

Only thick LVs need it (thin clones are snapshots). It needs activated LVs, i.e. a host with
device-mapper; with ``lvm_driverloaded = false`` the driver refuses before getting here.
"""

from __future__ import annotations

from blockmgr.drivers.command import CommandRunner


def copy_device(runner: CommandRunner, source: str, target: str, size_bytes: int,
                blocksize: str, timeout: int | None = None) -> None:
    """Copy the first ``size_bytes`` of ``source`` onto ``target``.

    Not sparse on purpose: skipping zero blocks would leave whatever the (thick, not zeroed)
    target held before. ``oflag=direct`` bypasses the page cache and ``conv=fdatasync`` makes
    dd return only once the data is on the device.
    """
    runner.execute("dd", "if=%s" % source, "of=%s" % target, "bs=%s" % blocksize,
                   "count=%d" % size_bytes, "iflag=count_bytes", "oflag=direct",
                   "conv=fdatasync,notrunc", timeout=timeout)


def zero_device(runner: CommandRunner, target: str, size_bytes: int, blocksize: str,
                timeout: int | None = None) -> None:
    """Overwrite the first ``size_bytes`` of ``target`` with zeros (wipe before removal)."""
    runner.execute("dd", "if=/dev/zero", "of=%s" % target, "bs=%s" % blocksize,
                   "count=%d" % size_bytes, "iflag=count_bytes", "oflag=direct",
                   "conv=fdatasync,notrunc", timeout=timeout)
