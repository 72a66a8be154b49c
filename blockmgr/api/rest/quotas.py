"""``/os-quota-sets/{target_project}``: a project's quota limits (and usages).

Shapes are Cinder's: ``{"quota_set": {"id": project, "volumes": 10, ...}}``; with
``?usage=true`` each resource is ``{"limit", "in_use", "reserved"}``. Every existing volume
type adds ``volumes_<type>``, ``snapshots_<type>`` and ``gigabytes_<type>`` (-1 unless set),
in the views and as update keys. Reading another project's quota and every change are for
admins (``403`` otherwise); a non-admin reads its own project's. Rules and the defaults:
:class:`blockmgr.api.quotas.QuotaSetService`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path
from fastapi import Response
from pydantic import ConfigDict
from pydantic import Field
from pydantic import StrictInt
from pydantic import TypeAdapter
from pydantic import ValidationError
from pydantic import model_validator

from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr.api.rest import deps
from blockmgr.api.rest import fields
from blockmgr.quota import per_type

router = APIRouter(tags=["quotas"])

TargetProject = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:@-]{1,255}$",
                                    description="Project whose quota is read or changed")]
Limit = Annotated[StrictInt, Field(ge=-1, le=bm_quota.MAX_QUOTA_VALUE,
                                   description="-1 for unlimited")]


class QuotaSetUpdate(fields.Body):
    """The limits to change; absent ones are left as they are. ``tenant_id`` / ``id`` (sent
    by python-cinderclient) must name the project of the URL if given. Besides the named
    fields, ``volumes_<type>``, ``snapshots_<type>`` and ``gigabytes_<type>`` are accepted
    (each a :data:`Limit`); whether the type exists is checked by the service (``400``
    when it does not)."""

    model_config = ConfigDict(extra="allow")

    volumes: Limit | None = None
    snapshots: Limit | None = None
    gigabytes: Limit | None = None
    groups: Limit | None = None
    per_volume_gigabytes: Limit | None = None
    tenant_id: str | None = Field(None, max_length=255)
    id: str | None = Field(None, max_length=255)

    @model_validator(mode="after")
    def _per_type_limits(self):
        """Extra fields must be per-type limits: any other name is refused as the base
        model refuses unknown fields; null means absent, as for the named fields."""
        for name, value in (self.model_extra or {}).items():
            if not per_type.is_per_type(name):
                raise ValueError("unknown field %r: the quota names are %s, and "
                                 "volumes_<type>, snapshots_<type>, gigabytes_<type>"
                                 % (name[:64], ", ".join(_NAMED)))
            if value is None:
                continue
            try:
                self.model_extra[name] = _LIMIT.validate_python(value)
            except ValidationError:
                raise ValueError("%s must be an integer from -1 (unlimited) to %d, not %r"
                                 % (name[:64], bm_quota.MAX_QUOTA_VALUE, value)) from None
        return self


_NAMED = ("volumes", "snapshots", "gigabytes", "groups", "per_volume_gigabytes")
_LIMIT = TypeAdapter(Limit)


class QuotaSetUpdateBody(fields.Body):
    quota_set: QuotaSetUpdate


def _quota_set(project_id: str | None, values: dict) -> dict:
    body = {"id": project_id} if project_id is not None else {}
    body.update(values)
    return {"quota_set": body}


@router.get("/os-quota-sets/{target_project}/defaults", summary="Show default quotas")
def show_defaults(ctx: deps.Context, state: deps.State, target_project: TargetProject):
    """The ``[quota]`` defaults, what a project without overrides gets."""
    return _quota_set(target_project, state.client.quotas.defaults(ctx, target_project))


@router.get("/os-quota-sets/{target_project}", summary="Show a project's quotas")
def show_quotas(ctx: deps.Context, state: deps.State, target_project: TargetProject,
                usage: bool = False):
    """Limits of ``target_project``; ``usage=true`` adds ``in_use`` and ``reserved``."""
    return _quota_set(target_project,
                      state.client.quotas.show(ctx, target_project, usage=usage))


@router.put("/os-quota-sets/{target_project}", summary="Update a project's quotas (admin)")
def update_quotas(ctx: deps.AdminContext, state: deps.State, target_project: TargetProject,
                  body: QuotaSetUpdateBody, skip_validation: bool = True):
    """Set limits; a limit below the current usage is refused only with
    ``skip_validation=false`` (by default it is accepted and blocks new usage until the
    project is below it again)."""
    spec = body.quota_set
    for key in ("tenant_id", "id"):
        named = getattr(spec, key)
        if named is not None and named != target_project:
            raise exception.InvalidInput(reason="quota_set.%s %r does not match the project "
                                                "%r of the URL" % (key, named, target_project))
    values = spec.model_dump(exclude_none=True, exclude={"tenant_id", "id"})
    if not skip_validation:
        usages = state.client.quotas.show(ctx, target_project, usage=True)
        for resource, limit in values.items():
            if resource not in usages:
                continue   # refused as unknown by the update below
            used = usages[resource]["in_use"] + usages[resource]["reserved"]
            if limit != -1 and limit < used:
                raise exception.InvalidQuotaValue(
                    resource=resource, reason="%d is below the %d in use or reserved"
                                              % (limit, used))
    limits = state.client.quotas.update(ctx, target_project, values)
    return _quota_set(None, limits)


@router.delete("/os-quota-sets/{target_project}", response_class=Response,
               summary="Reset a project's quotas to the defaults (admin)")
def reset_quotas(ctx: deps.AdminContext, state: deps.State, target_project: TargetProject):
    state.client.quotas.reset(ctx, target_project)
    return Response(status_code=200)
