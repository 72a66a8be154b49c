"""Listing resources: filters, sorting and keyset paging, checked in one place.

Every list call of the client library (volumes, snapshots, groups, group snapshots) follows
Cinder's query model: equality filters (``name~`` like-filters on text, booleans parsed
strictly, ``op:time`` comparisons on ``created_at``/``updated_at``), sort keys with directions, ``limit``/``marker``
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
import datetime as dt
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


#: A filter name ending with this is a case-insensitive substring match (Cinder's like
#: filters, microversion 3.34): ``name~=data`` keeps names containing ``data``.
LIKE_SUFFIX = "~"
#: Columns whose filter value is a boolean (``true``/``false``, ``1``/``0``, ...).
BOOLEAN_COLUMNS = frozenset({"bootable", "use_quota"})
#: Columns whose filter value is one or more comparisons with a time, comma-separated
#: (Cinder's 3.60 form): ``gt:2024-01-01T00:00:00,lte:2024-02-01T00:00:00``.
TIME_COLUMNS = frozenset({"created_at", "updated_at"})
TIME_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")
_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f")


def _boolean(key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise exception.InvalidInput(reason="filter %s must be true or false, not %r"
                                        % (key, value if not isinstance(value, str)
                                           else value[:32]))


def _time_conditions(key: str, value) -> list:
    """``op:time[,op:time...]`` -> conditions on a UTC time (an offset in the time is
    converted to UTC; a time without one is UTC)."""
    if isinstance(value, dt.datetime):
        return [repository.Match("eq", _utc(value))]
    if not isinstance(value, str) or not value.strip():
        raise exception.InvalidInput(reason="filter %s must be op:time[,op:time...]" % key)
    conditions = []
    for unit in value.split(","):
        op, sep, when = unit.strip().partition(":")
        if not sep or op not in TIME_OPERATORS:
            raise exception.InvalidInput(
                reason="filter %s: %r is not op:time with op one of %s (for example "
                       "gt:2024-01-01T00:00:00)" % (key, unit[:64], ", ".join(TIME_OPERATORS)))
        try:
            parsed = dt.datetime.fromisoformat(when.strip())
        except ValueError:
            raise exception.InvalidInput(
                reason="filter %s: %r is not an ISO 8601 time (for example "
                       "2024-01-01T00:00:00Z)" % (key, when[:64])) from None
        conditions.append(repository.Match(op, _utc(parsed)))
    return conditions


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when


@dataclasses.dataclass(frozen=True)
class Query:
    """A checked listing request. ``filters`` (equality with the value as given),
    ``conditions`` (like-filters, booleans, time comparisons: a list of values or
    :class:`~blockmgr.db.repository.Match` per column, all of which must hold) and
    ``order`` name columns."""
    filters: dict
    marker: str | None
    limit: int | None
    offset: int
    order: tuple[tuple[str, str], ...]
    conditions: dict = dataclasses.field(default_factory=dict)


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
    columns: dict = {}
    conditions: dict[str, list] = {}
    for key, value in (filters or {}).items():
        like = isinstance(key, str) and key.endswith(LIKE_SUFFIX)
        base = key[:-len(LIKE_SUFFIX)] if like else key
        if base not in accepted:
            raise exception.InvalidInput(
                reason="cannot filter by %r; filters are: %s"
                       % (key, ", ".join(sorted(accepted)) or "none"))
        if isinstance(value, str) and len(value) > MAX_FILTER_LENGTH:
            raise exception.InvalidInput(reason="filter %s is longer than %d characters"
                                                % (key, MAX_FILTER_LENGTH))
        if isinstance(value, str) and CONTROL_TEXT_RE.search(value):
            raise exception.InvalidInput(reason="filter %s contains a control character"
                                                % key)
        column = accepted[base]
        if like:
            if column in BOOLEAN_COLUMNS | TIME_COLUMNS or not isinstance(value, str):
                raise exception.InvalidInput(
                    reason="%s is not a text filter: it takes no %r (like) form"
                           % (base, LIKE_SUFFIX))
            condition = repository.Match("like", value)
        elif column in BOOLEAN_COLUMNS:
            condition = _boolean(key, value)
        elif column in TIME_COLUMNS:
            condition = _time_conditions(key, value)
        else:
            condition = value
        if isinstance(condition, list):
            conditions.setdefault(column, []).extend(condition)
        elif isinstance(condition, (repository.Match, bool)):
            conditions.setdefault(column, []).append(condition)
        else:
            columns[column] = condition
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
                 order=_order(_names(sortable), sort_keys, sort_dirs),
                 conditions=conditions)


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
    filters = {column: [value] for column, value in query.filters.items()}
    for column, more in query.conditions.items():
        filters.setdefault(column, []).extend(more)
    return list(repository.list_page(session, model, project_id=project_id,
                                     filters=filters, order=query.order,
                                     marker_id=query.marker, offset=query.offset,
                                     limit=query.limit))
