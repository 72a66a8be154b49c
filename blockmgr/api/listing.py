"""Listing resources: filters, sorting and keyset paging, checked in one place.

Every list call of the client library (volumes, snapshots, groups, group snapshots) follows
Cinder's query model: equality filters, sort keys with directions, ``limit``/``marker``
paging (the marker is the id of the last item of the previous page) and ``offset``. What a
caller may name is declared per resource (``sortable`` / ``filterable``); anything else is
refused with :class:`~blockmgr.exception.InvalidInput` naming what is accepted, before any
query runs (:func:`check`). :func:`page` then reads one page.

Without sort keys a listing is newest first (``created_at`` descending); ``id`` is always
the last tie-breaker, so pages never overlap or skip rows. Paging is by keyset (rows after
the marker in the sort order), so a page does not shift when rows are added before it.
A marker outside the caller's scope is reported as unknown, like any id it may not see.

``sortable`` and ``filterable`` name columns, or map public names to columns where they
differ (a volume's ``name`` is its ``display_name`` column).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Mapping

from blockmgr import exception
from blockmgr.db import repository

DEFAULT_ORDER = (("created_at", "desc"),)
DIRECTIONS = ("asc", "desc")
MAX_FILTER_LENGTH = 255
#: Largest limit or offset: a signed 64-bit integer, the widest every database takes.
MAX_PAGING = 2 ** 63 - 1
#: Control characters refused in names, descriptions and filters on them (no database
#: stores NUL; tab and line breaks are text).
CONTROL_TEXT_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Control characters refused in identifiers (backend references, markers, URL paths).
CONTROL_ID_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclasses.dataclass(frozen=True)
class Query:
    """A checked listing request. ``filters`` and ``order`` name columns."""
    filters: dict
    marker: str | None
    limit: int | None
    offset: int
    order: tuple[tuple[str, str], ...]


def _names(declared: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    if declared is None:
        return {}
    if isinstance(declared, Mapping):
        return dict(declared)
    return {name: name for name in declared}


def check(*, filters: dict | None = None, marker: str | None = None,
          limit: int | None = None, offset: int | None = None, sort_keys=None,
          sort_dirs=None, sortable=None, filterable=None) -> Query:
    """Validate a listing request against what the resource declares.

    :param sortable: sort keys accepted (names of columns, or public name -> column).
    :param filterable: filters accepted (likewise).
    :raises InvalidInput: unknown filter or sort key, a key given twice, a direction other
        than asc/desc or more directions than keys, a negative or non-integer limit or
        offset (or one beyond :data:`MAX_PAGING`), a marker that is not an id-shaped
        string, a control character (NUL, ...) in a filter value or the marker.
    """
    if filters is not None and not isinstance(filters, Mapping):
        raise exception.InvalidInput(reason="filters must be a dict")
    accepted = _names(filterable)
    columns = {}
    for key, value in (filters or {}).items():
        if key not in accepted:
            raise exception.InvalidInput(
                reason="cannot filter by %r; filters are: %s"
                       % (key, ", ".join(sorted(accepted)) or "none"))
        if isinstance(value, str) and len(value) > MAX_FILTER_LENGTH:
            raise exception.InvalidInput(reason="filter %s is longer than %d characters"
                                                % (key, MAX_FILTER_LENGTH))
        if isinstance(value, str) and CONTROL_TEXT_RE.search(value):
            raise exception.InvalidInput(reason="filter %s contains a control character"
                                                % key)
        columns[accepted[key]] = value
    for what, value in (("limit", limit), ("offset", offset)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 0 <= value <= MAX_PAGING):
            raise exception.InvalidInput(reason="%s must be an integer >= 0 and <= %d, not %r"
                                                % (what, MAX_PAGING, value))
    if marker is not None and (not isinstance(marker, str) or not marker
                               or len(marker) > 36 or CONTROL_ID_RE.search(marker)):
        raise exception.InvalidInput(reason="marker must be the id of the last item of the "
                                            "previous page, not %r" % (marker,))
    return Query(filters=columns, marker=marker, limit=limit, offset=offset or 0,
                 order=_order(_names(sortable), sort_keys, sort_dirs))


def _order(sortable: dict[str, str], sort_keys, sort_dirs) -> tuple[tuple[str, str], ...]:
    keys = list(sort_keys or [])
    dirs = list(sort_dirs or [])
    if not keys:
        if dirs:
            raise exception.InvalidInput(reason="sort directions given without sort keys")
        return DEFAULT_ORDER
    bad = [k for k in keys if k not in sortable]
    if bad:
        raise exception.InvalidInput(reason="cannot sort by %s; sort keys are: %s"
                                            % (", ".join(map(repr, bad)),
                                               ", ".join(sorted(sortable))))
    if len(set(keys)) != len(keys):
        raise exception.InvalidInput(reason="a sort key is given twice in %s" % (keys,))
    if len(dirs) > len(keys) or any(d not in DIRECTIONS for d in dirs):
        raise exception.InvalidInput(reason="sort directions must be asc or desc, at most "
                                            "one per sort key, not %s" % (dirs,))
    dirs += [dirs[-1] if dirs else "desc"] * (len(keys) - len(dirs))
    return tuple((sortable[k], d) for k, d in zip(keys, dirs))


def page(session, model, query: Query, *, project_id: str | None) -> list:
    """One page of live ``model`` rows of ``project_id`` (None: every project).

    :raises InvalidInput: the marker is not a live row in that scope.
    """
    if query.marker is not None:
        try:
            repository.get(session, model, query.marker, project_id=project_id)
        except exception.NotFound:
            raise exception.InvalidInput(
                reason="marker %s is not a %s in this listing (use the id of the last item "
                       "of the previous page)"
                       % (query.marker, model.__tablename__[:-1].replace("_", " "))) from None
    return list(repository.list_page(session, model, project_id=project_id,
                                     filters=query.filters, order=query.order,
                                     marker_id=query.marker, offset=query.offset,
                                     limit=query.limit))
