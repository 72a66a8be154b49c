"""What every client-library service shares: its collaborators, scoping, input checks, casts.

Rules every public method follows (``docs/client-library.md``):

* **Validate first, write nothing on bad input.** Every check that can fail on the caller's
  input runs before or inside the one transaction that writes; an error rolls it back whole.
* **Scope by project.** A non-admin context sees only its project's rows; another project's
  id is reported as *not found* (never "forbidden", so ids do not leak). Admins see all.
* **Quota in the same transaction as the row** (``QuotaEngine.consume``): a row and its usage
  commit together or not at all, so nothing can leak between a reserve and a commit.
* **The request is a row.** The accepting transaction also records the request
  (:mod:`blockmgr.ledger`); the cast after the commit only rings its target. A failed cast
  loses nothing: the target's next sweep finds the request pending and runs it.
"""

from __future__ import annotations

import logging
import re
from typing import Callable

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import rpc
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.flows import faults

LOG = logging.getLogger(__name__)

_HOST_RE = re.compile(r"^[^@#\s]+@[^@#\s]+(#[^@#\s]+)?$")
MAX_NAME = 255
#: The target of a request the scheduler places first.
SCHEDULER = db_requests.SCHEDULER


class ServiceBase:
    """Collaborators of a client-library service.

    :param conf: a config with the ``[quota]`` and ``[DEFAULT]`` groups registered.
    :param db: :class:`blockmgr.db.session.Database`.
    :param quota: :class:`blockmgr.quota.QuotaEngine` on the same database.
    :param scheduler_rpcapi: :class:`blockmgr.scheduler.rpcapi.SchedulerAPI` (or a double).
    :param volume_rpcapi: :class:`blockmgr.volume.rpcapi.VolumeAPI` (or a double).
    """

    def __init__(self, conf, db, quota, *, scheduler_rpcapi, volume_rpcapi):
        self.conf = conf
        self.db = db
        self.quota = quota
        self.scheduler_rpcapi = scheduler_rpcapi
        self.volume_rpcapi = volume_rpcapi

    # --- scoping --------------------------------------------------------------------------

    def _get(self, session, model, resource_id, ctx: bm_context.RequestContext, *,
             for_update: bool = False):
        """The live row, or the model's typed NotFound (also for another project's row)."""
        check_id(resource_id, model.__tablename__[:-1])
        return repository.get(session, model, resource_id,
                              project_id=None if ctx.is_admin else ctx.project_id,
                              for_update=for_update)

    def _write(self, work: Callable):
        """Run ``work(session)`` in one writer transaction, retried as a whole on a
        deadlock or a lost database connection."""
        return self.quota.run_in_transaction(work)

    # --- requests -----------------------------------------------------------------------

    def _request(self, session, ctx, kind: str, resource_id: str, target: str, action: str,
                 **arguments) -> dict:
        """Record the request an accepting transaction accepts (:mod:`blockmgr.ledger`), in
        that transaction; returns the doorbell :meth:`_ring` sends after the commit.
        ``target``: :data:`SCHEDULER` or the resource's ``host@backend[#pool]``."""
        host = target
        if target != SCHEDULER:
            target = rpc.backend_of(volume_backend_host(target))
        request_id = db_requests.add(session, kind=kind, resource_id=resource_id,
                                     action=action, arguments=arguments,
                                     context=ctx.to_dict(), target=target)
        return {"id": request_id, "target": target, "host": host, "action": action,
                "arguments": arguments}

    def _ring(self, ctx, bell: dict) -> None:
        """Cast the doorbell of a committed request. A cast that fails loses nothing: the
        request is in the database, pending, and the next sweep of its target runs it."""
        faults.crash_point("ledger.recorded")
        try:
            if bell["target"] == SCHEDULER:
                self.scheduler_rpcapi.ring(ctx, bell["action"], bell["arguments"], bell["id"])
            else:
                self.volume_rpcapi.ring(ctx, bell["host"], bell["action"],
                                        bell["arguments"], bell["id"])
        except Exception as exc:
            LOG.warning("Could not send %s of request %s to %s (%s: %s); it stays pending "
                        "and the next sweep of %s runs it", bell["action"], bell["id"],
                        bell["target"], type(exc).__name__, exc, bell["target"])


# --- input checks ---------------------------------------------------------------------------

def check_context(ctx) -> bm_context.RequestContext:
    if not isinstance(ctx, bm_context.RequestContext):
        raise exception.InvalidInput(reason="a RequestContext is required, not %s"
                                     % type(ctx).__name__)
    if not ctx.is_admin and not ctx.project_id:
        raise exception.InvalidInput(reason="a non-admin context must name its project")
    return ctx


def owning_project(ctx: bm_context.RequestContext) -> str:
    """The project new resources belong to: the context's (admins too)."""
    if not ctx.project_id:
        raise exception.InvalidInput(reason="the context names no project to create for")
    return ctx.project_id


def check_id(value, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 36:
        raise exception.InvalidInput(reason="%s id must be a non-empty string of at most 36 "
                                            "characters, not %r" % (what, value))
    return value


def check_size(value, what: str = "size", *, minimum: int = 1) -> int:
    """An integer number of GiB >= ``minimum`` (bool, float, str and None refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise exception.InvalidInput(reason="%s must be an integer number of GiB, not %r"
                                            % (what, value))
    if value < minimum:
        raise exception.InvalidInput(reason="%s must be at least %d GiB, not %d"
                                            % (what, minimum, value))
    if value > bm_quota.MAX_QUOTA_VALUE:
        raise exception.InvalidInput(reason="%s %d GiB is beyond the largest supported %d"
                                            % (what, value, bm_quota.MAX_QUOTA_VALUE))
    return value


def check_text(value, what: str) -> str | None:
    """A name, description or zone: a string of at most :data:`MAX_NAME` characters without
    control characters (no database stores NUL; tab and line breaks are allowed)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise exception.InvalidInput(reason="%s must be a string of at most %d characters"
                                            % (what, MAX_NAME))
    from blockmgr.api import listing

    match = listing.CONTROL_TEXT_RE.search(value)
    if match:
        raise exception.InvalidInput(reason="%s contains the control character U+%04X; "
                                            "remove it" % (what, ord(match.group())))
    return value


def check_host(value) -> str:
    if not isinstance(value, str) or not _HOST_RE.match(value):
        raise exception.InvalidInput(reason="host must look like host@backend or "
                                            "host@backend#pool, not %r" % (value,))
    return value


def check_ref(ref) -> dict:
    """A manage reference: a dict with a non-empty ``source-name`` or ``source-id``.

    Its values are names of backend objects: no control characters; a ``source-name``
    names one object of the backend, never a path (no ``/``, not starting with ``.``).
    """
    if not isinstance(ref, dict) or not any(
            isinstance(ref.get(k), str) and ref.get(k) for k in ("source-name", "source-id")):
        raise exception.ManageExistingInvalidReference(
            existing_ref=ref, reason="a reference needs a 'source-name' or 'source-id' string")
    from blockmgr.api import listing

    for key, value in ref.items():
        match = listing.CONTROL_ID_RE.search("%s%s" % (key, value))
        if match:
            raise exception.ManageExistingInvalidReference(
                existing_ref={k: repr(v) for k, v in ref.items()},
                reason="%s contains the control character U+%04X"
                       % (key, ord(match.group())))
    name = ref.get("source-name")
    if isinstance(name, str) and ("/" in name or name.startswith(".")):
        raise exception.ManageExistingInvalidReference(
            existing_ref=ref, reason="source-name must name one object of the backend, "
                                     "not a path: no '/' and no leading '.'")
    return dict(ref)


def check_volume_type(volume_type) -> dict | None:
    """``{'id'?, 'name'?, 'extra_specs'?: {str: str}}`` or None."""
    if volume_type is None:
        return None
    if not isinstance(volume_type, dict):
        raise exception.InvalidInput(reason="volume_type must be a dict, not %r"
                                            % (volume_type,))
    specs = volume_type.get("extra_specs") or {}
    if not isinstance(specs, dict) or not all(isinstance(k, str) for k in specs):
        raise exception.InvalidInput(reason="volume_type extra_specs must map strings")
    type_id = volume_type.get("id")
    if type_id is not None:
        check_id(type_id, "volume type")
    return {"id": type_id, "name": volume_type.get("name"),
            "extra_specs": {k: str(v) for k, v in specs.items()}}


def snapshot_gigabytes(conf, volume_size: int) -> dict:
    """The gigabytes delta a snapshot of ``volume_size`` GiB counts for."""
    return {} if conf.quota.no_snapshot_gb_quota else {"gigabytes": volume_size}


def row_dict(row) -> dict:
    """A JSON-friendly copy of a row's columns (what the library returns)."""
    out = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        out[column.key] = value
    return out


def volume_backend_host(host: str) -> str:
    if not isinstance(host, str) or "@" not in host:
        raise exception.InvalidInput(reason="%r is not a host@backend[#pool]" % (host,))
    return host


def volume_backend(volume: models.Volume) -> str:
    if not volume.host:
        raise exception.InvalidVolume(reason="volume %s has not been placed on a backend yet"
                                             % volume.id)
    return volume.host
