"""Cinder's views of groups and group snapshots, and what their routers share.

The shapes are Cinder's (block storage API v3.13 / v3.14): a summary is ``{id, name}``; a
detail adds ``status``, ``description``, ``created_at``, ``availability_zone``,
``group_type`` and ``volume_types`` (group) or ``group_id`` and ``group_type_id`` (group
snapshot); from 3.14 a group also names the ``group_snapshot_id`` / ``source_group_id`` it
was created from. blockmgr keeps no volume-type or group-type catalogue: the type names a
client sends are labels recorded on the group and shown back, nothing more.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Request
from pydantic import AfterValidator
from pydantic import ConfigDict
from pydantic import Field

from blockmgr import exception
from blockmgr.api.rest import fields
from blockmgr.api.rest import versions

#: Microversions where Cinder introduced the resources.
GROUPS_VERSION = (3, 13)
GROUP_SNAPSHOTS_VERSION = (3, 14)
#: Groups and group snapshots show their ``project_id``.
PROJECT_ID_VERSION = (3, 58)
#: The admin ``reset_status`` actions: group snapshots from 3.19, groups from 3.20.
GROUP_SNAPSHOT_RESET_VERSION = (3, 19)
GROUP_RESET_VERSION = (3, 20)


class VersionTooLow(exception.NotFound):
    """Cinder answers a call below the microversion that introduced it with 404."""
    msg_fmt = ("%(what)s need API microversion %(minimum)s or later; send the header "
               "'OpenStack-API-Version: volume %(minimum)s' (this request asked for "
               "%(requested)s).")


def require_version(minimum: tuple[int, int], what: str):
    """A dependency refusing requests below ``minimum`` (``404``, as Cinder does)."""

    def check(request: Request) -> None:
        requested = getattr(request.state, "api_version", versions.MIN_VERSION)
        if requested < minimum:
            raise VersionTooLow(what=what, minimum=versions.fmt(minimum),
                                requested=versions.fmt(requested))

    return check


# --- request bodies ---------------------------------------------------------------------------

def _storable(value: str | None) -> str | None:
    """Refuse text no database can store: NUL (PostgreSQL) and lone surrogates (not UTF-8)."""
    if value is None:
        return value
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Text = Annotated[str, Field(max_length=255), AfterValidator(_storable)]
TypeLabel = Annotated[str, Field(min_length=1, max_length=36), AfterValidator(_storable)]
#: An id in a body must be a UUID (anything else is a ``400`` naming the field).
ResourceId = Annotated[str, Field(pattern=fields.UUID_PATTERN, description="a UUID"),
                      AfterValidator(str.lower)]


class Body(fields.Body):
    """A request body object: unknown fields and control characters are refused (``400``,
    :class:`blockmgr.api.rest.fields.Body`), types are not coerced (a number is not a
    string)."""
    model_config = ConfigDict(extra="forbid", strict=True)


class ResetStatus(Body):
    """``{"reset_status": {"status": S}}`` (admin): the status to put the group or group
    snapshot in; the client library says which statuses a reset may choose."""
    status: Text


def reset_status(request: Request, ctx, state, kind: str, resource_id: str,
                 spec: ResetStatus) -> None:
    """The admin reset of a group or a group snapshot (``kind``), below its microversion a
    ``404`` naming it."""
    minimum, what = ((GROUP_RESET_VERSION, "Resetting a group's status") if kind == "group"
                     else (GROUP_SNAPSHOT_RESET_VERSION,
                           "Resetting a group snapshot's status"))
    require_version(minimum, what)(request)
    state.client.admin.reset_status(ctx, kind, resource_id, spec.status)


# --- views ------------------------------------------------------------------------------------

def timestamp(value: str | None) -> str | None:
    """Cinder's timestamp form, ``2026-12-03T10:00:00.000000`` (naive UTC)."""
    if not value:
        return None
    if "." not in value:
        value += ".000000"
    return value


def group_summary(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"]}


def group_detail(row: dict, version: tuple[int, int]) -> dict:
    body = {"id": row["id"], "name": row["name"], "description": row["description"],
            "status": row["status"], "availability_zone": row["availability_zone"],
            "created_at": timestamp(row["created_at"]),
            "updated_at": timestamp(row["updated_at"]),
            "group_type": row["group_type_id"], "volume_types": _type_ids(row)}
    if version >= GROUP_SNAPSHOTS_VERSION:
        body["group_snapshot_id"] = row["group_snapshot_id"]
        body["source_group_id"] = row["source_group_id"]
    if version >= PROJECT_ID_VERSION:
        body["project_id"] = row.get("project_id")
    return body


def _type_ids(row: dict) -> list[str]:
    try:
        ids = json.loads(row.get("volume_type_ids") or "[]")
    except ValueError:
        return []
    return [str(i) for i in ids] if isinstance(ids, list) else []


def group_snapshot_summary(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"]}


def group_snapshot_detail(row: dict,
                          version: tuple[int, int] = versions.MIN_VERSION) -> dict:
    body = {"id": row["id"], "name": row["name"], "description": row["description"],
            "status": row["status"], "group_id": row["group_id"],
            "group_type_id": row["group_type_id"],
            "created_at": timestamp(row["created_at"]),
            "updated_at": timestamp(row["updated_at"])}
    if version >= PROJECT_ID_VERSION:
        body["project_id"] = row.get("project_id")
    return body
