"""Who owns a reservation: a flow, or a request a worker has yet to serve.

A reservation's ``owner`` is a flow id, or -- for a request accepted by the API before any
flow exists -- a compact request owner (:func:`request_owner`). Liveness of flow owners is
asked of the caller (:class:`LivenessCache`); a request owner is live while its resource keeps
the status the request put it in.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from typing import Callable

from blockmgr.db import models

#: The package logs under one name, whichever part of it speaks.
LOG = logging.getLogger("blockmgr.quota")


def request_owner(kind: str, resource_id: str, status: str) -> str:
    """The owner of a reservation the API takes for a request a worker has yet to serve
    (an extend: the volume is ``extending``).

    Such a reservation has no flow yet. It lives while the resource stays in ``status``:
    the worker's flow takes it over (extend swaps it for a flow-owned one), and a request
    that is lost -- the worker died after taking the message, before its flow was saved --
    moves the resource on (recovery: ``error_extending``), which makes the reservation an
    orphan that recovery rolls back at once and any sweep would release.

    Owners are at most 36 characters (a flow id), so the request is written compactly: a
    four-letter prefix naming (kind, status) and the resource id's 32 hex digits.
    """
    try:
        prefix = REQUEST_PREFIXES[(kind, status)]
    except KeyError:
        raise ValueError("no request owner for a %s that is %s" % (kind, status)) from None
    return prefix + uuidlib.UUID(resource_id).hex


def parse_request_owner(owner: str | None) -> tuple[str, str, str] | None:
    """``(kind, resource_id, status)`` of a :func:`request_owner` string, else None (a flow
    id, or no owner)."""
    if not owner or len(owner) != 36 or owner[:4] not in REQUEST_KINDS:
        return None
    try:
        resource_id = str(uuidlib.UUID(hex=owner[4:]))
    except ValueError:
        return None
    kind, status = REQUEST_KINDS[owner[:4]]
    return kind, resource_id, status


REQUEST_MODELS = {"volume": models.Volume}
#: (kind, status) -> owner prefix of the requests that can own reservations.
REQUEST_PREFIXES = {("volume", "extending"): "vext"}
REQUEST_KINDS = {prefix: key for key, prefix in REQUEST_PREFIXES.items()}
#: (kind, status) pairs whose requests can own reservations (:func:`request_owner`).
REQUEST_OWNERS = frozenset(REQUEST_PREFIXES)


class LivenessCache:
    """Asks ``is_owner_live`` once per owner; an owner whose check raises counts as live."""

    def __init__(self, is_owner_live: Callable[[str], bool]):
        self._check = is_owner_live
        self._seen: dict[str, bool] = {}

    def __call__(self, owner: str) -> bool:
        if owner not in self._seen:
            try:
                self._seen[owner] = bool(self._check(owner))
            except Exception:  # the sweeper must never release what it cannot judge
                LOG.exception("Could not tell whether reservation owner %s is live; "
                              "keeping its reservations", owner)
                self._seen[owner] = True
        return self._seen[owner]
