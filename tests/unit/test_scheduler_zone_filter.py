"""The scheduler's availability-zone filter (Cinder's AvailabilityZoneFilter)."""

from __future__ import annotations

from blockmgr.scheduler import filters
from blockmgr.scheduler.host_state import PoolState


def pool(backend: str, **caps) -> PoolState:
    return PoolState(backend=backend, pool_name="p", total_capacity_gb=100.0,
                     free_capacity_gb=100.0, capabilities=caps)


def test_a_request_without_a_zone_goes_anywhere():
    request = filters.PlacementRequest(size_gb=1)
    assert filters.availability_zone(pool("a@x"), request) is None


def test_a_request_with_a_zone_lands_only_in_that_zone():
    zones = {"a@x": "az1", "b@y": "az2"}
    request = filters.PlacementRequest(size_gb=1, availability_zone="az2",
                                       backend_zones=zones)
    passed, rejected = filters.apply([pool("a@x"), pool("b@y")], request)
    assert [p.backend for p in passed] == ["b@y"]
    assert rejected == {"a@x#p": "it is in availability zone 'az1', not 'az2'"}


def test_the_zone_a_backend_reports_is_used_when_its_service_is_not_known():
    request = filters.PlacementRequest(size_gb=1, availability_zone="az1")
    assert filters.availability_zone(pool("a@x", availability_zone="az1"), request) is None
    assert "unknown" in filters.availability_zone(pool("b@y"), request)


def test_the_zone_filter_runs_by_default():
    assert filters.availability_zone in filters.DEFAULT_FILTERS
