"""Scheduler: filters, weighers, charging, retries, NoValidBackend, routing, sweeps (SQLite,
in-process RPC doubles that record what would be cast)."""

from __future__ import annotations

import datetime as dt

import pytest

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import notifications
from blockmgr import quota as bm_quota
from blockmgr import services
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.scheduler import filters
from blockmgr.scheduler import host_state
from blockmgr.scheduler import liveness
from blockmgr.scheduler import manager as sched_manager
from blockmgr.scheduler import reservations
from blockmgr.scheduler import stale
from blockmgr.scheduler import weighers
from blockmgr.volume import rpcapi as volume_rpcapi

CTX = bm_context.RequestContext(project_id="p1", user_id="u1")


class RecordingVolumeAPI(volume_rpcapi.VolumeAPI):
    """The real VolumeAPI (signatures, argument names) with the transport replaced by a list."""

    def __init__(self):
        super().__init__(transport=None)
        self.sent: list[tuple[str, str, dict]] = []
        self.fail: Exception | None = None

    def _cast(self, ctxt, host, method, **kwargs):
        if self.fail is not None:
            raise self.fail
        self.sent.append((method, host, kwargs))

    def _call(self, ctxt, host, method, **kwargs):
        self.sent.append((method, host, kwargs))
        return {"method": method}


def pool(name="pool", total=100, free=100, provisioned=0, reserved=0, ratio=1.0, thin=False,
         thick=True, **caps):
    return dict(pool_name=name, total_capacity_gb=total, free_capacity_gb=free,
                provisioned_capacity_gb=provisioned, reserved_percentage=reserved,
                max_over_subscription_ratio=ratio, thin_provisioning_support=thin,
                thick_provisioning_support=thick, **caps)


def report(backend_name="lvm", *pools, **top):
    return dict(volume_backend_name=backend_name, vendor_name="test", driver_version="1",
                storage_protocol="local", pools=list(pools), **top)


def state(backend="n1@lvm", **kw):
    return host_state.PoolState.from_report(backend, report(), pool(**kw), 0.0)


# --- filters --------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,size,specs,ok", [
    (dict(total=100, free=50), 50, {}, True),
    (dict(total=100, free=50), 51, {}, False),
    # thick: min(free, total - reserved - provisioned)
    (dict(total=100, free=90, provisioned=20), 81, {}, False),
    (dict(total=100, free=90, provisioned=20), 80, {}, True),
    (dict(total=100, free=100, reserved=10), 91, {}, False),
    (dict(total=100, free=100, reserved=10), 90, {}, True),
    # thin: (total - reserved) * ratio - provisioned
    (dict(total=100, free=10, provisioned=150, ratio=2.0, thin=True), 50, {}, True),
    (dict(total=100, free=10, provisioned=150, ratio=2.0, thin=True), 51, {}, False),
    (dict(total=100, free=50, ratio=0.5, thin=True), 1, {}, False),
    (dict(total=100, free=10, reserved=10, ratio=20.0, thin=True), 1, {}, False),  # full
    # a thick request on a thin+thick pool uses the thick rule
    (dict(total=100, free=10, ratio=20.0, thin=True), 50, {"provisioning:type": "thick"},
     False),
    (dict(total=100, free=100, thin=True, thick=False), 1, {"provisioning:type": "thick"},
     False),
    (dict(total="unknown", free="infinite"), 10 ** 6, {}, True),
    (dict(total="infinite", free=5), 6, {}, False),
])
def test_capacity_filter(kw, size, specs, ok):
    request = filters.PlacementRequest(size_gb=size, extra_specs=specs)
    assert (filters.capacity(state(**kw), request) is None) is ok


def test_capability_filter_matches_backend_name_and_scoped_specs():
    pool_state = host_state.PoolState.from_report(
        "n1@lvm", report("fast", pool(multiattach=True)), pool(multiattach=True), 0)
    check = lambda specs: filters.capabilities(pool_state, filters.PlacementRequest(
        extra_specs=specs))
    assert check({"volume_backend_name": "fast"}) is None
    assert "volume_backend_name" in check({"volume_backend_name": "slow"})
    assert check({"capabilities:multiattach": "<is> True"}) is None
    assert check({"capabilities:multiattach": "<is> False"}) is not None
    assert check({"capabilities:storage_protocol": "iSCSI"}) is not None
    assert check({"some_driver_key": "x", "qos:iops": "5"}) is None   # not ours: ignored


def test_identity_filters_reject_with_reasons():
    pools = [state("n1@lvm"), state("n2@lvm")]
    request = filters.PlacementRequest(size_gb=1, excluded_backends=frozenset({"n1@lvm"}),
                                       live_backends=frozenset({"n1@lvm", "n2@lvm"}))
    passed, rejected = filters.apply(pools, request)
    assert [p.backend for p in passed] == ["n2@lvm"]
    assert "already failed" in rejected["n1@lvm#pool"]
    request = filters.PlacementRequest(size_gb=1, live_backends=frozenset({"n1@lvm"}),
                                       resource_backend="n1@lvm#other")
    passed, rejected = filters.apply(pools, request)
    assert passed == []
    assert "down" in rejected["n2@lvm#pool"] and "n1@lvm#other" in rejected["n1@lvm#pool"]


def test_weigher_prefers_free_space_and_multiplier_stacks():
    small, big = state("n1@lvm", free=10), state("n2@lvm", free=90)
    thin = state("n3@lvm", total=100, free=5, ratio=10.0, thin=True)   # virtual 1000
    request = filters.PlacementRequest(size_gb=1)
    assert [p.backend for p in weighers.order([small, big, thin], request)] == [
        "n3@lvm", "n2@lvm", "n1@lvm"]
    assert weighers.order([small, big], request, multiplier=-1.0)[0].backend == "n1@lvm"
    unknown = state("n4@lvm", free="unknown")
    assert weighers.order([unknown, small], request)[0].backend == "n1@lvm"


# --- host state -----------------------------------------------------------------------------

def test_charges_survive_older_reports_and_are_dropped_by_newer():
    now = [1000.0]
    states = host_state.BackendStates(clock=lambda: now[0])
    states.update("n1@lvm", report("lvm", pool(free=100)), timestamp=999.0)
    states.charge("n1@lvm#pool", 30, thin=False)
    assert states.pool("n1@lvm#pool").free_capacity_gb == 70
    # A report measured before the charge: the charge is re-applied on top of it.
    assert states.update("n1@lvm", report("lvm", pool(free=100)), timestamp=999.5)
    assert states.pool("n1@lvm#pool").free_capacity_gb == 70
    # A stale report (older than the one held) is ignored.
    assert not states.update("n1@lvm", report("lvm", pool(free=1)), timestamp=900.0)
    # A report measured after the charge includes it: the charge is dropped.
    states.update("n1@lvm", report("lvm", pool(free=68)),
                  timestamp=dt.datetime.fromtimestamp(1001.0, dt.timezone.utc).isoformat())
    assert states.pool("n1@lvm#pool").free_capacity_gb == 68
    assert states.pending_charges() == []


def test_report_without_pools_is_one_pool_named_after_the_backend():
    states = host_state.BackendStates()
    states.update("n1@lvm", dict(total_capacity_gb=10, free_capacity_gb=10))
    assert [p.host for p in states.pools()] == ["n1@lvm#lvm"]
    assert not states.update("n1@lvm", "garbage")


# --- manager --------------------------------------------------------------------------------

@pytest.fixture
def conf(conf):
    conf.set_override("startup_wait", 0, group="scheduler")
    return conf


@pytest.fixture
def env(conf, sqlite_database):
    db = sqlite_database
    with db.writer() as session:
        for host in ("n1@lvm", "n2@lvm"):
            sid = services.register(session, host, services.VOLUME_BINARY, "blockmgr-volume")
            services.heartbeat(session, sid)
    volume_api = RecordingVolumeAPI()
    notifier = notifications.MemoryNotifier()
    quota = bm_quota.QuotaEngine(db, conf)
    mgr = sched_manager.SchedulerManager(conf, db=db, volume_rpcapi=volume_api, quota=quota,
                                         notifier=notifier)
    mgr.update_service_capabilities(CTX, "volume", "n1@lvm", report("lvm", pool(free=50)))
    mgr.update_service_capabilities(CTX, "volume", "n2@lvm", report("lvm", pool(free=40)))

    class Env:
        pass
    e = Env()
    e.db, e.mgr, e.api, e.notifier, e.quota, e.conf = db, mgr, volume_api, notifier, quota, conf
    return e


def new_volume(db, size=10, status="creating", host=None, **kw):
    with db.writer() as session:
        return repository.create(session, models.Volume, size=size, status=status,
                                 project_id="p1", host=host, **kw).id


def volume(db, volume_id):
    with db.reader() as session:
        row = repository.get(session, models.Volume, volume_id, read_deleted=True)
        session.expunge(row)
        return row


def test_create_places_on_emptier_backend_and_charges_each_placement(env):
    ids = [new_volume(env.db, size=10) for _ in range(4)]
    for vid in ids:
        env.mgr.create_volume(CTX, vid, {"size": 10}, {})
    hosts = [volume(env.db, vid).host for vid in ids]
    # 50 vs 40 free: n1, then 40 vs 40 -> n1 (host order), then 30/40 -> n2, 30/30 -> n1
    assert hosts == ["n1@lvm#pool", "n1@lvm#pool", "n2@lvm#pool", "n1@lvm#pool"]
    assert [(m, h) for m, h, _ in env.api.sent] == [("create_volume", h) for h in hosts]
    method, host, kwargs = env.api.sent[0]
    assert kwargs["volume_id"] == ids[0] and kwargs["allow_reschedule"] is True
    assert kwargs["filter_properties"]["retry"] == {"num_attempts": 1,
                                                    "backends": ["n1@lvm"]}
    assert volume(env.db, ids[0]).scheduled_at is not None


def test_no_valid_backend_errors_the_volume_and_notifies(env):
    vid = new_volume(env.db, size=500)
    env.mgr.create_volume(CTX, vid, {"size": 500}, {})
    row = volume(env.db, vid)
    assert row.status == "error" and row.host is None
    assert "500 GiB" in row.status_reason
    assert env.api.sent == []
    priority, event, payload = env.notifier.events[-1]
    assert (priority, event, payload["volume_id"]) == ("ERROR", "volume.create.error", vid)
    # nothing was charged
    assert env.mgr.states.pending_charges() == []


def test_reschedule_excludes_tried_backends_and_stops_after_max_attempts(env):
    vid = new_volume(env.db)
    env.mgr.create_volume(CTX, vid, {"size": 10}, {})
    props = env.api.sent[-1][2]["filter_properties"]
    assert props["retry"]["backends"] == ["n1@lvm"]
    # the worker failed: it clears host and casts back with retry['exc']
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, vid), host=None)
    props["retry"]["exc"] = "Traceback: boom"
    env.mgr.create_volume(CTX, vid, {"size": 10}, props)
    props = env.api.sent[-1][2]["filter_properties"]
    assert env.api.sent[-1][1] == "n2@lvm#pool"
    assert props["retry"]["num_attempts"] == 2
    assert props["retry"]["backends"] == ["n1@lvm", "n2@lvm"]
    # third attempt: every backend tried -> NoValidBackend
    env.mgr.create_volume(CTX, vid, {"size": 10}, props)
    assert volume(env.db, vid).status == "error"
    assert "already failed" in volume(env.db, vid).status_reason
    # the final reason keeps the cause of the first failure
    assert "the first attempt failed on n1@lvm: Traceback: boom" in volume(
        env.db, vid).status_reason
    assert len(env.api.sent) == 2


def test_attempts_beyond_max_error_out(env):
    vid = new_volume(env.db)
    env.mgr.create_volume(CTX, vid, {"size": 10},
                          {"retry": {"num_attempts": 3, "backends": ["x@y"]}})
    row = volume(env.db, vid)
    assert row.status == "error" and "scheduler_max_attempts=3" in row.status_reason


def test_max_attempts_one_disables_rescheduling(env):
    env.conf.set_override("scheduler_max_attempts", 1, group="scheduler")
    vid = new_volume(env.db)
    env.mgr.create_volume(CTX, vid, {"size": 10}, {"retry": {"num_attempts": 1}})
    assert "retry" not in env.api.sent[-1][2]["filter_properties"]


def test_down_service_gets_nothing(env):
    with env.db.writer() as session:
        session.query(models.Service).filter_by(host="n1@lvm").update(
            {"heartbeat_at": models.utcnow() - dt.timedelta(seconds=3600)})
    env.mgr.live.get(fresh=True)
    vid = new_volume(env.db)
    env.mgr.create_volume(CTX, vid, {"size": 10}, {})
    assert volume(env.db, vid).host == "n2@lvm#pool"


def test_a_backend_that_came_up_after_the_liveness_cache_was_read_gets_placements(env):
    """Regression (CI flake): the cache is read while n3 has not heartbeat yet; n3 then
    heartbeats and reports within the cache's second. Creates, extends and groups that only
    n3 can take must go there, not end in error as 'down or disabled'."""
    env.mgr.live.get(fresh=True)   # cached without n3
    with env.db.writer() as session:
        sid = services.register(session, "n3@big", services.VOLUME_BINARY, "blockmgr-volume")
        services.heartbeat(session, sid)
    env.mgr.update_service_capabilities(CTX, "volume", "n3@big", report("big", pool(total=1000, free=900)))
    vid = new_volume(env.db, size=500)
    env.mgr.create_volume(CTX, vid, {"size": 500}, {})
    assert volume(env.db, vid).host == "n3@big#pool"

    env.mgr.live.get(fresh=True)
    env.mgr.live._cached = frozenset({"n1@lvm"})   # an older read, again without n3
    uuids = env.quota.reserve("p1", gigabytes=10)
    grown = new_volume(env.db, size=10, status="extending", host="n3@big#pool",
                       previous_status="available")
    env.mgr.extend_volume(CTX, grown, 20, uuids)
    assert env.api.sent[-1][:2] == ("extend_volume", "n3@big#pool")

    env.mgr.live._cached = frozenset({"n1@lvm"})
    with env.db.writer() as session:
        gid = repository.create(session, models.Group, status="creating", project_id="p1").id
    env.mgr.create_group(CTX, gid, {"volume_types": [
        {"extra_specs": {"volume_backend_name": "big"}}]})
    assert env.api.sent[-1] == ("create_group", "n3@big", {"group_id": gid})


def test_volume_type_backend_name_and_resource_backend(env):
    env.mgr.update_service_capabilities(CTX, "volume", "n2@lvm", report("gold", pool(free=6)))
    vid = new_volume(env.db, size=5)
    env.mgr.create_volume(CTX, vid, {"size": 5, "volume_type": {
        "extra_specs": {"volume_backend_name": "gold"}}}, {})
    assert volume(env.db, vid).host == "n2@lvm#pool"
    vid = new_volume(env.db, size=1)
    env.mgr.create_volume(CTX, vid, {"size": 1, "resource_backend": "n2@lvm#pool"}, {})
    assert volume(env.db, vid).host == "n2@lvm#pool"


def test_deleted_volume_is_not_cast_and_charge_returned(env):
    vid = new_volume(env.db)
    with env.db.writer() as session:
        repository.soft_delete(session, repository.get(session, models.Volume, vid))
    env.mgr.create_volume(CTX, vid, {"size": 10}, {})
    assert env.api.sent == []
    assert env.mgr.states.pool("n1@lvm#pool").free_capacity_gb == 50


def _ledger_request(env, vid, **arguments):
    from blockmgr import ledger
    from blockmgr.db import requests as db_requests

    env.mgr.ledger = ledger.Ledger(env.db, env.conf, owner_prefix="scheduler:test",
                                   targets=[db_requests.SCHEDULER])
    with env.db.writer() as session:
        return db_requests.add(session, kind="volume", resource_id=vid,
                               action="create_volume", arguments=arguments,
                               context=CTX.to_dict(), target=db_requests.SCHEDULER)


def _request_row(env, request_id):
    from blockmgr.db import requests as db_requests

    with env.db.reader() as session:
        return db_requests.get(session, request_id)


def test_placement_hands_the_request_off_to_its_backend(env):
    vid = new_volume(env.db)
    rid = _ledger_request(env, vid, volume_id=vid, request_spec={"size": 10},
                          filter_properties={})
    env.mgr.create_volume(CTX, vid, {"size": 10}, {}, request_id=rid)
    request = _request_row(env, rid)
    assert (request.target, request.state, request.action) == ("n1@lvm", "pending",
                                                              "create_volume")
    assert volume(env.db, vid).host == "n1@lvm#pool"
    assert env.api.sent[-1][0] == "create_volume"
    assert env.api.sent[-1][2]["request_id"] == rid
    # a second message for the same request finds nothing to claim: nothing placed twice
    env.mgr.create_volume(CTX, vid, {"size": 10}, {}, request_id=rid)
    assert len(env.api.sent) == 1
    assert env.mgr.states.pool("n1@lvm#pool").free_capacity_gb == 40


def test_cast_failure_leaves_the_request_pending_with_its_backend(env):
    """The broker fails after the placement was recorded: nothing is lost, the backend's
    next sweep finds its request pending."""
    env.api.fail = RuntimeError("broker gone")
    vid = new_volume(env.db)
    rid = _ledger_request(env, vid, volume_id=vid, request_spec={"size": 10},
                          filter_properties={})
    env.mgr.create_volume(CTX, vid, {"size": 10}, {}, request_id=rid)
    assert volume(env.db, vid).status == "creating"
    request = _request_row(env, rid)
    assert (request.target, request.state) == ("n1@lvm", "pending")


def test_a_request_nothing_can_place_is_done_with_its_volume_in_error(env):
    vid = new_volume(env.db, size=1000)
    rid = _ledger_request(env, vid, volume_id=vid, request_spec={"size": 1000},
                          filter_properties={})
    env.mgr.create_volume(CTX, vid, {"size": 1000}, {}, request_id=rid)
    assert volume(env.db, vid).status == "error"
    assert _request_row(env, rid).state == "done"


def test_manage_existing_routes_to_up_host_with_best_pool(env):
    vid = new_volume(env.db, size=0, status="managing", host="n2@lvm")
    env.mgr.manage_existing(CTX, vid, {"source-name": "lv1"}, "n2@lvm")
    assert volume(env.db, vid).host == "n2@lvm#pool"
    assert env.api.sent == [("manage_existing", "n2@lvm#pool",
                             {"volume_id": vid, "ref": {"source-name": "lv1"}})]


def test_manage_existing_on_down_host_is_error_managing(env):
    with env.db.writer() as session:
        session.query(models.Service).filter_by(host="n2@lvm").update({"disabled": True})
    vid = new_volume(env.db, size=0, status="managing", host="n2@lvm")
    env.mgr.manage_existing(CTX, vid, {"source-name": "lv1"}, "n2@lvm")
    row = volume(env.db, vid)
    assert row.status == "error_managing" and "down" in row.status_reason
    assert env.api.sent == []
    assert env.notifier.types()[-1] == "volume.manage_existing.error"


def test_manage_existing_snapshot_down_host_errors_snapshot(env):
    vid = new_volume(env.db, status="available", host="n9@lvm#pool")
    with env.db.writer() as session:
        sid = repository.create(session, models.Snapshot, volume_id=vid, status="creating",
                                project_id="p1").id
    env.mgr.manage_existing_snapshot(CTX, sid, {"source-id": "s"}, "n9@lvm#pool")
    with env.db.reader() as session:
        assert repository.get(session, models.Snapshot, sid).status == "error"
    env.mgr.manage_existing_snapshot(CTX, sid, {"source-id": "s"}, "n1@lvm#pool")
    assert env.api.sent[-1][:2] == ("manage_existing_snapshot", "n1@lvm#pool")


def test_create_group_places_on_backend_suiting_all_types(env):
    env.mgr.update_service_capabilities(CTX, "volume", "n2@lvm", report("gold", pool(free=5)))
    with env.db.writer() as session:
        gid = repository.create(session, models.Group, status="creating", project_id="p1").id
        bad = repository.create(session, models.Group, status="creating", project_id="p1").id
    env.mgr.create_group(CTX, gid, {"volume_types": [
        {"extra_specs": {"volume_backend_name": "gold"}}]})
    assert env.api.sent[-1] == ("create_group", "n2@lvm", {"group_id": gid})
    env.mgr.create_group(CTX, bad, {"volume_types": [
        {"extra_specs": {"volume_backend_name": "gold"}},
        {"extra_specs": {"volume_backend_name": "lvm"}}]})
    with env.db.reader() as session:
        assert repository.get(session, models.Group, gid).host == "n2@lvm"
        assert repository.get(session, models.Group, bad).status == "error"
    assert env.notifier.types()[-1] == "group.create.error"


def test_extend_checks_pool_capacity(env):
    vid = new_volume(env.db, size=10, status="extending", host="n2@lvm#pool",
                     previous_status="available")
    uuids = env.quota.reserve("p1", gigabytes=20)
    env.mgr.extend_volume(CTX, vid, 30, uuids)
    assert env.api.sent[-1] == ("extend_volume", "n2@lvm#pool",
                                {"volume_id": vid, "new_size": 30, "reservations": uuids})
    assert env.mgr.states.pool("n2@lvm#pool").free_capacity_gb == 20
    # 20 GiB left: growing another volume by 25 does not fit
    vid2 = new_volume(env.db, size=5, status="extending", host="n2@lvm#pool",
                      previous_status="in-use")
    uuids2 = env.quota.reserve("p1", gigabytes=25)
    env.mgr.extend_volume(CTX, vid2, 30, uuids2)
    row = volume(env.db, vid2)
    assert row.status == "in-use" and "cannot extend" in row.status_reason
    assert env.quota.get_usages("p1")["gigabytes"]["reserved"] == 20   # uuids2 rolled back
    assert env.notifier.types()[-1] == "volume.resize.error"


def test_startup_wait_returns_once_every_live_service_reported(conf, sqlite_database):
    conf.set_override("startup_wait", 5, group="scheduler")
    with sqlite_database.writer() as session:
        services.heartbeat(session, services.register(session, "n1@lvm",
                                                      services.VOLUME_BINARY, "t"))
    mgr = sched_manager.SchedulerManager(conf, db=sqlite_database,
                                         volume_rpcapi=RecordingVolumeAPI(), quota=None,
                                         notifier=notifications.MemoryNotifier())
    mgr.update_service_capabilities(CTX, "volume", "n1@lvm", report("lvm", pool()))
    assert mgr.wait_until_ready() is True
    mgr.update_service_capabilities(CTX, "backup", "n1@lvm", report("lvm", pool()))
    assert mgr.states.backends() == {"n1@lvm"}


# --- reservation sweep ----------------------------------------------------------------------

class FlowsDouble:
    """What the sweeper reads from the flow logbooks: the unfinished flow ids."""

    def __init__(self, unfinished):
        self.unfinished = set(unfinished)
        self.asked = 0

    def unfinished_flow_uuids(self):
        self.asked += 1
        return set(self.unfinished)


def test_sweeper_releases_orphans_by_owner_not_age(conf, sqlite_database):
    quota = bm_quota.QuotaEngine(sqlite_database, conf)
    live = quota.reserve("p1", owner="flow-live", gigabytes=5)
    finished = quota.reserve("p1", owner="flow-done", gigabytes=7)
    fresh_ownerless = quota.reserve("p1", gigabytes=11)
    expired_ownerless = quota.reserve("p1", gigabytes=13, expire=dt.datetime(2000, 1, 1))
    flows = FlowsDouble({"flow-live"})
    result = reservations.ReservationSweeper(quota, flows).sweep()
    assert sorted(result.orphans) == sorted(finished + expired_ownerless)
    assert quota.get_usages("p1")["gigabytes"]["reserved"] == 5 + 11
    assert flows.asked == 1   # two owners judged on one snapshot, not one query each
    assert quota.reservations_of("flow-live") == live
    del fresh_ownerless


def test_sweeper_without_flow_visibility_keeps_owned_reservations(conf, sqlite_database):
    quota = bm_quota.QuotaEngine(sqlite_database, conf)
    quota.reserve("p1", owner="flow-x", gigabytes=5, expire=dt.datetime(2000, 1, 1))
    result = reservations.ReservationSweeper(quota, None).sweep()
    assert result.orphans == [] and result.expired == 0
    assert quota.get_usages("p1")["gigabytes"]["reserved"] == 5


def test_periodic_sweep_survives_a_failing_sweep():
    calls = []

    class Flaky:
        def sweep(self):
            calls.append(1)
            raise RuntimeError("db down")

    periodic = reservations.PeriodicSweep(Flaky(), interval=0.01)
    periodic.start()
    import time
    deadline = time.monotonic() + 2
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    periodic.stop()
    assert len(calls) >= 2


def test_unknown_volume_is_ignored(env):
    env.mgr.create_volume(CTX, "0" * 36, {}, {})
    assert env.api.sent == []
    with pytest.raises(exception.VolumeNotFound):
        volume(env.db, "0" * 36)


# --- liveness: suspects before service_down_time; stale creates of a dead worker ----------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def beat(db, host, at):
    """One heartbeat of ``host`` written at ``at`` (naive UTC), as the worker would."""
    with db.writer() as session:
        row = session.query(models.Service).filter_by(host=host).one()
        row.report_count += 1
        row.heartbeat_at = at


def test_a_backend_whose_heartbeats_stop_is_suspected_before_it_is_down(env):
    clock = Clock()
    live = liveness.LiveBackends(env.db, 60, clock=clock, missed=3)
    start = models.utcnow()
    for i in range(1, 3):   # two reads that see the count move: period 2 s measured
        clock.now += 2
        for host in ("n1@lvm", "n2@lvm"):
            beat(env.db, host, start + dt.timedelta(seconds=2 * i))
        assert live.get(fresh=True) == {"n1@lvm", "n2@lvm"}
        assert live.suspects() == frozenset()
    # n1 dies; n2 beats on. 3 periods (6 s) later n1 is suspect but still up.
    for i in range(3, 7):
        clock.now += 2
        beat(env.db, "n2@lvm", start + dt.timedelta(seconds=2 * i))
        live.get(fresh=True)
    assert live.get() == {"n1@lvm", "n2@lvm"}
    assert live.suspects() == {"n1@lvm"}
    # it comes back: no longer suspect
    clock.now += 2
    beat(env.db, "n1@lvm", start + dt.timedelta(seconds=14))
    assert live.suspects(fresh=True) == frozenset()


def test_suspicion_needs_a_measured_period_and_can_be_disabled(env):
    clock = Clock()
    never = liveness.LiveBackends(env.db, 60, clock=clock, missed=0)
    unmeasured = liveness.LiveBackends(env.db, 60, clock=clock, missed=3)
    never.get(fresh=True)
    unmeasured.get(fresh=True)
    clock.now += 3600   # no heartbeat for an hour on this clock, none seen to move before
    assert never.suspects(fresh=True) == frozenset()
    assert unmeasured.suspects(fresh=True) == frozenset()


class SuspectingLive(liveness.LiveBackends):
    def __init__(self, db, suspects):
        super().__init__(db, 60)
        self._fixed = frozenset(suspects)

    def suspects(self, *, fresh=False):
        return self._fixed


def test_placement_avoids_a_suspect_while_another_backend_fits(env):
    env.mgr.live = SuspectingLive(env.db, {"n1@lvm"})   # n1 is emptier, but suspect
    vid = new_volume(env.db, size=10)
    env.mgr.create_volume(CTX, vid, {"size": 10}, {})
    assert volume(env.db, vid).host == "n2@lvm#pool"
    # only n1 can take 45 GiB: a suspect is still better than an error
    big = new_volume(env.db, size=45)
    env.mgr.create_volume(CTX, big, {"size": 45}, {})
    assert volume(env.db, big).host == "n1@lvm#pool"
    # groups too
    with env.db.writer() as session:
        gid = repository.create(session, models.Group, status="creating", project_id="p1").id
    env.mgr.create_group(CTX, gid, {})
    with env.db.reader() as session:
        assert repository.get(session, models.Group, gid).host == "n2@lvm"


def _age(db, volume_id, seconds):
    with db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, volume_id),
                          scheduled_at=models.utcnow() - dt.timedelta(seconds=seconds))


def test_stale_creates_of_a_worker_that_never_came_back_end_in_error(env):
    env.conf.set_override("stale_create_timeout", 300, group="scheduler")
    sweeper = stale.StaleCreates(env.conf, db=env.db, notifier=env.notifier)
    with env.db.writer() as session:   # n1 died 10 minutes ago; n2 is alive
        session.query(models.Service).filter_by(host="n1@lvm").update(
            {"heartbeat_at": models.utcnow() - dt.timedelta(seconds=600)})
    dead_old = new_volume(env.db, host="n1@lvm#pool")
    dead_new = new_volume(env.db, host="n1@lvm#pool")
    alive_old = new_volume(env.db, host="n2@lvm#pool")
    nowhere = new_volume(env.db, host="gone@lvm#pool")       # no service row at all
    done = new_volume(env.db, host="n1@lvm#pool", status="available")
    for vid in (dead_old, alive_old, nowhere, done):
        _age(env.db, vid, 400)
    _age(env.db, dead_new, 100)
    from blockmgr.db import requests as db_requests
    with env.db.writer() as session:   # its request waits in the ledger for n1
        request_id = db_requests.add(session, kind="volume", resource_id=dead_old,
                                     action="create_volume", arguments={},
                                     context=CTX.to_dict(), target="n1@lvm")
    assert sorted(sweeper.sweep()) == sorted([dead_old, nowhere])
    row = volume(env.db, dead_old)
    assert row.status == "error" and "n1@lvm has been down" in row.status_reason
    with env.db.reader() as session:   # ended with its volume: nothing left open
        assert db_requests.get(session, request_id).state == "failed"
    assert [volume(env.db, v).status for v in (dead_new, alive_old, done)] == [
        "creating", "creating", "available"]
    events = [(e, p["volume_id"]) for _prio, e, p in env.notifier.events]
    assert ("volume.create.error", dead_old) in events
    # not twice
    assert sweeper.sweep() == []
    # a dead worker that was silent for less than the timeout is given the time to return
    with env.db.writer() as session:
        session.query(models.Service).filter_by(host="n1@lvm").update(
            {"heartbeat_at": models.utcnow() - dt.timedelta(seconds=120)})
    _age(env.db, dead_new, 400)
    assert sweeper.sweep() == []
    env.conf.set_override("stale_create_timeout", 0, group="scheduler")
    assert sweeper.sweep() == []


def test_stale_sweep_interval():
    assert stale.sweep_interval(600) == 60 and stale.sweep_interval(8) == 2
    assert stale.sweep_interval(1) == 1


def test_a_create_naming_a_zone_lands_only_on_a_backend_of_that_zone(env):
    from blockmgr import services

    with env.db.writer() as session:
        for host, zone in (("n1@lvm", "east"), ("n2@lvm", "west")):
            sid = services.register(session, host, services.VOLUME_BINARY, "blockmgr-volume",
                                    availability_zone=zone)
            services.heartbeat(session, sid)
    vid = new_volume(env.db)
    env.mgr.create_volume(CTX, vid, {"size": 1, "availability_zone": "west"}, {})
    assert volume(env.db, vid).host.startswith("n2@lvm")
    other = new_volume(env.db)
    env.mgr.create_volume(CTX, other, {"size": 1, "availability_zone": "north"}, {})
    assert volume(env.db, other).status == "error"
