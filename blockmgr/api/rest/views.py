"""Cinder-shaped JSON views of the client library's volume and snapshot rows.

Clients (python-cinderclient, openstacksdk, gophercloud) read these keys, so names and
value types follow Cinder's v3 API: ``bootable`` and ``encrypted``-style flags as Cinder
sends them (``bootable`` is the string ``"true"``/``"false"``), admin-only attributes
(``os-vol-host-attr:host``) only for an admin, microversioned keys (``group_id`` from 3.13,
``group_snapshot_id`` from 3.14, and the later ones named by the ``*_VERSION`` constants)
only when asked for. Fields blockmgr does not have are sent
with Cinder's neutral value (no attachments, no metadata, replication ``disabled``).

One blockmgr addition: ``status_reason`` says why a resource is in an error status (Cinder
only logs it), so that ``--wait`` style clients can show the reason.
"""

from __future__ import annotations

from fastapi import Request

GROUP_ID_VERSION = (3, 13)
GROUP_SNAPSHOT_ID_VERSION = (3, 14)
#: Snapshots: ``provider_id`` for admins.
SNAPSHOT_PROVIDER_ID_VERSION = (3, 21)
#: Snapshots: ``user_id``.
SNAPSHOT_USER_ID_VERSION = (3, 41)
#: Volumes: ``shared_targets`` and ``service_uuid``.
SHARED_TARGETS_VERSION = (3, 48)
#: Volumes: ``cluster_name`` for admins.
CLUSTER_NAME_VERSION = (3, 61)
#: Volumes: ``volume_type_id``.
VOLUME_TYPE_ID_VERSION = (3, 63)
#: Volumes: ``encryption_key_id``.
ENCRYPTION_KEY_ID_VERSION = (3, 64)
#: Volumes and snapshots: ``consumes_quota``.
CONSUMES_QUOTA_VERSION = (3, 65)


def _base_url(request: Request) -> str:
    endpoint = request.app.state.rest.conf.api.public_endpoint
    return (endpoint or str(request.base_url)).rstrip("/")


def links(request: Request, project_id: str, collection: str, resource_id: str) -> list:
    """Cinder's ``self`` (versioned) and ``bookmark`` (unversioned) links."""
    base = _base_url(request)
    return [{"rel": "self",
             "href": "%s/v3/%s/%s/%s" % (base, project_id, collection, resource_id)},
            {"rel": "bookmark",
             "href": "%s/%s/%s/%s" % (base, project_id, collection, resource_id)}]


def _version(request: Request) -> tuple[int, int]:
    return getattr(request.state, "api_version", (3, 0))


def _service_uuids(request: Request) -> dict[str, str]:
    """``host@backend`` -> uuid of the volume service serving it, read once per request."""
    cached = getattr(request.state, "service_uuids", None)
    if cached is None:
        import sqlalchemy as sa

        from blockmgr import services
        from blockmgr.db import models

        with request.app.state.rest.db.reader() as session:
            rows = session.execute(sa.select(models.Service.host, models.Service.uuid).where(
                models.Service.deleted.is_(False),
                models.Service.binary == services.VOLUME_BINARY)).all()
        cached = {host: uuid for host, uuid in rows}
        request.state.service_uuids = cached
    return cached


def _type_names(request: Request) -> dict[str, str]:
    """Volume type id -> name (deleted types included), read once per request."""
    cached = getattr(request.state, "volume_type_names", None)
    if cached is None:
        import sqlalchemy as sa

        from blockmgr.db import models

        with request.app.state.rest.db.reader() as session:
            cached = dict(session.execute(sa.select(models.VolumeType.id,
                                                    models.VolumeType.name)).all())
        request.state.volume_type_names = cached
    return cached


def _timestamp(value):
    """``2026-12-03T11:00:00.000000`` (naive UTC, as Cinder sends it)."""
    if value and "." not in value:
        return value + ".000000"
    return value


def volume_summary(request: Request, row: dict) -> dict:
    return {"id": row["id"], "name": row["display_name"],
            "links": links(request, row["project_id"], "volumes", row["id"])}


def volume_detail(request: Request, ctx, row: dict) -> dict:
    view = {
        "id": row["id"],
        "name": row["display_name"],
        "description": row["display_description"],
        "status": row["status"],
        "size": row["size"],
        "availability_zone": row["availability_zone"],
        "created_at": _timestamp(row["created_at"]),
        "updated_at": _timestamp(row["updated_at"]),
        "volume_type": (_type_names(request).get(row["volume_type_id"])
                        if row.get("volume_type_id") else None),
        "snapshot_id": row["snapshot_id"],
        "source_volid": row["source_volid"],
        "metadata": {},
        "bootable": "true" if row["bootable"] else "false",
        "encrypted": False,
        "multiattach": bool(row["multiattach"]),
        "attachments": _attachments(request, ctx, [row["id"]]).get(row["id"], []),
        "user_id": row["user_id"],
        "consistencygroup_id": None,
        "replication_status": "disabled",
        "migration_status": None,
        "os-vol-tenant-attr:tenant_id": row["project_id"],
        "status_reason": row.get("status_reason"),
        "links": links(request, row["project_id"], "volumes", row["id"]),
    }
    if ctx.is_admin:
        view["os-vol-host-attr:host"] = row["host"]
        view["os-vol-mig-status-attr:migstat"] = None
        view["os-vol-mig-status-attr:name_id"] = None
    version = _version(request)
    if version >= GROUP_ID_VERSION:
        view["group_id"] = row["group_id"]
    if version >= SHARED_TARGETS_VERSION:
        # No blockmgr driver exports several volumes through one shared target.
        view["shared_targets"] = False
        host = (row.get("host") or "").partition("#")[0]
        view["service_uuid"] = _service_uuids(request).get(host) if host else None
    if version >= CLUSTER_NAME_VERSION and ctx.is_admin:
        view["cluster_name"] = row.get("cluster_name")
    if version >= VOLUME_TYPE_ID_VERSION:
        view["volume_type_id"] = row.get("volume_type_id")
    if version >= ENCRYPTION_KEY_ID_VERSION:
        view["encryption_key_id"] = None
    if version >= CONSUMES_QUOTA_VERSION:
        view["consumes_quota"] = bool(row.get("use_quota", True))
    return view


def _attachments(request: Request, ctx, volume_ids: list[str]) -> dict[str, list[dict]]:
    """The ``attachments`` of each volume's view; a page reads them in one query (cached
    on the request by :func:`volume_list`)."""
    cached = getattr(request.state, "volume_attachments", None)
    if cached is not None and all(v in cached for v in volume_ids):
        return cached
    return request.app.state.rest.client.attachments.volume_view_attachments(ctx, volume_ids)


def volume_list(request: Request, ctx, rows: list[dict], detail: bool) -> list[dict]:
    if detail:
        request.state.volume_attachments = _attachments(request, ctx,
                                                        [row["id"] for row in rows])
        return [volume_detail(request, ctx, row) for row in rows]
    return [volume_summary(request, row) for row in rows]


def snapshot_view(request: Request, ctx, row: dict, detail: bool = True) -> dict:
    """A snapshot; ``detail`` adds the extended attributes (progress, project)."""
    view = {
        "id": row["id"],
        "name": row["display_name"],
        "description": row["display_description"],
        "status": row["status"],
        "size": row["volume_size"],
        "volume_id": row["volume_id"],
        "created_at": _timestamp(row["created_at"]),
        "updated_at": _timestamp(row["updated_at"]),
        "metadata": {},
        "status_reason": row.get("status_reason"),
        "links": links(request, row["project_id"], "snapshots", row["id"]),
    }
    if detail:
        view["os-extended-snapshot-attributes:progress"] = row.get("progress") or "0%"
        view["os-extended-snapshot-attributes:project_id"] = row["project_id"]
    version = _version(request)
    if version >= GROUP_SNAPSHOT_ID_VERSION:
        view["group_snapshot_id"] = row["group_snapshot_id"]
    if version >= SNAPSHOT_PROVIDER_ID_VERSION and detail and ctx.is_admin:
        view["provider_id"] = row.get("provider_id")
    if version >= SNAPSHOT_USER_ID_VERSION:
        view["user_id"] = row.get("user_id")
    if version >= CONSUMES_QUOTA_VERSION:
        view["consumes_quota"] = bool(row.get("use_quota", True))
    return view


def manageable_entry(entry: dict, detail: bool, snapshots: bool = False) -> dict:
    """One ``manageable-volumes`` / ``manageable-snapshots`` entry."""
    view = {"reference": entry["reference"], "size": entry["size"],
            "safe_to_manage": entry["safe_to_manage"]}
    if snapshots:
        view["source_reference"] = entry.get("source_reference")
    if detail:
        view.update(reason_not_safe=entry.get("reason_not_safe"),
                    cinder_id=entry.get("cinder_id"), extra_info=entry.get("extra_info"))
    return view
