"""What every route depends on: the collaborators, the caller's context, paging.

**Who is calling.** Both auth strategies end in the same headers, read here:
``X-User-Id``, ``X-Project-Id`` and ``X-Roles`` (comma separated). With ``keystone``,
keystonemiddleware validated the token and set them (``X-Identity-Status: Confirmed``); a
caller is admin with the ``admin`` role, and a non-admin whose project differs from the
URL's gets ``403``. With ``noauth`` the caller states them itself (python-cinderclient's
noauth plugin sends an ``X-Auth-Token`` of ``user:project`` instead, used when the headers
are absent) and, as in Cinder's noauth, is an admin -- unless it states its roles with
``X-Roles`` and ``admin`` is not among them, which lets a trusted front end or a test act
as an ordinary member of a project.

**Which project.** ``/v3/{project_id}/...`` names it in the URL; the same routes without
it (``/v3/...``, microversion 3.67) act on the caller's own project.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any

from fastapi import Depends
from fastapi import Path
from fastapi import Query
from fastapi import Request

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.api import listing
from blockmgr.api.rest import errors

ADMIN_ROLE = "admin"
REQUEST_ID_HEADER = "X-OpenStack-Request-Id"
_PROJECT_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,255}$")
#: Largest ``limit`` / ``offset`` (a signed 64-bit integer, which every database takes).
MAX_PAGING = 2 ** 63 - 1


@dataclasses.dataclass
class RestState:
    """The collaborators of the REST application (one per process).

    :param client: :class:`blockmgr.api.Client` (volumes, snapshots, groups services).
    :param db: :class:`blockmgr.db.session.Database` for reads the client does not offer.
    :param quota: :class:`blockmgr.quota.QuotaEngine` on the same database.
    """
    conf: Any
    client: Any
    db: Any
    quota: Any


def get_state(request: Request) -> RestState:
    return request.app.state.rest


State = Annotated[RestState, Depends(get_state)]


def _caller(request: Request, url_project: str | None
            ) -> tuple[str, str | None, list[str] | None]:
    """User, project and roles the caller states (roles None: it stated none)."""
    headers = request.headers
    user_id = headers.get("x-user-id")
    project_id = headers.get("x-project-id") or headers.get("x-tenant-id")
    token = headers.get("x-auth-token")
    state: RestState = request.app.state.rest
    if state.conf.api.auth_strategy == "keystone":
        if headers.get("x-identity-status", "").lower() != "confirmed":
            raise errors.NotAuthenticated(reason="no valid token was presented")
    elif token and ":" in token and not (user_id and project_id):
        token_user, _sep, token_project = token.partition(":")
        user_id = user_id or token_user
        project_id = project_id or token_project
    roles = None
    if "x-roles" in headers:
        roles = [r.strip().lower() for r in headers["x-roles"].split(",") if r.strip()]
    return user_id or "anonymous", project_id or url_project, roles


def url_project(project_id: Annotated[str, Path(description="Project (tenant) id")]) -> str:
    """Declares the ``{project_id}`` of ``/v3/{project_id}/...`` routes (mounted as a
    router dependency; :func:`request_context` reads it)."""
    return project_id


def request_context(request: Request) -> bm_context.RequestContext:
    """The caller's :class:`~blockmgr.context.RequestContext`: for ``/v3/{project_id}/...``
    the URL's project (a non-admin acting on another project's URL is refused), for the
    project-less ``/v3/...`` routes the caller's own project."""
    project_id = request.path_params.get("project_id")
    if project_id is not None and not _PROJECT_RE.match(project_id):
        raise exception.InvalidInput(reason="project id %r is not a valid project id"
                                            % project_id[:64])
    user_id, caller_project, roles = _caller(request, project_id)
    noauth = request.app.state.rest.conf.api.auth_strategy != "keystone"
    # Cinder's noauth makes every caller an admin; stated roles without admin opt out.
    is_admin = ADMIN_ROLE in roles if roles is not None else noauth
    if project_id is None:
        if not caller_project:
            raise exception.InvalidInput(
                reason="this URL names no project and the request states none: send "
                       "X-Project-Id (or a noauth token user:project), or use "
                       "/v3/{project_id}/...")
        if not _PROJECT_RE.match(caller_project):
            raise exception.InvalidInput(reason="project id %r is not a valid project id"
                                                % caller_project[:64])
        project_id = caller_project
    if caller_project != project_id and not is_admin:
        raise errors.Forbidden(action="project %s to act on project %s's resources"
                                      % (caller_project, project_id))
    ctx = bm_context.RequestContext(project_id=project_id, user_id=user_id,
                                    is_admin=is_admin)
    incoming = request.headers.get(REQUEST_ID_HEADER)
    if incoming and incoming.startswith("req-") and len(incoming) <= 64:
        ctx = ctx.replace(request_id=incoming)   # RequestContext is immutable
    request.state.request_id = ctx.request_id
    return ctx


Context = Annotated[bm_context.RequestContext, Depends(request_context)]


def admin_context(ctx: Context) -> bm_context.RequestContext:
    """The context of an admin caller; 403 for anyone else (service list, quota updates)."""
    if not ctx.is_admin:
        raise errors.Forbidden(action="this call for a non-admin caller (role %r needed)"
                                      % ADMIN_ROLE)
    return ctx


AdminContext = Annotated[bm_context.RequestContext, Depends(admin_context)]


@dataclasses.dataclass
class Paging:
    """``limit`` / ``marker`` / ``offset`` / ``sort`` of a list call, checked.

    ``sort`` is Cinder's ``key[:dir][,key[:dir]...]``; the older ``sort_key`` + ``sort_dir``
    pair is accepted too. ``limit`` is capped at ``[api] max_limit``.
    """
    limit: int
    marker: str | None
    offset: int
    sort_keys: list[str]
    sort_dirs: list[str]

    def check_sort_keys(self, allowed) -> None:
        bad = [k for k in self.sort_keys if k not in allowed]
        if bad:
            raise exception.InvalidInput(reason="cannot sort by %s; sort keys are: %s"
                                                % (", ".join(bad), ", ".join(sorted(allowed))))


def paging(state: State,
           limit: Annotated[int | None, Query(ge=0, le=MAX_PAGING)] = None,
           marker: Annotated[str | None, Query(max_length=255)] = None,
           offset: Annotated[int | None, Query(ge=0, le=MAX_PAGING)] = None,
           sort: Annotated[str | None, Query(max_length=255)] = None,
           sort_key: Annotated[str | None, Query(max_length=64)] = None,
           sort_dir: Annotated[str | None, Query(max_length=8)] = None) -> Paging:
    if sort and (sort_key or sort_dir):
        raise exception.InvalidInput(reason="give either sort or sort_key/sort_dir, not both")
    if marker is not None and listing.CONTROL_ID_RE.search(marker):
        raise exception.InvalidInput(reason="marker contains a control character; use the "
                                            "id of the last item of the previous page")
    keys, dirs = [], []
    if sort:
        for item in sort.split(","):
            key, _sep, direction = item.strip().partition(":")
            keys.append(key.strip())
            dirs.append((direction or "desc").strip().lower())
    elif sort_key or sort_dir:
        keys.append(sort_key or "created_at")
        dirs.append((sort_dir or "desc").lower())
    if any(d not in ("asc", "desc") for d in dirs):
        raise exception.InvalidInput(reason="sort directions must be asc or desc, not %s"
                                            % ", ".join(dirs))
    if any(not k for k in keys):
        raise exception.InvalidInput(reason="empty sort key in %r" % sort)
    max_limit = state.conf.api.max_limit
    return Paging(limit=max_limit if limit is None else min(limit, max_limit),
                  marker=marker, offset=offset or 0, sort_keys=keys, sort_dirs=dirs)


Page = Annotated[Paging, Depends(paging)]


def next_link(request: Request, state: RestState, items: list[dict], paging: Paging,
              collection: str) -> dict:
    """``{"<collection>_links": [{"rel": "next", "href": ...}]}`` when the page is full
    (there may be more), else ``{}``."""
    if not items or len(items) < paging.limit or paging.limit == 0:
        return {}
    url = request.url.include_query_params(marker=items[-1]["id"], limit=paging.limit)
    url = url.remove_query_params("offset")
    href = str(url)
    if state.conf.api.public_endpoint:
        href = state.conf.api.public_endpoint.rstrip("/") + url.path + (
            "?" + url.query if url.query else "")
    return {"%s_links" % collection: [{"rel": "next", "href": href}]}
