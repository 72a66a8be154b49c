"""The lvm2 command layer: one volume group, typed reports, serialised metadata changes.

Every lvm2 command goes through :class:`~blockmgr.drivers.command.CommandRunner` (the one
chokepoint: ``LC_ALL=C``, full environment, timeout, typed error). This module adds what is
specific to lvm2:

- reports are read as JSON (``--reportformat json``) in bytes (``--units b --nosuffix``), never
  by splitting columns of human output;
- ``--driverloaded n`` goes into every command when the host has no device-mapper
  (``driverloaded=False``): lvm2 then only edits metadata and never touches the kernel;
- metadata changes of one VG are serialised inside the process by a per-VG re-entrant lock
  (lvm2's own file locks protect the on-disk metadata across processes; ours keeps a
  check-then-act sequence of the driver from interleaving with another thread's);
- names are validated again here, so nothing that could be an option or a path reaches lvm2
  whatever the caller forgot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from typing import Iterator

from blockmgr import exception
from blockmgr.drivers.command import CommandRunner
from blockmgr.drivers.lvm import names

GiB = 1024 ** 3

_LV_FIELDS = ("lv_name", "lv_size", "lv_attr", "origin", "origin_size", "pool_lv",
              "data_percent", "lv_uuid", "lv_tags")
_VG_FIELDS = ("vg_name", "vg_size", "vg_free", "lv_count", "vg_uuid")

_VG_LOCKS: dict[str, threading.RLock] = {}
_VG_LOCKS_GUARD = threading.Lock()


def vg_lock(vg_name: str) -> threading.RLock:
    """The process-wide lock serialising metadata changes of ``vg_name``."""
    with _VG_LOCKS_GUARD:
        return _VG_LOCKS.setdefault(vg_name, threading.RLock())


@dataclasses.dataclass(frozen=True)
class LogicalVolume:
    """One row of ``lvs``. ``attr`` is lvm2's 10-character attribute string."""

    name: str
    size_bytes: int
    attr: str
    origin: str = ""
    pool_lv: str = ""
    data_percent: float | None = None
    uuid: str = ""
    origin_size_bytes: int = 0
    tags: tuple[str, ...] = ()

    @property
    def data_size_bytes(self) -> int:
        """Bytes of data the LV presents: for a COW snapshot ``lv_size`` is the size of its
        COW area, the data it holds is as large as its origin."""
        if self.is_thick_snapshot and self.origin_size_bytes:
            return self.origin_size_bytes
        return self.size_bytes

    @property
    def volume_type(self) -> str:
        return self.attr[:1]

    @property
    def is_thin_pool(self) -> bool:
        return self.volume_type == "t"

    @property
    def is_thick_snapshot(self) -> bool:
        return self.volume_type in ("s", "S")

    @property
    def is_thick_origin(self) -> bool:
        """Origin of COW snapshots: removing it would remove (or break) the snapshots."""
        return self.volume_type in ("o", "O")

    @property
    def is_thin_volume(self) -> bool:
        return self.volume_type == "V"

    @property
    def is_snapshot(self) -> bool:
        return self.is_thick_snapshot or (self.is_thin_volume and bool(self.origin))

    @property
    def is_plain_volume(self) -> bool:
        """A volume a user could attach: thick (``-``), thick origin or thin (not a pool,
        mirror leg, cache, ...)."""
        return self.volume_type in ("-", "o", "O", "V")

    @property
    def is_merging_snapshot(self) -> bool:
        """A COW snapshot whose merge into its origin has started (lvm2 shows ``S``)."""
        return self.volume_type == "S"

    @property
    def is_open(self) -> bool:
        return len(self.attr) > 5 and self.attr[5] == "o"


@dataclasses.dataclass(frozen=True)
class VolumeGroup:
    name: str
    size_bytes: int
    free_bytes: int
    lv_count: int
    uuid: str


class LVMCommands:
    """lvm2 operations on one volume group.

    :param vg_name: the VG (validated).
    :param runner: the command chokepoint.
    :param driverloaded: False adds ``--driverloaded n`` to every command and creates LVs
        inactive without zeroing (``-an -Zn``): the only way lvm2 works without device-mapper.
    :param lvm_system_dir: directory holding an ``lvm.conf`` to use instead of the host's.
    """

    def __init__(self, vg_name: str, runner: CommandRunner, driverloaded: bool = True,
                 lvm_system_dir: str | None = None):
        problem = names.vg_name_problem(vg_name)
        if problem:
            raise exception.InvalidInput(reason=problem)
        self.vg_name = vg_name
        self.runner = runner
        self.driverloaded = driverloaded
        self.env = {"LVM_SUPPRESS_FD_WARNINGS": "1"}
        if lvm_system_dir:
            self.env["LVM_SYSTEM_DIR"] = lvm_system_dir

    # --- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the VG's metadata lock (re-entrant) for a check-then-act sequence."""
        with vg_lock(self.vg_name):
            yield

    def run(self, tool: str, *args: str) -> str:
        """Run an lvm2 tool; returns stdout. Raises CommandExecutionError."""
        cmd = [tool]
        if not self.driverloaded:
            cmd += ["--driverloaded", "n"]
        cmd += list(args)
        out, _err = self.runner.execute(*cmd, env=self.env)
        return out

    def _lv_path(self, lv_name: str) -> str:
        problem = names.lv_name_problem(lv_name)
        if problem:
            # Callers validate user input first; reaching this is a programming error, and
            # the command must still not run.
            raise exception.InvalidInput(reason=problem)
        return "%s/%s" % (self.vg_name, lv_name)

    def _report(self, tool: str, kind: str, fields: tuple[str, ...], target: str) -> list[dict]:
        out = self.run(tool, "--reportformat", "json", "--units", "b", "--nosuffix",
                       "-o", ",".join(fields), target)
        try:
            return list(json.loads(out)["report"][0][kind])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise exception.VolumeBackendAPIException(
                reason="unparseable %s report (%s): %r" % (tool, exc, out[:200])) from None

    def _create_flags(self, zero: bool = True) -> list[str]:
        """Without device-mapper an LV cannot be activated nor zeroed."""
        if self.driverloaded:
            return []
        return ["-an", "-Zn"] if zero else ["-an"]

    # --- reports --------------------------------------------------------------------------

    def vg_info(self) -> VolumeGroup | None:
        """The VG's report, or None when the VG does not exist (lvm2 exits 5 for that)."""
        try:
            rows = self._report("vgs", "vg", _VG_FIELDS, self.vg_name)
        except exception.CommandExecutionError as exc:
            if exc.kwargs.get("exit_code") == 5:
                return None
            raise
        if not rows:
            return None
        row = rows[0]
        return VolumeGroup(name=row["vg_name"], size_bytes=_int(row["vg_size"]),
                           free_bytes=_int(row["vg_free"]), lv_count=_int(row["lv_count"]),
                           uuid=row.get("vg_uuid", ""))

    def list_lvs(self) -> list[LogicalVolume]:
        """Every visible LV of the VG (hidden pool internals excluded, as lvs does)."""
        return [_lv_from_row(row) for row in self._report("lvs", "lv", _LV_FIELDS, self.vg_name)]

    def get_lv(self, lv_name: str) -> LogicalVolume | None:
        """The LV named ``lv_name`` or None. Lists the VG rather than asking for
        ``vg/lv``, so "absent" never depends on parsing an error message."""
        self._lv_path(lv_name)
        for lv in self.list_lvs():
            if lv.name == lv_name:
                return lv
        return None

    # --- metadata changes -----------------------------------------------------------------

    def create_thick(self, lv_name: str, size_gib: int) -> None:
        self._lv_path(lv_name)
        with self.locked():
            self.run("lvcreate", *self._create_flags(), "-n", lv_name, "-L", "%dg" % size_gib,
                     self.vg_name)

    def create_thin_pool(self, pool_name: str, extents: str = "95%FREE") -> None:
        path = self._lv_path(pool_name)
        with self.locked():
            self.run("lvcreate", *self._create_flags(), "-T", "-l", extents, path)

    def create_thin(self, lv_name: str, size_gib: int, pool_name: str) -> None:
        self._lv_path(lv_name)
        pool = self._lv_path(pool_name)
        with self.locked():
            self.run("lvcreate", *self._create_flags(zero=False), "-T", "-V",
                     "%dg" % size_gib, "-n", lv_name, pool)

    def create_snapshot(self, lv_name: str, origin: str, size_gib: int | None) -> None:
        """A COW snapshot of ``size_gib`` GiB, or a thin snapshot when ``size_gib`` is None.

        Thin snapshots are created with activation skip off (``-kn``) so they activate like
        any volume; volumes made from them are then usable without an extra lvchange.
        """
        self._lv_path(lv_name)
        origin_path = self._lv_path(origin)
        args = [*self._create_flags(zero=False), "-s", "-n", lv_name]
        if size_gib is None:
            args += ["-kn"]
        else:
            args += ["-L", "%dg" % size_gib]
        with self.locked():
            self.run("lvcreate", *args, origin_path)

    def rename(self, old: str, new: str) -> None:
        self._lv_path(old)
        self._lv_path(new)
        with self.locked():
            self.run("lvrename", self.vg_name, old, new)

    def extend(self, lv_name: str, size_gib: int) -> None:
        path = self._lv_path(lv_name)
        with self.locked():
            self.run("lvextend", "-L", "%dg" % size_gib, path)

    def remove(self, lv_name: str) -> None:
        path = self._lv_path(lv_name)
        with self.locked():
            self.run("lvremove", "-f", path)

    def set_active(self, lv_name: str, active: bool) -> None:
        """Activate (``-K`` also overrides activation skip) or deactivate an LV."""
        path = self._lv_path(lv_name)
        with self.locked():
            if active:
                self.run("lvchange", "-ay", "-K", path)
            else:
                self.run("lvchange", "-an", path)

    def merge_snapshot(self, snapshot_name: str) -> None:
        """``lvconvert --merge``: the origin takes the snapshot's data and the snapshot LV
        goes away once merged (at once for an origin that is not open)."""
        path = self._lv_path(snapshot_name)
        with self.locked():
            self.run("lvconvert", "--merge", path)

    def add_tag(self, lv_name: str, tag: str) -> None:
        path = self._lv_path(lv_name)
        with self.locked():
            self.run("lvchange", "--addtag", _tag(tag), path)

    def delete_tag(self, lv_name: str, tag: str) -> None:
        path = self._lv_path(lv_name)
        with self.locked():
            self.run("lvchange", "--deltag", _tag(tag), path)

    def device_path(self, lv_name: str) -> str:
        return "/dev/" + self._lv_path(lv_name)


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise exception.VolumeBackendAPIException(
            reason="lvm2 reported %r where a byte count was expected" % (value,)) from None


def _tag(tag: str) -> str:
    """An LVM tag blockmgr built (letters, digits, ``_+.-``, at most 128 characters)."""
    if not tag or len(tag) > 128 or not all(c.isascii() and (c.isalnum() or c in "_+.-")
                                            for c in tag):
        raise exception.InvalidInput(reason="%r cannot be an LVM tag" % (tag,))
    return tag


def _lv_from_row(row: dict) -> LogicalVolume:
    percent = row.get("data_percent") or ""
    try:
        data_percent = float(percent) if percent else None
    except ValueError:
        data_percent = None
    return LogicalVolume(name=row["lv_name"], size_bytes=_int(row["lv_size"]),
                         attr=row.get("lv_attr", ""), origin=row.get("origin", ""),
                         pool_lv=row.get("pool_lv", ""), data_percent=data_percent,
                         uuid=row.get("lv_uuid", ""),
                         origin_size_bytes=_int(row.get("origin_size") or 0),
                         tags=tuple(t for t in (row.get("lv_tags") or "").split(",") if t))
