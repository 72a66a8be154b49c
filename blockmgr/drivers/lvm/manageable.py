"""Which LVs of the VG could be managed, and the sorting/paging of that listing.

Own objects (the volumes/snapshots the manager passes in), thin pools, LVM internals and
blockmgr's temporary LVs are never listed. An LV still named ``volume-<uuid>`` that is not one
of the passed volumes was unmanaged (or its database row is gone): it is listed as safe, since
the driver cannot see the database; refusing references to volumes that still exist is the
manager's check. Volumes and snapshots are listed apart: an LV is a
snapshot when it is named like one of ours (``_snapshot-<uuid>``) or, for any other name, when
LVM says so (COW snapshot, or thin LV with an origin); our ``volume-<uuid>`` LVs are volumes
even when made as thin snapshots.
"""

from __future__ import annotations

import math

from blockmgr import exception
from blockmgr.drivers.lvm import names
from blockmgr.drivers.lvm.lvm import GiB, LogicalVolume

SORT_KEYS = ("identifier", "size")
SORT_DIRS = ("asc", "desc")


def is_snapshot_lv(lv: LogicalVolume) -> bool:
    if names.snapshot_id_from_lv(lv.name):
        return True
    if names.volume_id_from_lv(lv.name):
        return False
    return lv.is_snapshot


def size_gib(lv: LogicalVolume) -> int:
    return int(math.ceil(lv.data_size_bytes / GiB))


def _listable(lv: LogicalVolume) -> bool:
    return lv.is_plain_volume or lv.is_thick_snapshot


def volume_entries(lvs: list[LogicalVolume], cinder_volumes) -> list[dict]:
    ours = {v.name for v in cinder_volumes or ()}
    entries = []
    for lv in lvs:
        if not _listable(lv) or is_snapshot_lv(lv) or lv.name in ours \
                or names.is_internal_lv(lv.name):
            continue
        reason = None
        if lv.is_open:
            reason = "volume in use"
        elif names.lv_name_problem(lv.name):
            reason = names.lv_name_problem(lv.name)
        entries.append({"reference": {"source-name": lv.name}, "size": size_gib(lv),
                        "safe_to_manage": reason is None, "reason_not_safe": reason,
                        "cinder_id": None,
                        "extra_info": {"lv_uuid": lv.uuid, "lv_attr": lv.attr,
                                       "thin": lv.is_thin_volume}})
    return entries


def snapshot_entries(lvs: list[LogicalVolume], cinder_snapshots) -> list[dict]:
    ours = {names.SNAPSHOT_LV_PREFIX + s.id for s in cinder_snapshots or ()}
    entries = []
    for lv in lvs:
        if not _listable(lv) or not is_snapshot_lv(lv) or lv.name in ours \
                or names.is_internal_lv(lv.name):
            continue
        reason = None
        if lv.is_open:
            reason = "snapshot in use"
        elif not lv.origin:
            reason = "the snapshot's origin is unknown"
        entries.append({"reference": {"source-name": lv.name}, "size": size_gib(lv),
                        "safe_to_manage": reason is None, "reason_not_safe": reason,
                        "cinder_id": None,
                        "source_reference": {"source-name": lv.origin or None},
                        "extra_info": {"lv_uuid": lv.uuid, "lv_attr": lv.attr,
                                       "thin": lv.is_thin_volume}})
    return entries


def paginate(entries: list[dict], marker, limit, offset, sort_keys, sort_dirs) -> list[dict]:
    """Sort by ``sort_keys``/``sort_dirs`` (default identifier asc), start after the entry
    whose reference equals ``marker``, skip ``offset``, return at most ``limit``.

    :raises InvalidInput: unknown sort key or direction, a marker not in the listing, or a
        negative offset/limit.
    """
    keys = list(sort_keys or ["identifier"])
    dirs = list(sort_dirs or [])
    for key in keys:
        if key not in SORT_KEYS:
            raise exception.InvalidInput(
                reason="sort key %r is not one of %s" % (key, ", ".join(SORT_KEYS)))
    for direction in dirs:
        if direction not in SORT_DIRS:
            raise exception.InvalidInput(
                reason="sort direction %r is not one of %s" % (direction, ", ".join(SORT_DIRS)))
    dirs += ["asc"] * (len(keys) - len(dirs))
    ordered = list(entries)
    # Stable sorts from the least significant key; identifier last as a tie-breaker.
    for key, direction in reversed(list(zip(keys + ["identifier"], dirs + ["asc"]))):
        ordered.sort(key=lambda e: e["size"] if key == "size" else e["reference"]["source-name"],
                     reverse=direction == "desc")
    if marker:
        for index, entry in enumerate(ordered):
            if entry["reference"] == marker:
                ordered = ordered[index + 1:]
                break
        else:
            raise exception.InvalidInput(reason="marker %r is not in the listing" % (marker,))
    for name, value in (("offset", offset), ("limit", limit)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise exception.InvalidInput(reason="%s must be a non-negative integer" % name)
    if offset:
        ordered = ordered[offset:]
    if limit is not None:
        ordered = ordered[:limit]
    return ordered
