"""LV naming: the names blockmgr gives its LVs and the validation of names that come from users.

Why strict validation: a ``source-name`` from a manage request ends up as an argument of
``lvrename``/``lvs``. A name starting with ``-`` would be parsed as an option and one holding
``/`` or ``..`` could address another VG or a path. Only names that LVM itself would accept and
that cannot be read as anything but an LV name pass; everything else is refused before any
command runs.
"""

from __future__ import annotations

import re

#: Characters LVM allows in LV/VG names; the first one may not be ``-`` or ``.`` (so no option
#: and no ``.``/``..``), and nothing here can form a path.
_NAME_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,126}$")

#: LVM reserves these prefixes and infixes for its own (internal) LVs.
_RESERVED_PREFIXES = ("snapshot", "pvmove")
_RESERVED_INFIXES = ("_cdata", "_cmeta", "_corig", "_iorig", "_mimage", "_mlog", "_pmspare",
                     "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig")

#: An LV UUID as ``lvs -o lv_uuid`` prints it (6-4-4-4-4-4-6 alphanumerics).
_LV_UUID_RE = re.compile(r"^[A-Za-z0-9]{6}(-[A-Za-z0-9]{4}){5}-[A-Za-z0-9]{6}$")

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_VOLUME_LV_RE = re.compile(r"^volume-(%s)$" % _UUID)
_SNAPSHOT_LV_RE = re.compile(r"^_snapshot-(%s)$" % _UUID)

SNAPSHOT_LV_PREFIX = "_snapshot-"
CLONE_SNAPSHOT_PREFIX = "_clone-snap-"


def lv_name_problem(name) -> str | None:
    """Why ``name`` is not an acceptable LV name, or None when it is."""
    if not isinstance(name, str):
        return "the name must be a string, not %s" % type(name).__name__
    if not _NAME_RE.match(name):
        return ("%r is not a valid LV name: use 1-127 characters from [A-Za-z0-9_.+-], "
                "not starting with '-' or '.'" % name)
    if name.startswith(_RESERVED_PREFIXES):
        return "%r starts with a prefix LVM reserves (%s)" % (name, ", ".join(_RESERVED_PREFIXES))
    for infix in _RESERVED_INFIXES:
        if infix in name:
            return "%r contains %r, which LVM reserves for internal LVs" % (name, infix)
    return None


def vg_name_problem(name) -> str | None:
    """Why ``name`` is not an acceptable VG name, or None when it is."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return ("%r is not a valid VG name: use 1-127 characters from [A-Za-z0-9_.+-], "
                "not starting with '-' or '.'" % (name,))
    return None


def is_lv_uuid(value) -> bool:
    return isinstance(value, str) and bool(_LV_UUID_RE.match(value))


#: Tag on a volume's LV while it is being reverted to snapshot ``<id>`` (LVMDriver).
REVERT_TAG_PREFIX = "blockmgr-revert-"


def snapshot_lv_name(snapshot) -> str:
    """LV of a snapshot: ``_snapshot-<id>`` (LVM refuses names starting with ``snapshot``)."""
    return SNAPSHOT_LV_PREFIX + snapshot.id


def clone_snapshot_lv_name(volume) -> str:
    """The temporary snapshot a thick clone copies from."""
    return CLONE_SNAPSHOT_PREFIX + volume.id


def volume_id_from_lv(name: str) -> str | None:
    """The volume id when ``name`` follows blockmgr's volume template, else None."""
    match = _VOLUME_LV_RE.match(name)
    return match.group(1) if match else None


def snapshot_id_from_lv(name: str) -> str | None:
    """The snapshot id when ``name`` follows blockmgr's snapshot template, else None."""
    match = _SNAPSHOT_LV_RE.match(name)
    return match.group(1) if match else None


def is_internal_lv(name: str) -> bool:
    """LVs blockmgr creates for itself and never offers for management (temporary snapshots)."""
    return name.startswith(CLONE_SNAPSHOT_PREFIX)
