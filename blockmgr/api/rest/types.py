"""``/types``: volume types, their extra specs and the access list of private types.

Cinder's shapes: ``{"volume_type": {"id", "name", "description", "is_public",
"os-volume-type-access:is_public", "extra_specs", "qos_specs_id"}}``, ``{"volume_types":
[...]}``, ``{"extra_specs": {...}}``, ``{"volume_type_access": [{"volume_type_id",
"project_id"}]}``. Creating, changing and deleting types, extra specs and access are for
admins (``403``); anyone lists and shows the types its project may use. Every rule is the
client library's (:class:`blockmgr.api.volume_types.VolumeTypeService`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Body as BodyParam
from fastapi import Request
from fastapi import Response
from pydantic import Field
from pydantic import StrictStr
from pydantic import model_validator

from blockmgr import exception
from blockmgr.api.rest import deps
from blockmgr.api.rest import fields

router = APIRouter(tags=["volume types"])

IS_PUBLIC = "os-volume-type-access:is_public"
#: An extra spec value: a string of at most 255 characters.
SpecValue = Annotated[StrictStr, Field(max_length=255)]
Specs = Annotated[dict[str, SpecValue], Field(max_length=256)]


class TypeCreate(fields.Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    description: fields.Text | None = None
    is_public: fields.Flag | None = None
    access_is_public: fields.Flag | None = Field(None, alias=IS_PUBLIC)
    extra_specs: Specs | None = None


class TypeCreateBody(fields.Body):
    volume_type: TypeCreate


class TypeUpdate(fields.Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None
    description: fields.Text | None = None
    is_public: fields.Flag | None = None
    access_is_public: fields.Flag | None = Field(None, alias=IS_PUBLIC)


class TypeUpdateBody(fields.Body):
    volume_type: TypeUpdate


class ExtraSpecsBody(fields.Body):
    extra_specs: Specs


class ProjectRef(fields.Body):
    project: Annotated[StrictStr, Field(min_length=1, max_length=255)]


class TypeAction(fields.Body):
    """Exactly one of ``addProjectAccess`` / ``removeProjectAccess``."""

    addProjectAccess: ProjectRef | None = None
    removeProjectAccess: ProjectRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("addProjectAccess", "removeProjectAccess")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one action: addProjectAccess or "
                             "removeProjectAccess")
        return self


def _is_public(spec) -> bool | None:
    plain, scoped = spec.is_public, spec.access_is_public
    if plain is not None and scoped is not None and plain != scoped:
        raise exception.InvalidInput(reason="is_public and %s disagree; send one of them"
                                            % IS_PUBLIC)
    return plain if plain is not None else scoped


def type_view(ctx, row: dict) -> dict:
    view = {"id": row["id"], "name": row["name"], "description": row["description"],
            "is_public": row["is_public"], IS_PUBLIC: row["is_public"],
            "extra_specs": row["extra_specs"]}
    if ctx.is_admin:
        view["qos_specs_id"] = None   # blockmgr has no QoS specs
    return view


def _parse_is_public(value: str | None) -> bool | None:
    """Cinder's reading of ``is_public``: absent is true, ``none`` is every type."""
    if value is None:
        return True
    if value.strip().lower() == "none":
        return None
    return fields.as_bool(value, "is_public")


@router.get("/types", summary="List volume types")
def list_types(request: Request, ctx: deps.Context, state: deps.State):
    """The public types and the private ones the project may use, by name. An admin may
    send ``is_public=false`` (private types only) or ``is_public=none`` (every type);
    ``name`` keeps the type of that name (how python-cinderclient looks a type up)."""
    unknown = sorted(set(request.query_params.keys()) - {"is_public", "name"})
    if unknown:
        raise exception.InvalidInput(reason="cannot filter volume types by %s; the filters "
                                            "are is_public and name" % ", ".join(unknown))
    is_public = _parse_is_public(request.query_params.get("is_public"))
    rows = state.client.volume_types.list_types(ctx, is_public=is_public)
    name = request.query_params.get("name")
    if name is not None:
        rows = [row for row in rows if row["name"] == name]
    return {"volume_types": [type_view(ctx, row) for row in rows]}


@router.get("/types/default", summary="Show the default volume type")
def show_default_type(ctx: deps.Context, state: deps.State):
    return {"volume_type": type_view(ctx, state.client.volume_types.default_type(ctx))}


@router.get("/types/{type_id}", summary="Show a volume type (by id or name)")
def show_type(ctx: deps.Context, state: deps.State, type_id: str):
    return {"volume_type": type_view(ctx, state.client.volume_types.get_type(ctx, type_id))}


@router.post("/types", summary="Create a volume type (admin)")
def create_type(ctx: deps.AdminContext, state: deps.State, body: TypeCreateBody):
    spec = body.volume_type
    is_public = _is_public(spec)
    row = state.client.volume_types.create_type(
        ctx, spec.name, description=spec.description,
        is_public=True if is_public is None else is_public, extra_specs=spec.extra_specs)
    return {"volume_type": type_view(ctx, row)}


@router.put("/types/{type_id}", summary="Update a volume type (admin)")
def update_type(ctx: deps.AdminContext, state: deps.State, type_id: str,
                body: TypeUpdateBody):
    spec = body.volume_type
    row = state.client.volume_types.update_type(ctx, type_id, name=spec.name,
                                                description=spec.description,
                                                is_public=_is_public(spec))
    return {"volume_type": type_view(ctx, row)}


@router.delete("/types/{type_id}", status_code=202, response_class=Response,
               summary="Delete a volume type (admin)")
def delete_type(ctx: deps.AdminContext, state: deps.State, type_id: str):
    """``400`` for the default type and for a type a volume or snapshot uses."""
    state.client.volume_types.delete_type(ctx, type_id)
    return Response(status_code=202)


# --- extra specs ------------------------------------------------------------------------

@router.get("/types/{type_id}/extra_specs", summary="List a volume type's extra specs")
def list_extra_specs(ctx: deps.Context, state: deps.State, type_id: str):
    return {"extra_specs": state.client.volume_types.get_extra_specs(ctx, type_id)}


@router.post("/types/{type_id}/extra_specs", summary="Set extra specs (admin)")
def set_extra_specs(ctx: deps.AdminContext, state: deps.State, type_id: str,
                    body: ExtraSpecsBody):
    """Adds or changes the given keys; the others stay."""
    return {"extra_specs": state.client.volume_types.set_extra_specs(ctx, type_id,
                                                                     body.extra_specs)}


@router.get("/types/{type_id}/extra_specs/{key}", summary="Show one extra spec")
def show_extra_spec(ctx: deps.Context, state: deps.State, type_id: str, key: str):
    return {key: state.client.volume_types.get_extra_spec(ctx, type_id, key)}


@router.put("/types/{type_id}/extra_specs/{key}", summary="Set one extra spec (admin)")
def update_extra_spec(ctx: deps.AdminContext, state: deps.State, type_id: str, key: str,
                      body: Annotated[dict[str, Any], BodyParam()]):
    """The body is ``{key: value}`` with the key of the URL and nothing else."""
    if set(body) != {key}:
        raise exception.InvalidInput(reason="the body must be {%r: value}, the key of the "
                                            "URL and nothing else" % key[:64])
    if not isinstance(body[key], str) or len(body[key]) > 255:
        raise exception.InvalidInput(reason="extra spec %s must be a string of at most 255 "
                                            "characters" % key[:64])
    found = fields.control_character(body[key])
    if found:
        raise exception.InvalidInput(reason="extra spec %s contains a %s" % (key[:64], found))
    return state.client.volume_types.set_extra_specs(ctx, type_id, {key: body[key]})


@router.delete("/types/{type_id}/extra_specs/{key}", status_code=202,
               response_class=Response, summary="Delete one extra spec (admin)")
def delete_extra_spec(ctx: deps.AdminContext, state: deps.State, type_id: str, key: str):
    state.client.volume_types.delete_extra_spec(ctx, type_id, key)
    return Response(status_code=202)


# --- access ---------------------------------------------------------------------------

@router.get("/types/{type_id}/os-volume-type-access",
            summary="List the projects with access to a private type (admin)")
def list_access(ctx: deps.AdminContext, state: deps.State, type_id: str):
    return {"volume_type_access": state.client.volume_types.list_access(ctx, type_id)}


@router.post("/types/{type_id}/action", status_code=202, response_class=Response,
             summary="Add or remove a project's access to a private type (admin)")
def type_action(ctx: deps.AdminContext, state: deps.State, type_id: str, body: TypeAction):
    if body.addProjectAccess is not None:
        state.client.volume_types.add_access(ctx, type_id, body.addProjectAccess.project)
    else:
        state.client.volume_types.remove_access(ctx, type_id,
                                                body.removeProjectAccess.project)
    return Response(status_code=202)

