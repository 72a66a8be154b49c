"""Typed driver contracts: the load-time capability check, the capabilities the manager reads,
the stats report check at receipt, and the annotations of the interfaces."""

from __future__ import annotations

import abc
import copy
import inspect
import time
import typing

import oslo_messaging
import pytest

from blockmgr import exception
from blockmgr import metrics
from blockmgr.drivers import checker
from blockmgr.drivers import contracts
from blockmgr.drivers import loader
from blockmgr.interface import ALL_INTERFACES, Capability, VolumeDriver
from blockmgr.interface import stats as stats_contract
from blockmgr.interface import updates
from blockmgr.scheduler import host_state
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume import capabilities as bm_capabilities

HERE = __name__


# --- drivers declaring more than they implement (loaded by dotted path) -----------------------

class ManageWithoutUnmanage(FakeDriver):
    """Declares VolumeManagementDriver (through FakeDriver) and lacks ``unmanage``: the
    attribute is not a method any more."""

    unmanage = None


class RevertWithWrongSignature(FakeDriver):
    """Overrides the optional ``revert_to_snapshot`` without its ``context`` argument."""

    def revert_to_snapshot(self, volume, snapshot):
        return None


class CoreOnly(VolumeDriver):
    """Implements the core interface only (by delegating to an in-memory fake)."""

    def __init__(self, configuration=None, backend_name="core", host=None):
        super().__init__(configuration, backend_name, host)
        self.inner = FakeDriver(configuration, backend_name, host)


for _name in VolumeDriver.__abstractmethods__:
    setattr(CoreOnly, _name,
            (lambda name: lambda self, *a, **kw: getattr(self.inner, name)(*a, **kw))(_name))
    getattr(CoreOnly, _name).__signature__ = inspect.signature(getattr(VolumeDriver, _name))
abc.update_abstractmethods(CoreOnly)


# --- load-time check ------------------------------------------------------------------------

def test_a_declared_capability_with_a_missing_method_fails_at_load():
    with pytest.raises(exception.DriverContractError) as info:
        loader.load_driver_class(HERE + ".ManageWithoutUnmanage", section="b1")
    message = str(info.value)
    assert "ManageWithoutUnmanage" in message
    assert "declares VolumeManagementDriver" in message and "unmanage" in message
    assert "driver check" in message   # where to see the full report


def test_an_optional_method_overridden_with_a_wrong_signature_fails_at_load():
    with pytest.raises(exception.DriverContractError,
                       match=r"revert_to_snapshot: parameter 1 is 'volume'.*'context'"):
        loader.load_driver_class(HERE + ".RevertWithWrongSignature")


def test_driver_check_reports_the_optional_method_too():
    report = checker.check_driver(RevertWithWrongSignature)
    assert not report.ok
    [core] = [r for r in report.interfaces if r.interface == "VolumeDriver"]
    assert list(core.mismatched) == ["revert_to_snapshot"]


def test_a_class_that_is_not_a_driver_fails_at_load():
    with pytest.raises(exception.DriverContractError, match="does not inherit"):
        contracts.verify_driver_class(dict)


@pytest.mark.parametrize("name, expected", [
    ("loopback", set(Capability)),
    ("lvm", set(Capability) - {Capability.ONLINE_EXTEND}),
    ("blockmgr.testing.fake_driver.FakeDriver", set(Capability) - {Capability.ONLINE_EXTEND}),
    (HERE + ".CoreOnly", set()),
])
def test_loaded_driver_records_what_it_implements(name, expected):
    cls, caps = loader.load_driver_class(name)
    assert set(caps.capabilities) == expected
    assert caps.driver == "%s.%s" % (cls.__module__, cls.__qualname__)
    # The manager's question is answered from that record, for the class and its objects.
    assert contracts.capabilities_of(cls) is caps


def test_capabilities_of_an_object_built_without_the_loader_are_what_it_declares():
    class Partial:   # a duck-typed test double: declares nothing
        def create_volume(self, volume):
            return None

    caps = contracts.capabilities_of(Partial())
    assert not caps.capabilities
    with pytest.raises(exception.Unsupported, match="ConsistencyGroupDriver"):
        caps.require(Capability.CONSISTENCY_GROUPS, "create_group", "node1@b")


def test_the_backend_stays_down_at_once_with_the_contract_error(conf, sqlite_database):
    from blockmgr.conf import backend as backend_conf
    from blockmgr.volume import service as volume_service

    conf.set_override("host", "node1")
    conf.set_override("driver_setup_retry_interval", 0.05)
    conf.register_opts(backend_conf.GENERIC_OPTS, group="b1")
    conf.set_override("volume_driver", HERE + ".ManageWithoutUnmanage", group="b1")
    svc = volume_service.BackendService(conf, "b1", db=sqlite_database, transport=None)
    svc._register = lambda reason: None      # no service row needed: no RPC, no database
    svc.start()
    svc._thread.join(10)
    assert not svc._thread.is_alive(), "a contract error must not be retried"
    assert svc.setup_attempts == 1 and not svc.ready.is_set()
    assert "declares VolumeManagementDriver" in svc.setup_error
    svc.stop(grace=0)


# --- the manager asks the record ------------------------------------------------------------

def test_endpoint_refuses_a_listing_the_driver_does_not_implement():
    from blockmgr.volume.endpoint import VolumeEndpoint

    manager = type("Manager", (), {"driver": CoreOnly(), "db": None, "host": "node1@core",
                                   "driver_capabilities": contracts.capabilities_of(CoreOnly)})
    endpoint = VolumeEndpoint(manager, capabilities=lambda: {})
    for method, interface in ((endpoint.get_manageable_volumes, "VolumeManagementDriver"),
                              (endpoint.get_manageable_snapshots, "SnapshotManagementDriver")):
        with pytest.raises(oslo_messaging.ExpectedException) as info:
            method(None)   # before any database read: the record answers
        error = info.value.exc_info[1]
        assert isinstance(error, exception.Unsupported) and interface in error.msg
    assert endpoint.get_capabilities(None) == {"online_extend_support": False}


# --- the stats report, checked where the worker receives it ---------------------------------

DRIVER = "my_package.driver.MyDriver"


def _good_stats() -> dict:
    return FakeDriver(None, "fake").get_volume_stats(refresh=True)


def test_the_shipped_reports_pass_and_come_back_unchanged():
    stats = _good_stats()
    assert bm_capabilities.validate_stats(stats, DRIVER) is stats


def test_undeclared_keys_and_capacity_words_are_accepted():
    stats = _good_stats()
    pool = stats["pools"][0]
    pool.update(total_capacity_gb="infinite", free_capacity_gb="unknown",
                max_over_subscription_ratio="auto", vendor_capability_x=["any", "value"])
    bm_capabilities.validate_stats(stats, DRIVER)


def _set(path, value):
    def change(stats):
        target = stats
        for part in path[:-1]:
            target = target[part]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return change


@pytest.mark.parametrize("change, key, reason", [
    (_set(["vendor_name"], KeyError), "vendor_name", "is missing"),
    (_set(["driver_version"], 1.0), "driver_version", "must be str"),
    (_set(["pools"], []), "pools", "at least one pool"),
    (_set(["pools"], {"fake": {}}), "pools", "must be list"),
    (_set(["pools", 0], "fake"), "pools[0]", "must be a dict"),
    (_set(["pools", 0, "free_capacity_gb"], KeyError), "pools[0].free_capacity_gb", "missing"),
    (_set(["pools", 0, "total_capacity_gb"], True), "pools[0].total_capacity_gb", "got True"),
    (_set(["pools", 0, "total_capacity_gb"], "lots"), "pools[0].total_capacity_gb",
     "'infinite' or 'unknown'"),
    (_set(["pools", 0, "free_capacity_gb"], 5000), "pools[0].free_capacity_gb",
     "must not exceed total_capacity_gb"),
    (_set(["pools", 0, "provisioned_capacity_gb"], -1), "pools[0].provisioned_capacity_gb",
     "negative"),
    (_set(["pools", 0, "reserved_percentage"], 150), "pools[0].reserved_percentage", "0-100"),
    (_set(["pools", 0, "max_over_subscription_ratio"], 0.5),
     "pools[0].max_over_subscription_ratio", "at least 1"),
    (_set(["pools", 0, "thin_provisioning_support"], "true"),
     "pools[0].thin_provisioning_support", "must be bool"),
    (_set(["pools", 0, "thin_provisioning_support"], False),
     "pools[0].thick_provisioning_support", "must be true"),
    (_set(["pools", 0, "multiattach"], 1), "pools[0].multiattach", "must be bool"),
])
def test_a_wrong_report_fails_naming_the_driver_and_the_key(change, key, reason):
    stats = _good_stats()
    change(stats)
    with pytest.raises(exception.InvalidDriverStats) as info:
        bm_capabilities.validate_stats(stats, DRIVER)
    assert info.value.kwargs["key"] == key
    assert DRIVER in info.value.msg and key in info.value.msg and reason in info.value.msg


def test_two_pools_with_one_name_are_refused():
    stats = _good_stats()
    stats["pools"].append(copy.deepcopy(stats["pools"][0]))
    with pytest.raises(exception.InvalidDriverStats, match=r"pools\[1\]\.pool_name"):
        bm_capabilities.validate_stats(stats, DRIVER)


def test_a_report_that_is_not_a_dict_is_refused():
    with pytest.raises(exception.InvalidDriverStats, match="must be a dict"):
        bm_capabilities.validate_stats([("pools", [])], DRIVER)


def test_build_report_publishes_nothing_from_a_wrong_report():
    stats = _good_stats()
    del stats["pools"][0]["pool_name"]
    with pytest.raises(exception.InvalidDriverStats, match=r"pools\[0\]\.pool_name"):
        bm_capabilities.build_report(stats, {}, backend_name="fake", driver=DRIVER)


def test_the_worker_does_not_publish_a_wrong_report(conf, sqlite_database):
    """publish_capabilities of a backend whose driver reports a boolean as text raises the
    typed error and sends nothing to the schedulers."""
    from blockmgr.conf import backend as backend_conf
    from blockmgr.volume import service as volume_service

    class TextFlag(FakeDriver):
        def get_volume_stats(self, refresh=False):
            stats = super().get_volume_stats(refresh)
            stats["pools"][0]["thick_provisioning_support"] = "no"
            return stats

    conf.set_override("host", "node1")
    conf.register_opts(backend_conf.GENERIC_OPTS, group="fake")
    sent = []
    svc = volume_service.BackendService(conf, "fake", db=sqlite_database, transport=None,
                                        driver=TextFlag(None, "fake"))
    svc.manager = type("Manager", (), {"capacity": type("Capacity", (), {
        "snapshot": staticmethod(lambda: {})})()})()
    svc.scheduler = type("Scheduler", (), {
        "update_service_capabilities": lambda self, *args: sent.append(args)})()
    with pytest.raises(exception.InvalidDriverStats,
                       match=r"TextFlag .*pools\[0\]\.thick_provisioning_support"):
        svc.publish_capabilities()
    assert sent == [] and svc.last_capabilities is None


def test_validation_costs_little_per_report():
    """Once per polling interval (60 s by default): far below a millisecond."""
    stats = _good_stats()
    started = time.perf_counter()
    for _ in range(1000):
        bm_capabilities.validate_stats(stats, DRIVER)
    assert (time.perf_counter() - started) / 1000 < 0.001


# --- the TypedDicts match what their readers read -------------------------------------------

def test_every_pool_number_the_scheduler_and_metrics_read_is_declared():
    declared = set(stats_contract.PoolStats.__annotations__)
    assert set(host_state._POOL_NUMBERS) <= declared
    assert {field for field, _name, _doc in metrics._POOL_FIELDS} <= declared
    read_by_scheduler = {"pool_name", "reserved_percentage", "max_over_subscription_ratio",
                         "thin_provisioning_support", "thick_provisioning_support",
                         "availability_zone", "multiattach"}
    assert read_by_scheduler <= declared


def test_model_update_fields_are_the_typed_dict_keys():
    from blockmgr.flows import common

    assert common.VOLUME_MODEL_FIELDS == set(updates.VolumeModelUpdate.__annotations__)
    assert common.SNAPSHOT_MODEL_FIELDS == set(updates.SnapshotModelUpdate.__annotations__)
    assert updates.VolumeMemberUpdate.__required_keys__ == {"id"}
    assert stats_contract.VolumeStats.__required_keys__ == {
        "volume_backend_name", "vendor_name", "driver_version", "storage_protocol", "pools"}


@pytest.mark.parametrize("iface", ALL_INTERFACES, ids=lambda i: i.__name__)
def test_every_interface_method_is_annotated(iface):
    """Every argument but ``self`` / ``**kwargs`` and every return value carries a type, and
    the resource arguments are the views."""
    for name, member in vars(iface).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        hints = typing.get_type_hints(member, localns={"RequestContext": object})
        params = [p for p in inspect.signature(member).parameters.values()
                  if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
        missing = [p.name for p in params if p.name not in hints]
        assert not missing and "return" in hints, (name, missing)
        for param in params:
            if param.name in ("volume", "src_vref"):
                assert "VolumeView" in str(hints[param.name]), (name, param.name)
            if param.name == "snapshot":
                assert "SnapshotView" in str(hints[param.name]), (name, param.name)

