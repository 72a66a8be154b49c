"""``POST /v3/{project_id}/volumes/{volume_id}/action``: one action per request.

The body is a one-key object naming the action, Cinder's way::

    {"os-extend": {"new_size": 20}}                         -> 202
    {"os-initialize_connection": {"connector": {...}}}     -> 200 {"connection_info": ...}
    {"os-terminate_connection": {"connector": {...}}}      -> 202
    {"os-unmanage": null}                                   -> 202 (admin only)

Any other key, or more than one, is a ``400`` listing the supported actions. Unmanage is
for admins, as in Cinder: it frees the project's quota while the data stays on the
backend, so a project could otherwise store beyond its quota.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Request
from fastapi import Response
from pydantic import Field
from pydantic import model_validator

from blockmgr import exception
from blockmgr.api.rest import deps
from blockmgr.api.rest import errors
from blockmgr.api.rest import fields
from blockmgr.api.rest.volumes import volume_id_of

router = APIRouter(tags=["volume actions"])

#: From 3.42 an ``in-use`` volume can be extended (before, only ``available`` ones).
EXTEND_IN_USE_VERSION = (3, 42)
ACTIONS = ("os-extend", "os-initialize_connection", "os-terminate_connection", "os-unmanage")


class Extend(fields.Body):
    new_size: fields.Size


class Connect(fields.Body):
    connector: fields.Connector


class Disconnect(fields.Body):
    connector: fields.Connector
    force: fields.Flag = False


class Unmanage(fields.Body):
    """``os-unmanage`` takes no arguments: ``null`` or ``{}``."""


class VolumeAction(fields.Body):
    extend: Extend | None = Field(None, alias="os-extend")
    initialize_connection: Connect | None = Field(None, alias="os-initialize_connection")
    terminate_connection: Disconnect | None = Field(None, alias="os-terminate_connection")
    unmanage: Unmanage | None = Field(None, alias="os-unmanage")

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
        if data.get("os-unmanage", 0) is None:
            data = {"os-unmanage": {}}
        else:
            (name, value), = data.items()
            if value is None:
                raise ValueError("%s needs its arguments as an object" % name)
        return data


@router.post("/volumes/{volume_id}/action", summary="Act on a volume",
             responses={200: {"description": "os-initialize_connection: connection info"},
                        202: {"description": "the other actions: accepted"}})
def volume_action(request: Request, ctx: deps.Context, state: deps.State, volume_id: str,
                  body: VolumeAction):
    volume_id = volume_id_of(volume_id)
    volumes = state.client.volumes
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
    else:
        if not ctx.is_admin:
            raise errors.Forbidden(action="os-unmanage for a non-admin caller (role %r "
                                          "needed)" % deps.ADMIN_ROLE)
        volumes.unmanage(ctx, volume_id)
    return Response(status_code=202)
