"""``POST /v3/{project_id}/volumes/{volume_id}/action``: one action per request.

The body is a one-key object naming the action, Cinder's way::

    {"os-extend": {"new_size": 20}}                         -> 202
    {"os-initialize_connection": {"connector": {...}}}     -> 200 {"connection_info": ...}
    {"os-terminate_connection": {"connector": {...}}}      -> 202
    {"os-unmanage": null}                                   -> 202 (admin only)
    {"os-reserve": null}, {"os-unreserve": null}, {"os-begin_detaching": null},
    {"os-roll_detaching": null}, {"os-attach": {...}}, {"os-detach": {...}}  -> 202
    {"os-force_detach": {...}}, {"os-reset_status": {...}}, {"os-force_delete": null}
                                                            -> 202 (admin only)
    {"revert": {"snapshot_id": "..."}}                      -> 202 (from microversion 3.40)

The attach actions record their holds as attachments (:mod:`blockmgr.api.attachments`).

Any other key, or more than one, is a ``400`` listing the supported actions. Unmanage is
for admins, as in Cinder: it frees the project's quota while the data stays on the
backend, so a project could otherwise store beyond its quota. ``revert`` below 3.40 is a
``404``, as Cinder answers an action of a later microversion; from 3.40 it reverts an
``available`` volume to its latest snapshot (``400`` for another snapshot, a volume without
snapshots or of another size than the snapshot's; ``409`` when the volume or the snapshot is
not ``available``).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi import Request
from fastapi import Response
from pydantic import Field
from pydantic import model_validator

from blockmgr import exception
from blockmgr.api.rest import deps
from blockmgr.api.rest import errors
from blockmgr.api.rest import fields
from blockmgr.api.rest import group_views
from blockmgr.api.rest import versions
from blockmgr.api.rest.volumes import volume_id_of

router = APIRouter(tags=["volume actions"])

#: From 3.42 an ``in-use`` volume can be extended (before, only ``available`` ones).
EXTEND_IN_USE_VERSION = (3, 42)
#: ``revert`` (to the volume's latest snapshot) exists from 3.40.
REVERT_VERSION = (3, 40)
ACTIONS = ("os-extend", "os-initialize_connection", "os-terminate_connection", "os-unmanage",
           "os-reserve", "os-unreserve", "os-begin_detaching", "os-roll_detaching",
           "os-attach", "os-detach", "os-force_detach", "os-reset_status", "os-force_delete",
           "revert")
#: Actions that take no arguments: ``null`` or ``{}``.
NO_ARGUMENTS = ("os-unmanage", "os-reserve", "os-unreserve", "os-begin_detaching",
                "os-roll_detaching", "os-force_delete")
#: Actions only an admin may send.
ADMIN_ACTIONS = ("os-unmanage", "os-force_detach", "os-reset_status", "os-force_delete")


class Extend(fields.Body):
    new_size: fields.Size


class Connect(fields.Body):
    connector: fields.Connector


class Disconnect(fields.Body):
    connector: fields.Connector
    force: fields.Flag = False


class Unmanage(fields.Body):
    """``os-unmanage`` takes no arguments: ``null`` or ``{}``."""


class Attach(fields.Body):
    instance_uuid: fields.Uuid | None = None
    host_name: fields.Text | None = None
    mountpoint: fields.Text | None = None
    mode: Literal["rw", "ro"] = "rw"


class Detach(fields.Body):
    attachment_id: fields.Uuid | None = None


class ForceDetach(fields.Body):
    attachment_id: fields.Uuid | None = None
    connector: fields.Connector | None = None


class ResetStatus(fields.Body):
    status: fields.Text | None = None
    attach_status: fields.Text | None = None
    migration_status: fields.Text | None = None


class Revert(fields.Body):
    snapshot_id: fields.Text | None = None


class VolumeAction(fields.Body):
    extend: Extend | None = Field(None, alias="os-extend")
    initialize_connection: Connect | None = Field(None, alias="os-initialize_connection")
    terminate_connection: Disconnect | None = Field(None, alias="os-terminate_connection")
    unmanage: Unmanage | None = Field(None, alias="os-unmanage")
    reserve: Unmanage | None = Field(None, alias="os-reserve")
    unreserve: Unmanage | None = Field(None, alias="os-unreserve")
    begin_detaching: Unmanage | None = Field(None, alias="os-begin_detaching")
    roll_detaching: Unmanage | None = Field(None, alias="os-roll_detaching")
    attach: Attach | None = Field(None, alias="os-attach")
    detach: Detach | None = Field(None, alias="os-detach")
    force_detach: ForceDetach | None = Field(None, alias="os-force_detach")
    reset_status: ResetStatus | None = Field(None, alias="os-reset_status")
    force_delete: Unmanage | None = Field(None, alias="os-force_delete")
    revert: Revert | None = Field(None, alias="revert")

    @model_validator(mode="before")
    @classmethod
    def exactly_one_action(cls, data: Any):
        if not isinstance(data, dict):
            raise ValueError("the body must be an object naming one action: %s"
                             % ", ".join(ACTIONS))
        unknown = sorted(set(data) - set(ACTIONS))
        if unknown:
            raise ValueError("unknown volume action %s; this server supports %s"
                             % (", ".join(map(repr, unknown)), ", ".join(ACTIONS)))
        if len(data) != 1:
            raise ValueError("give exactly one action per request, not %d (%s)"
                             % (len(data), ", ".join(sorted(data)) or "none"))
        (name, value), = data.items()
        if value is None and name in NO_ARGUMENTS + ("os-detach", "os-force_detach"):
            data = {name: {}}
        elif value is None:
            raise ValueError("%s needs its arguments as an object" % name)
        return data


@router.post("/volumes/{volume_id}/action", summary="Act on a volume",
             responses={200: {"description": "os-initialize_connection: connection info"},
                        202: {"description": "the other actions: accepted"}})
def volume_action(request: Request, ctx: deps.Context, state: deps.State, volume_id: str,
                  body: VolumeAction):
    volume_id = volume_id_of(volume_id)
    volumes = state.client.volumes
    attachments = state.client.attachments
    sent = body.model_dump(by_alias=True, exclude_none=True)
    if not ctx.is_admin and set(sent) & set(ADMIN_ACTIONS):
        raise errors.Forbidden(action="%s for a non-admin caller (role %r needed)"
                               % (next(iter(sent)), deps.ADMIN_ROLE))
    if body.extend is not None:
        if request.state.api_version < EXTEND_IN_USE_VERSION:
            if volumes.get_volume(ctx, volume_id)["status"] == "in-use":
                raise exception.InvalidVolume(
                    reason="volume %s is in-use; before microversion 3.42 only an "
                           "available volume can be extended (send OpenStack-API-Version: "
                           "volume 3.42 to extend an in-use one)" % volume_id)
        volumes.extend_volume(ctx, volume_id, body.extend.new_size)
    elif body.initialize_connection is not None:
        info = volumes.initialize_connection(ctx, volume_id,
                                             body.initialize_connection.connector)
        return {"connection_info": info}
    elif body.terminate_connection is not None:
        volumes.terminate_connection(ctx, volume_id, body.terminate_connection.connector,
                                     force=body.terminate_connection.force)
    elif body.reserve is not None:
        attachments.reserve(ctx, volume_id)
    elif body.unreserve is not None:
        attachments.unreserve(ctx, volume_id)
    elif body.begin_detaching is not None:
        attachments.begin_detaching(ctx, volume_id)
    elif body.roll_detaching is not None:
        attachments.roll_detaching(ctx, volume_id)
    elif body.attach is not None:
        attachments.attach(ctx, volume_id, instance_uuid=body.attach.instance_uuid,
                           host_name=body.attach.host_name,
                           mountpoint=body.attach.mountpoint, mode=body.attach.mode)
    elif body.detach is not None:
        attachments.detach(ctx, volume_id, body.detach.attachment_id)
    elif body.force_detach is not None:
        attachments.detach(ctx, volume_id, body.force_detach.attachment_id, force=True,
                           connector=body.force_detach.connector)
    elif body.reset_status is not None:
        reset = body.reset_status
        state.client.admin.reset_status(ctx, "volume", volume_id, reset.status,
                                        attach_status=reset.attach_status,
                                        migration_status=reset.migration_status)
    elif body.force_delete is not None:
        volumes.force_delete_volume(ctx, volume_id)
    elif body.revert is not None:
        if request.state.api_version < REVERT_VERSION:
            raise group_views.VersionTooLow(what="revert actions", minimum="3.40",
                                            requested=versions.fmt(request.state.api_version))
        volumes.revert_to_snapshot(ctx, volume_id, body.revert.snapshot_id)
    else:
        volumes.unmanage(ctx, volume_id)
    return Response(status_code=202)
