"""SchedulerManager: the scheduler's RPC endpoints.

Each endpoint: read the request, pick (or check) a backend from the capacity reports
(:mod:`~blockmgr.scheduler.host_state`, :mod:`~blockmgr.scheduler.filters`,
:mod:`~blockmgr.scheduler.weighers`), write the chosen ``host`` on the row with a
compare-and-swap on its status (a row deleted or moved on meanwhile is left alone), cast the
request to that backend's volume worker. When nothing fits, the resource goes to its error
status (``error``; ``error_managing`` for an import; an extend goes back to its previous
status) with the reason in ``status_reason``, and a ``<kind>.<action>.error`` notification is
sent. Every endpoint is a cast target: errors are recorded on the resource, never raised to a
caller that is not waiting.

Requests come from the ledger (:mod:`blockmgr.ledger`): a message carrying a ``request_id``
runs once the scheduler claims that request, and a placed request is handed off to its
backend in the transaction that records the placement (:meth:`SchedulerManager._place_and_hand_off`),
so it is never in nobody's hands: either still the scheduler's (pending or claimed) or the
backend's. An error that ends the request here (nothing fits) settles it.

Reschedules: a volume worker whose create failed casts ``create_volume`` back with
``filter_properties['retry']`` = ``{num_attempts, backends, exc}``. Each scheduling attempt
increments ``num_attempts``; past ``[scheduler] scheduler_max_attempts`` the volume goes to
``error``. The backends already tried are filtered out. With a maximum of 1 no ``retry`` is
added, which tells the worker not to reschedule (Cinder's convention).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import oslo_messaging

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import ledger as bm_ledger
from blockmgr import rpc
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.scheduler import filters as bm_filters
from blockmgr.scheduler import host_state
from blockmgr.scheduler import liveness
from blockmgr.scheduler import weighers

LOG = logging.getLogger(__name__)

V, S, G = states.VolumeStatus, states.SnapshotStatus, states.GroupStatus

#: Service names whose capacity reports the scheduler keeps.
VOLUME_SERVICE = "volume"


class SchedulerManager:
    """Endpoints of one scheduler process.

    :param volume_rpcapi: a ``blockmgr.volume.rpcapi.VolumeAPI`` (or a double with its casts).
    :param quota: the quota engine (extend: rolls back the API's reservation on failure).
    :param notifier: ``info/error(context, event_type, payload)``.
    :param live: a :class:`~blockmgr.scheduler.liveness.LiveBackends`; default one on ``db``.
    """

    RPC_API_VERSION = "1.0"
    target = oslo_messaging.Target(version=RPC_API_VERSION)
    #: The scheduler's :class:`blockmgr.ledger.Ledger` (None: messages run as they come).
    ledger = None

    def __init__(self, conf, *, db, volume_rpcapi, quota, notifier,
                 live: liveness.LiveBackends | None = None,
                 backend_states: host_state.BackendStates | None = None):
        self.conf = conf
        self.db = db
        self.volume_rpcapi = volume_rpcapi
        self.quota = quota
        self.notifier = notifier
        self.live = live or liveness.LiveBackends(
            db, conf.service_down_time, missed=conf.scheduler.suspect_missed_heartbeats)
        self.states = backend_states or host_state.BackendStates()
        self._started = time.monotonic()
        self._ready = threading.Event()
        self._report_arrived = threading.Event()
        if conf.scheduler.startup_wait == 0:
            self._ready.set()

    # --- capacity reports -----------------------------------------------------------------

    def update_service_capabilities(self, context, service_name: str, host: str,
                                    capabilities: dict, timestamp=None) -> None:
        """Fanout target: keep ``host``'s (``host@backend``) latest capacity report."""
        if service_name != VOLUME_SERVICE or not isinstance(host, str) or not host:
            LOG.debug("Ignoring capabilities of service %r on %r", service_name, host)
            return
        if self.states.update(host, capabilities, timestamp):
            self._report_arrived.set()

    def serving(self) -> None:
        """The RPC server consumes from now on: ``startup_wait`` counts from here, not from
        construction (opening the flow logbooks of a loaded node can take longer than the
        wait itself, and the capacity reports can only arrive once the fanout queue is
        consumed)."""
        self._started = time.monotonic()

    def wait_until_ready(self) -> bool:
        """Block until every live volume service has reported, or ``[scheduler]
        startup_wait`` seconds after start; True if every live service had reported."""
        deadline = self._started + self.conf.scheduler.startup_wait
        while not self._ready.is_set():
            live = self.live.get(fresh=True)
            if live <= self.states.backends():
                self._ready.set()
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                LOG.warning("Placing without capacity reports from %s (no report within "
                            "startup_wait)", ", ".join(sorted(live - self.states.backends())))
                self._ready.set()
                return False
            self._report_arrived.clear()
            self._report_arrived.wait(min(remaining, 0.5))
        return True

    # --- volumes --------------------------------------------------------------------------

    @bm_ledger.served
    def create_volume(self, context, volume_id: str, request_spec: dict | None = None,
                      filter_properties: dict | None = None) -> None:
        """Place volume ``volume_id`` (``creating``) and cast its creation to the backend."""
        ctx = _ctx(context)
        spec = dict(request_spec or {}, volume_id=volume_id)
        props = dict(filter_properties or {})
        try:
            retry = self._count_attempt(props, volume_id)
            size = self._volume_size(spec, volume_id)
            self.wait_until_ready()
            request = self._request(spec, size, retry)
            chosen = self._place(request, "volume %s" % volume_id)
        except exception.NoValidBackend as exc:
            first = (props.get("retry") or {}).get("first_exc")
            if first:
                # First, so that a long list of rejections cannot truncate it away.
                exc = exception.NoValidBackend(reason="the first attempt failed on %s; then: %s"
                                               % (first, exc.kwargs.get("reason", exc.msg)))
            self._volume_failed(ctx, volume_id, V.ERROR, "create", exc, spec)
            return
        except exception.VolumeNotFound:
            LOG.info("Volume %s is gone; not scheduling it", volume_id)
            return
        thin = request.thin_on(chosen)
        if retry is not None:
            retry["backends"] = list(retry.get("backends") or []) + [chosen.backend]
        arguments = {"volume_id": volume_id, "request_spec": spec,
                     "filter_properties": props, "allow_reschedule": True}
        if not self._place_and_hand_off(ctx, models.Volume, volume_id, V.CREATING,
                                        chosen.host, "create_volume", arguments):
            self.states.charge(chosen.host, -size, thin)

    @bm_ledger.served
    def manage_existing(self, context, volume_id: str, ref: dict, host: str) -> None:
        """Route the import of volume ``volume_id`` (``managing``) to ``host`` if it is up;
        a host without ``#pool`` gets the backend's best pool."""
        ctx = _ctx(context)
        try:
            target = self._manage_target(host, "volume %s" % volume_id)
        except exception.NoValidBackend as exc:
            self._volume_failed(ctx, volume_id, V.ERROR_MANAGING, "manage_existing", exc,
                                {"host": host})
            return
        self._place_and_hand_off(ctx, models.Volume, volume_id, V.MANAGING, target,
                                 "manage_existing",
                                 {"volume_id": volume_id, "ref": dict(ref or {})})

    @bm_ledger.served
    def manage_existing_snapshot(self, context, snapshot_id: str, ref: dict,
                                 host: str) -> None:
        """Route the import of snapshot ``snapshot_id`` to its volume's backend if up."""
        ctx = _ctx(context)
        try:
            if not self.live.is_up(host or ""):
                raise exception.NoValidBackend(
                    reason="the volume service of %s is down or disabled" % host)
        except exception.NoValidBackend as exc:
            LOG.warning("Cannot manage snapshot %s on %s: %s", snapshot_id, host, exc)
            reason = _reason(exc)
            self._error_out(models.Snapshot, snapshot_id, S.ERROR, (S.CREATING,), reason)
            self.notifier.error(ctx, "snapshot.manage_existing_snapshot.error",
                                {"snapshot_id": snapshot_id, "host": host, "reason": reason})
            return
        self._hand_off(ctx, host, "manage_existing_snapshot",
                       {"snapshot_id": snapshot_id, "ref": dict(ref or {})})

    @bm_ledger.served
    def extend_volume(self, context, volume_id: str, new_size: int,
                      reservations: list[str] | None = None) -> None:
        """Check the volume's pool can hold ``new_size`` GiB, charge it, cast the extend.
        Otherwise roll the API's reservations back and restore the previous status."""
        ctx = _ctx(context)
        try:
            with self.db.reader() as session:
                volume = repository.get(session, models.Volume, volume_id)
                host, size = volume.host, volume.size
                previous = volume.previous_status or V.AVAILABLE
            delta = max(0, int(new_size) - size)
            request = bm_filters.PlacementRequest(
                size_gb=delta, resource_backend=host,
                live_backends=self._live_with(rpc.backend_of(host)))
            pool = self.states.pool(host or "")
            if pool is None:   # no report (yet): only liveness can be judged
                reason = bm_filters.service_up(
                    host_state.PoolState(backend=rpc.backend_of(host) or "", pool_name=""),
                    request)
            else:
                reason = next((r for r in (check(pool, request)
                                           for check in bm_filters.DEFAULT_FILTERS) if r), None)
            if reason is not None:
                raise exception.NoValidBackend(reason="cannot extend volume %s to %s GiB on "
                                               "%s: %s" % (volume_id, new_size, host, reason))
        except exception.VolumeNotFound:
            self.quota.rollback(reservations)
            return
        except exception.NoValidBackend as exc:
            self.quota.rollback(reservations)
            self._error_out(models.Volume, volume_id, previous, (V.EXTENDING,), exc.msg)
            self.notifier.error(ctx, "volume.resize.error",
                                {"volume_id": volume_id, "new_size": new_size,
                                 "reason": exc.msg})
            return
        if pool is not None:
            self.states.charge(pool.host, delta, request.thin_on(pool))
        self._hand_off(ctx, host, "extend_volume",
                       {"volume_id": volume_id, "new_size": new_size,
                        "reservations": list(reservations or [])})

    # --- groups ---------------------------------------------------------------------------

    @bm_ledger.served
    def create_group(self, context, group_id: str, request_spec: dict | None = None) -> None:
        """Place consistency group ``group_id`` on a backend that suits every volume type
        of the group (``request_spec['volume_types']``: dicts with ``extra_specs``)."""
        ctx = _ctx(context)
        spec = dict(request_spec or {})
        types = [t for t in spec.get("volume_types") or [] if isinstance(t, dict)] or [{}]
        try:
            self.wait_until_ready()
            candidates, rejected = self._group_candidates(spec, types, self.live.get())
            if not candidates:   # a backend may have come up within the cache's second
                candidates, rejected = self._group_candidates(spec, types,
                                                              self.live.get(fresh=True))
            if not candidates:
                raise exception.NoValidBackend(
                    reason="no backend suits every volume type of group %s%s"
                    % (group_id, _explain(rejected)))
            pools = [p for p in self.states.pools() if p.backend in candidates]
            best = weighers.order(pools, bm_filters.PlacementRequest(),
                                  self.conf.scheduler.capacity_weight_multiplier)[0]
        except exception.NoValidBackend as exc:
            self._error_out(models.Group, group_id, G.ERROR, (G.CREATING,), exc.msg)
            self.notifier.error(ctx, "group.create.error",
                                {"group_id": group_id, "reason": exc.msg})
            return
        self._place_and_hand_off(ctx, models.Group, group_id, G.CREATING, best.backend,
                                 "create_group", {"group_id": group_id})

    # --- placement ------------------------------------------------------------------------

    def _group_candidates(self, spec: dict, types: list, live: frozenset):
        """(backends that suit every volume type and are up, rejection reasons)."""
        candidates = None
        rejected: dict[str, str] = {}
        for volume_type in types:
            request = bm_filters.PlacementRequest(
                extra_specs=dict(volume_type.get("extra_specs") or {}),
                resource_backend=spec.get("resource_backend"), live_backends=live)
            passed, why = bm_filters.apply(self.states.pools(), request)
            rejected.update(why)
            backends = {p.backend for p in passed}
            candidates = backends if candidates is None else candidates & backends
        if candidates and candidates - self.live.suspects():
            candidates -= self.live.suspects()   # very likely dead: only as a last resort
        return candidates, rejected

    def _count_attempt(self, props: dict, volume_id: str) -> dict | None:
        max_attempts = self.conf.scheduler.scheduler_max_attempts
        if max_attempts == 1:
            props.pop("retry", None)
            return None
        retry = dict(props.get("retry") or {})
        retry["num_attempts"] = int(retry.get("num_attempts") or 0) + 1
        retry.setdefault("backends", [])
        if retry.get("exc"):
            tried = retry["backends"][-1] if retry["backends"] else "?"
            LOG.error("Creating volume %s failed on %s: %s", volume_id, tried, retry["exc"])
            # What went wrong first is what the user needs when every attempt fails.
            # ``exc`` is a formatted traceback: its last line is the error itself.
            cause = (str(retry["exc"]).strip().splitlines() or [""])[-1]
            retry.setdefault("first_exc", "%s: %s" % (tried, cause[:160]))
        props["retry"] = retry
        if retry["num_attempts"] > max_attempts:
            raise exception.NoValidBackend(
                reason="volume %s failed on %d backend(s) (%s); giving up after "
                       "scheduler_max_attempts=%d"
                       % (volume_id, len(retry["backends"]),
                          ", ".join(retry["backends"]), max_attempts))
        return retry

    def _volume_size(self, spec: dict, volume_id: str) -> int:
        size = spec.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            return size
        with self.db.reader() as session:
            return repository.get(session, models.Volume, volume_id).size

    def _request(self, spec: dict, size: int, retry: dict | None):
        volume_type = spec.get("volume_type") or {}
        zone = spec.get("availability_zone")
        return bm_filters.PlacementRequest(
            size_gb=size, extra_specs=dict(volume_type.get("extra_specs") or {}),
            resource_backend=spec.get("resource_backend"),
            excluded_backends=frozenset((retry or {}).get("backends") or ()),
            live_backends=self.live.get(), availability_zone=zone,
            backend_zones=self._backend_zones() if zone else {})

    def _backend_zones(self) -> dict:
        """``host@backend`` -> the availability zone its volume service registered."""
        from blockmgr import services

        with self.db.reader() as session:
            return {row.host: row.availability_zone for row in services.list_services(
                session, self.conf.service_down_time, binary=services.VOLUME_BINARY)}

    def _place(self, request: bm_filters.PlacementRequest, what: str) -> host_state.PoolState:
        """The best pool for ``request``. Liveness comes from a cache (``LiveBackends``, one
        second old at most); a placement that finds nothing is retried once on a fresh read,
        so a backend that came up within that second is not refused."""
        try:
            return self._place_on(request, what)
        except exception.NoValidBackend:
            if request.live_backends is None:
                raise
            live = self.live.get(fresh=True)
            if live == request.live_backends:
                raise
            return self._place_on(dataclasses.replace(request, live_backends=live), what)

    def _place_on(self, request: bm_filters.PlacementRequest,
                  what: str) -> host_state.PoolState:
        multiplier = self.conf.scheduler.capacity_weight_multiplier
        suspects = self.live.suspects()

        def choose(pools):
            pools = self._fresh(pools)
            if suspects and request.live_backends is not None:
                # Backends that very likely died (liveness.py) only if nothing else fits.
                trusted = dataclasses.replace(request,
                                              live_backends=request.live_backends - suspects)
                passed, _rejected = bm_filters.apply(pools, trusted)
                if passed:
                    return weighers.order(passed, request, multiplier)[0]
            passed, rejected = bm_filters.apply(pools, request)
            if not passed:
                raise exception.NoValidBackend(
                    reason="no pool can take %s (%g GiB)%s"
                    % (what, request.size_gb, _explain(rejected)))
            return weighers.order(passed, request, multiplier)[0]

        return self.states.place(choose, request.size_gb, request.thin_on)

    def _fresh(self, pools: list) -> list:
        max_age = self.conf.scheduler.capabilities_max_age
        if not max_age:
            return pools
        now = time.time()
        return [p for p in pools
                if now - (self.states.received_at(p.backend) or 0) <= max_age]

    def _live_with(self, backend: str | None) -> frozenset:
        """The live backends, read afresh if the cached set lacks ``backend`` (it may have
        come up within the cache's second)."""
        live = self.live.get()
        if backend and backend not in live:
            live = self.live.get(fresh=True)
        return live

    def _manage_target(self, host: str, what: str) -> str:
        if not isinstance(host, str) or "@" not in host:
            raise exception.NoValidBackend(reason="%r is not a host@backend[#pool]" % (host,))
        backend = rpc.backend_of(host)
        if not self.live.is_up(backend):
            raise exception.NoValidBackend(
                reason="the volume service of %s is down or disabled" % backend)
        if "#" in host:
            return host
        pools = [p for p in self.states.pools() if p.backend == backend]
        if not pools:
            return host
        return weighers.order(pools, bm_filters.PlacementRequest(),
                              self.conf.scheduler.capacity_weight_multiplier)[0].host

    # --- writes ---------------------------------------------------------------------------

    def _place_and_hand_off(self, ctx, model, resource_id: str, status: str, host: str,
                            action: str, arguments: dict) -> bool:
        """Write ``host`` (and ``scheduled_at`` for volumes) while the row is still
        ``status`` and, in the same transaction, hand the request this thread serves on to
        that backend; then ring it. False (logged) if the row was deleted or moved on
        meanwhile (nothing written)."""
        values = {"host": host}
        if model is models.Volume:
            values["scheduled_at"] = models.utcnow()
        try:
            with self.db.writer() as session:
                repository.transition(session, model, resource_id, status,
                                      expected=(status,), **values)
                request_id = bm_ledger.hand_off(session, rpc.backend_of(host), action,
                                                arguments)
        except (exception.NotFound, exception.InvalidStatusTransition) as exc:
            LOG.info("Not placing %s %s on %s: %s", model.__tablename__, resource_id, host, exc)
            return False
        self._send(ctx, host, action, arguments, request_id)
        return True

    def _hand_off(self, ctx, host: str, action: str, arguments: dict) -> None:
        """Hand the request this thread serves on to backend ``host`` and ring it."""
        with self.db.writer() as session:
            request_id = bm_ledger.hand_off(session, rpc.backend_of(host), action, arguments)
        self._send(ctx, host, action, arguments, request_id)

    def _send(self, ctx, host: str, action: str, arguments: dict,
              request_id: str | None) -> None:
        """Ring the backend of a handed-off request. A failed cast loses nothing: the
        backend's next sweep finds the request pending. Without a request (a message
        that carried none) the cast is the request: it must go out, or the resource
        would stay transitional -- its failure is raised."""
        if request_id is None:
            getattr(self.volume_rpcapi, action)(ctx, host, **arguments)
            return
        try:
            self.volume_rpcapi.ring(ctx, host, action, arguments, request_id)
        except Exception as exc:
            LOG.warning("Could not ring %s for request %s (%s); its next sweep runs it",
                        host, request_id, exc)

    def _error_out(self, model, resource_id: str, status: str, expected, reason: str) -> None:
        values = {"status_reason": reason[:255]} if hasattr(model, "status_reason") else {}
        try:
            with self.db.writer() as session:
                repository.transition(session, model, resource_id, status, expected=expected,
                                      **values)
        except (exception.NotFound, exception.InvalidStatusTransition) as exc:
            LOG.info("Could not set %s %s to %s: %s", model.__tablename__, resource_id,
                     status, exc)

    def _volume_failed(self, ctx, volume_id: str, status: str, action: str, exc, spec) -> None:
        reason = _reason(exc)
        LOG.warning("Volume %s: %s", volume_id, reason)
        expected = (V.MANAGING,) if status == V.ERROR_MANAGING else (V.CREATING,)
        self._error_out(models.Volume, volume_id, status, expected, reason)
        self.notifier.error(ctx, "volume.%s.error" % action,
                            {"volume_id": volume_id, "state": str(status), "reason": reason,
                             "method": action if action != "create" else "create_volume",
                             "request_spec": _jsonable_spec(spec)})


def _ctx(context) -> bm_context.RequestContext:
    if isinstance(context, bm_context.RequestContext):
        return context
    return bm_context.RequestContext.from_dict(context or {})


def _reason(exc: BaseException) -> str:
    return getattr(exc, "msg", None) or "%s: %s" % (type(exc).__name__, exc)


def _explain(rejected: dict[str, str]) -> str:
    if not rejected:
        return ": no backend has reported its capacity"
    return ": " + "; ".join("%s: %s" % item for item in sorted(rejected.items()))


def _jsonable_spec(spec: dict) -> dict:
    return {k: v for k, v in (spec or {}).items()
            if isinstance(v, (str, int, float, bool, dict, list)) or v is None}
