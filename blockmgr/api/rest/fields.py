"""Body and query building blocks the volume, snapshot and manage routers share.

Bodies are pydantic models with ``extra="forbid"`` (an unknown field is a ``400`` naming
it) and strict types (``"10"`` is not a size, ``1`` is not a boolean), so a request that
would be read differently by another server is refused instead of guessed at. Semantic
checks (sizes against quota, statuses, ownership) stay in the client library.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Request
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator
from pydantic import StrictBool
from pydantic import StrictInt
from pydantic import StrictStr

from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr.api import common
from blockmgr.api import listing

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID_RE = re.compile(UUID_PATTERN)

#: A resource id in a body: a UUID (anything else is a 400 naming the field).
Uuid = Annotated[StrictStr, Field(pattern=UUID_PATTERN, description="a UUID")]
#: A name or description: at most 255 characters (null allowed: no name).
Text = Annotated[StrictStr, Field(max_length=common.MAX_NAME)]
#: A size in GiB: a JSON integer from 1 to the largest quota value.
Size = Annotated[StrictInt, Field(ge=1, le=bm_quota.MAX_QUOTA_VALUE,
                                  description="size in GiB")]
#: Connector properties (os-brick style); values are passed to the driver unchanged.
Connector = Annotated[dict[str, Any], Field(max_length=64)]
Flag = StrictBool


def control_character(value: str, *, text: bool = True) -> str | None:
    """A description of the first control character in ``value`` (``None`` when there is
    none). With ``text`` tab, newline and carriage return are allowed (names and
    descriptions); identifiers allow none."""
    check = listing.CONTROL_TEXT_RE if text else listing.CONTROL_ID_RE
    match = check.search(value)
    return "control character U+%04X" % ord(match.group()) if match else None


def _strings_without_controls(value, where: str) -> None:
    if isinstance(value, str):
        found = control_character(value)
        if found:
            raise ValueError("%s contains a %s; remove it" % (where or "a value", found))
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings_without_controls(key, "a field name")
            _strings_without_controls(item, "%s.%s" % (where, key) if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _strings_without_controls(item, "%s[%d]" % (where, index))


class Body(BaseModel):
    """Base of every request body: unknown fields are refused, and so is a control
    character (NUL, ESC, ...) in any string: no database stores NUL, and the others are
    never part of a name, a zone or a backend reference."""
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data):
        _strings_without_controls(data, "")
        return data


def refuse_unless_empty(field: str, what: str, hint: str):
    """A validator for a field blockmgr does not support: null / empty passes (clients
    send it that way by default), anything else is a 400 saying what to do."""
    def check(cls, value):
        if value is None or value == {} or value == "" or value is False:
            return None
        raise ValueError("%s; %s" % (what, hint))
    return field_validator(field)(check)


def is_uuid(value: str) -> bool:
    return bool(_UUID_RE.match(value or ""))


def path_id(value: str, not_found: type[exception.NotFound], kwarg: str) -> str:
    """An id from the URL. Anything that is not a UUID cannot name a resource, so it is
    reported as not found (``404``), as Cinder does: clients such as python-cinderclient
    look a name up this way before searching by name."""
    if not is_uuid(value):
        raise not_found(**{kwarg: value[:64]})
    return value.lower()


#: Query parameters every list call accepts (paging and sorting, ``deps.paging``).
PAGING_PARAMS = frozenset({"limit", "marker", "offset", "sort", "sort_key", "sort_dir"})


def query_filters(request: Request, filters: dict[str, str], what: str,
                  ignored: frozenset = frozenset()) -> dict:
    """The filters of a list call from its query string.

    :param filters: query name -> the library's filter name (aliases map to one filter).
    :param ignored: other parameters the route reads itself (``all_tenants``).
    :raises InvalidInput: a parameter that is neither paging, a filter nor ignored, or one
        given twice (Cinder silently used one of them).
    """
    out = {}
    for key in request.query_params.keys():
        if key in PAGING_PARAMS or key in ignored:
            continue
        if key not in filters:
            raise exception.InvalidInput(
                reason="cannot filter %s by %r; filters are: %s" % (
                    what, key, ", ".join(sorted(set(filters) | ignored))))
        values = request.query_params.getlist(key)
        if len(values) != 1 or filters[key] in out:
            raise exception.InvalidInput(reason="filter %s is given more than once" % key)
        found = control_character(values[0])
        if found:
            raise exception.InvalidInput(reason="filter %s contains a %s" % (key, found))
        out[filters[key]] = values[0]
    return out


def versioned_filters(request: Request, filters: dict[str, str],
                      introduced: dict[str, tuple[int, int]]) -> dict[str, str]:
    """``filters`` less those whose microversion (``introduced``: query name -> version)
    is above the request's; naming one of those is a ``400`` saying which version to send.
    """
    version = request.state.api_version
    for key in request.query_params.keys():
        needed = introduced.get(key)
        if key in filters and needed is not None and version < needed:
            raise exception.InvalidInput(
                reason="the %s filter needs microversion %d.%d or later (send "
                       "OpenStack-API-Version: volume %d.%d)" % (key, *needed, *needed))
    return {k: v for k, v in filters.items()
            if introduced.get(k) is None or version >= introduced[k]}


def as_bool(value: str | None, what: str) -> bool:
    """A boolean query parameter as Cinder reads it (``1``/``true``/``yes``/``on`` ...)."""
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on", "y", "t"):
        return True
    if lowered in ("0", "false", "no", "off", "n", "f", ""):
        return False
    raise exception.InvalidInput(reason="%s must be true or false, not %r" % (what, value[:32]))


def labels(spec: dict) -> dict:
    """``name`` / ``description`` of an update body, accepting the v1 spellings
    ``display_name`` / ``display_description`` that older clients still send."""
    out = dict(spec)
    for legacy, current in (("display_name", "name"), ("display_description", "description")):
        if legacy in out:
            if current in out:
                raise exception.InvalidInput(reason="give %s or %s, not both"
                                                    % (current, legacy))
            out[current] = out.pop(legacy)
    return out
