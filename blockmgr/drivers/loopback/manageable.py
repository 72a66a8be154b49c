"""Sorting and paging of manageable listings (``get_manageable_volumes/snapshots``).

The contract (interface docstring): sort by ``sort_keys`` (``identifier`` = the reference's
``source-name``, or ``size``) in ``sort_dirs`` (``asc``/``desc``, one per key, missing ones
``asc``); then start after the entry whose ``reference`` equals ``marker``; then skip
``offset`` entries; then return at most ``limit``. Ties fall back to the identifier so pages
are stable. Bad keys, directions or an unknown marker raise ``InvalidInput``.
"""

from __future__ import annotations

import json

from blockmgr import exception

SORT_KEYS = {"identifier": lambda entry: entry["reference"].get("source-name") or "",
             "reference": lambda entry: entry["reference"].get("source-name") or "",
             "size": lambda entry: entry["size"]}
SORT_DIRS = ("asc", "desc")


def sort_and_page(entries: list[dict], marker, limit, offset, sort_keys, sort_dirs) -> list[dict]:
    keys = list(sort_keys or ["identifier"])
    dirs = list(sort_dirs or [])
    if len(dirs) > len(keys):
        raise exception.InvalidInput(
            reason="%d sort directions given for %d sort keys" % (len(dirs), len(keys)))
    dirs += ["asc"] * (len(keys) - len(dirs))
    for key in keys:
        if key not in SORT_KEYS:
            raise exception.InvalidInput(
                reason="unknown sort key %r; use 'identifier' or 'size'" % (key,))
    for direction in dirs:
        if direction not in SORT_DIRS:
            raise exception.InvalidInput(
                reason="unknown sort direction %r; use 'asc' or 'desc'" % (direction,))

    ordered = sorted(entries, key=SORT_KEYS["identifier"])  # stable tie-break
    for key, direction in reversed(list(zip(keys, dirs))):
        ordered.sort(key=SORT_KEYS[key], reverse=(direction == "desc"))

    start = 0
    if marker:
        reference = _marker_reference(marker)
        for index, entry in enumerate(ordered):
            if entry["reference"] == reference:
                start = index + 1
                break
        else:
            raise exception.InvalidInput(
                reason="marker %r is not in the manageable list" % (marker,))
    start += _non_negative("offset", offset)
    if limit is None:
        return ordered[start:]
    return ordered[start:start + _non_negative("limit", limit)]


def _marker_reference(marker) -> dict:
    if isinstance(marker, dict):
        return marker
    if isinstance(marker, str):
        try:
            parsed = json.loads(marker)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
        return {"source-name": marker}
    raise exception.InvalidInput(reason="marker must be a reference dict, got %r" % (marker,))


def _non_negative(what: str, value) -> int:
    if value is None:
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise exception.InvalidInput(reason="%s must be an integer, got %r" % (what, value)) \
            from None
    if number < 0:
        raise exception.InvalidInput(reason="%s must not be negative, got %d" % (what, number))
    return number
