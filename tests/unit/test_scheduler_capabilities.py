"""The scheduler's capabilities filter (Cinder's CapabilitiesFilter): volume_backend_name
and capability extra specs with Cinder's operators."""

from __future__ import annotations

import pytest

from blockmgr.scheduler import filters
from blockmgr.scheduler.host_state import PoolState


def pool(backend: str = "a@lvm", **caps) -> PoolState:
    return PoolState(backend=backend, pool_name="p", total_capacity_gb=100.0,
                     free_capacity_gb=100.0, capabilities=caps)


@pytest.mark.parametrize("have,wanted,ok", [
    (True, "<is> True", True),
    (False, "<is> True", False),
    ("True", "<is> true", True),
    ("iSCSI", "<in> SCSI", True),
    ("iSCSI", "<in> NVMe", False),
    (["thin", "thick"], "<in> thick", True),
    (["thin"], "<in> thick", False),
    ("compression dedup", "<all-in> dedup compression", True),
    (["compression"], "<all-in> dedup compression", False),
    ("ssd", "<or> hdd <or> ssd", True),
    ("nvme", "<or> hdd <or> ssd", False),
    (100, "= 50", True),            # Cinder's "=" means "at least" for numbers
    (10, "= 50", False),
    (100, "== 100", True),
    (100, "== 99", False),
    (100, "!= 99", True),
    (100, ">= 100", True),
    (99.5, ">= 100", False),
    (5, "<= 5", True),
    (6, "<= 5", False),
    ("abc", ">= 5", False),          # not a number: no match, never an error
    ("b", "s> a", True),
    ("a", "s>= b", False),
    ("lvm", "s== lvm", True),
    ("lvm", "s!= lvm", False),
    ("a", "s< b", True),
    ("b", "s<= a", False),
    ("lvm", "lvm", True),            # no operator: equality
    (10, "10", True),
    (True, "true", True),
    (None, "anything", False),       # not reported: no match
])
def test_spec_operators(have, wanted, ok):
    assert filters.spec_matches(have, wanted) is ok


def _check(caps: dict, specs: dict):
    return filters.capabilities(pool(**caps), filters.PlacementRequest(extra_specs=specs))


def test_volume_backend_name_routes_the_request():
    assert _check({"volume_backend_name": "fast"}, {"volume_backend_name": "fast"}) is None
    reason = _check({"volume_backend_name": "slow"}, {"volume_backend_name": "fast"})
    assert "volume_backend_name is 'slow'" in reason
    assert "reports no volume_backend_name" in _check({}, {"volume_backend_name": "fast"})


def test_scoped_capabilities_are_required_and_unscoped_unknown_keys_ignored():
    caps = {"total_capacity_gb": 500, "thin_provisioning_support": True}
    assert _check(caps, {"capabilities:total_capacity_gb": ">= 100"}) is None
    assert "total_capacity_gb" in _check(caps, {"capabilities:total_capacity_gb": ">= 1000"})
    assert "storage_protocol" in _check(caps, {"capabilities:storage_protocol": "<in> iSCSI"})
    assert _check(caps, {"thin_provisioning_support": "<is> True"}) is None
    assert _check(caps, {"driver_private_key": "x"}) is None
    assert _check(caps, {"qos:iops": "5", "provisioning:type": "thin"}) is None


def test_the_filter_reasons_reach_the_placement_answer():
    pools = [pool("a@lvm", volume_backend_name="slow"),
             pool("b@lvm", volume_backend_name="fast")]
    request = filters.PlacementRequest(size_gb=1, extra_specs={"volume_backend_name": "fast"})
    passed, rejected = filters.apply(pools, request)
    assert [p.backend for p in passed] == ["b@lvm"]
    assert "the volume type wants 'fast'" in rejected["a@lvm#p"]
