"""Helpers every driver needs to honour the manage-existing contracts the same way.

The rules live in the interface docstrings (:class:`~blockmgr.interface.volume_management.
VolumeManagementDriver`); these functions implement the parts that do not depend on the
backend: reading ``existing_ref``, rounding sizes up to GiB, building listing entries
(:class:`~blockmgr.interface.updates.ManageableEntry`) and the sort/page semantics of
``get_manageable_volumes`` / ``get_manageable_snapshots``. They are helpers, not contract:
a driver may implement the rules otherwise, the conformance suite checks the behaviour.
"""

from __future__ import annotations

import re
from typing import Any

from blockmgr import exception
from blockmgr.interface.updates import ManageableEntry

GiB = 1024 ** 3

#: What a backend object name from a user may look like: no path separator, no leading ``-``
#: (an option to a command) or ``.`` (``.``/``..``/hidden files), printable ASCII only.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,127}$")

SORT_KEYS = ("identifier", "size")
SORT_DIRS = ("asc", "desc")


def size_in_gib_rounded_up(size_bytes: int) -> int:
    """Bytes -> whole GiB, rounded UP (1 GiB + 1 byte -> 2). Negative sizes are invalid."""
    if size_bytes < 0:
        raise exception.InvalidInput(reason="negative size %d" % size_bytes)
    return -(-int(size_bytes) // GiB)


def parse_reference(existing_ref: Any, accepted_keys=("source-name",)) -> tuple[str, str]:
    """Validate ``existing_ref`` and return ``(key, value)`` for the first accepted key in it.

    :param accepted_keys: the keys this driver understands, in order of preference.
    :raises ManageExistingInvalidReference: not a dict, none of the accepted keys, a value
        that is not a non-empty string, or a ``source-name`` that fails :data:`SAFE_NAME`.
    """
    def invalid(reason):
        return exception.ManageExistingInvalidReference(existing_ref=existing_ref,
                                                         reason=reason)

    if not isinstance(existing_ref, dict):
        raise invalid("a reference must be a dict with %s, got %s"
                      % (" or ".join(repr(k) for k in accepted_keys),
                         type(existing_ref).__name__))
    for key in accepted_keys:
        if key in existing_ref:
            value = existing_ref[key]
            if not isinstance(value, str) or not value:
                raise invalid("%r must be a non-empty string, got %r" % (key, value))
            if key == "source-name" and not SAFE_NAME.match(value):
                raise invalid("%r is not a valid object name (letters, digits, '_', '+', "
                              "'.', '-'; not starting with '-' or '.'; no '/')" % value)
            return key, value
    raise invalid("missing %s (keys given: %s)"
                  % (" or ".join(repr(k) for k in accepted_keys),
                     ", ".join(sorted(map(str, existing_ref))) or "none"))


def manageable_entry(reference: dict, size_gib: int, cinder_id: str | None = None,
                     reason_not_safe: str | None = None, extra_info: Any = None,
                     source_reference: dict | None = None) -> ManageableEntry:
    """One listing entry; safe to manage exactly when there is no ``reason_not_safe``."""
    entry: ManageableEntry = {
        "reference": reference, "size": int(size_gib),
        "safe_to_manage": reason_not_safe is None, "reason_not_safe": reason_not_safe,
        "cinder_id": cinder_id, "extra_info": extra_info}
    if source_reference is not None:
        entry["source_reference"] = source_reference  # type: ignore[typeddict-unknown-key]
    return entry


def identifier(entry: ManageableEntry) -> str:
    ref = entry["reference"]
    return str(ref.get("source-name", ref.get("source-id", "")))


def sort_and_page(entries: list[ManageableEntry], marker, limit, offset, sort_keys,
                  sort_dirs) -> list[ManageableEntry]:
    """Sort by ``sort_keys``/``sort_dirs`` then page: start after ``marker`` (a reference
    dict), skip ``offset``, return at most ``limit`` (None: all).

    :raises InvalidInput: unknown sort key or direction, negative limit/offset, or a marker
        that is not in the listing.
    """
    sort_keys = list(sort_keys or ["identifier"])
    sort_dirs = list(sort_dirs or [])
    sort_dirs += ["asc"] * (len(sort_keys) - len(sort_dirs))
    for key in sort_keys:
        if key not in SORT_KEYS:
            raise exception.InvalidInput(reason="unknown sort key %r; use one of %s"
                                         % (key, ", ".join(SORT_KEYS)))
    for direction in sort_dirs:
        if direction not in SORT_DIRS:
            raise exception.InvalidInput(reason="unknown sort direction %r; use asc or desc"
                                         % (direction,))
    ordered = list(entries)
    for key, direction in reversed(list(zip(sort_keys, sort_dirs))):
        ordered.sort(key=(identifier if key == "identifier" else lambda e: e["size"]),
                     reverse=direction == "desc")
    start = 0
    if marker is not None:
        positions = [i for i, e in enumerate(ordered) if e["reference"] == marker]
        if not positions:
            raise exception.InvalidInput(reason="marker %r is not in the listing" % (marker,))
        start = positions[0] + 1
    if offset:
        if offset < 0:
            raise exception.InvalidInput(reason="offset must be >= 0, got %r" % offset)
        start += offset
    if limit is not None and limit < 0:
        raise exception.InvalidInput(reason="limit must be >= 0, got %r" % limit)
    return ordered[start:] if limit is None else ordered[start:start + limit]
