"""Loop devices for volume files, through ``losetup`` and the driver command chokepoint.

Attaching needs root (``losetup --find --show`` opens ``/dev/loop-control``); listing works
for anyone (it reads sysfs). A file is matched to its loop devices by inode and device number
as ``losetup`` reports them, falling back to ``stat`` of the reported backing-file path
(btrfs reports a device number that differs from ``stat``'s; the kernel keeps that path
current across renames).
"""

from __future__ import annotations

import json
import os
import threading

from blockmgr import exception
from blockmgr.drivers.command import CommandRunner

_DELETED_SUFFIX = " (deleted)"


class LoopDevices:
    """Attach, find, resize and detach loop devices of files."""

    def __init__(self, runner: CommandRunner):
        self._runner = runner
        # One process attaching the same file twice at once would get two devices.
        self._lock = threading.Lock()

    def list_all(self) -> list[dict]:
        """Every loop device on the host: ``{'name', 'back-file', 'back-ino', 'back-maj:min'}``."""
        out, _err = self._runner.execute(
            "losetup", "--list", "--json", "--output", "NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN")
        if not out.strip():
            return []
        try:
            return list(json.loads(out).get("loopdevices") or [])
        except (ValueError, AttributeError) as exc:
            raise exception.VolumeBackendAPIException(
                reason="cannot parse 'losetup --list --json' output (%s): %r"
                % (exc, out[:200])) from None

    def attached_to(self, path: str, devices: list[dict] | None = None) -> list[str]:
        """Loop device names whose backing file is ``path`` (empty if none or no file)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return []
        found = []
        for dev in (self.list_all() if devices is None else devices):
            if _same_file(dev, st):
                found.append(dev["name"])
        return sorted(found)

    def attach(self, path: str) -> str:
        """The loop device of ``path``, attaching one if there is none yet."""
        with self._lock:
            existing = self.attached_to(path)
            if existing:
                return existing[0]
            out, _err = self._runner.execute("losetup", "--find", "--show", path)
            device = out.strip()
            if not device.startswith("/dev/"):
                raise exception.VolumeBackendAPIException(
                    reason="losetup --find --show %s printed %r instead of a device"
                    % (path, out))
            return device

    def detach_all(self, path: str) -> list[str]:
        """Detach every loop device of ``path``; returns what was detached (idempotent)."""
        with self._lock:
            detached = []
            for device in self.attached_to(path):
                try:
                    self._runner.execute("losetup", "--detach", device)
                except exception.CommandExecutionError as exc:
                    # Detached by someone else between listing and now: that is the goal.
                    if "No such device" not in str(exc.kwargs.get("stderr", "")):
                        raise
                detached.append(device)
            return detached

    def refresh_size(self, path: str) -> list[str]:
        """Make the loop devices of ``path`` see its new size (after a grow)."""
        devices = self.attached_to(path)
        for device in devices:
            self._runner.execute("losetup", "--set-capacity", device)
        return devices


def _same_file(dev: dict, st: os.stat_result) -> bool:
    ino = dev.get("back-ino")
    majmin = str(dev.get("back-maj:min") or "").strip()
    if ino not in (None, "") and majmin and ":" in majmin:
        major, _, minor = majmin.partition(":")
        try:
            if (int(ino) == st.st_ino
                    and os.makedev(int(major), int(minor)) == st.st_dev):
                return True
        except ValueError:
            pass
    back_file = str(dev.get("back-file") or "")
    if back_file.endswith(_DELETED_SUFFIX):
        return False
    if not back_file:
        return False
    try:
        other = os.stat(back_file)
    except OSError:
        return False
    return (other.st_ino, other.st_dev) == (st.st_ino, st.st_dev)
