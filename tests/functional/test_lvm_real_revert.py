"""Revert to snapshot on a real lvm2 (a VG on a loop device): the tag that makes a resumed
revert safe round-trips through lvm2's report; without device-mapper the revert is
``Unsupported`` and changes nothing. The merge itself needs device-mapper; its commands are
covered by ``tests/unit/test_lvm_recorded.py``."""

from __future__ import annotations

import pytest

from blockmgr import exception
from blockmgr.interface.objects import SnapshotView
from tests.functional.test_lvm_real import (device_mapper_available, driver,  # noqa: F401
                                            loop_vg, lv_sizes, volume)

TAG = "blockmgr-revert-0a1b2c3d-0000-4000-8000-000000000000"


def test_revert_tags_round_trip_through_lvm2(loop_vg, driver):  # noqa: F811
    vol = volume(1)
    driver.create_volume(vol)
    driver.lvm.add_tag(vol.name, TAG)
    assert driver._lvs()[vol.name].tags == (TAG,)
    driver.lvm.add_tag(vol.name, "other")
    assert set(driver._lvs()[vol.name].tags) == {TAG, "other"}
    driver.lvm.delete_tag(vol.name, TAG)
    assert driver._lvs()[vol.name].tags == ("other",)


def test_revert_without_device_mapper_is_unsupported_and_changes_nothing(loop_vg,  # noqa: F811
                                                                         driver):
    if device_mapper_available():
        pytest.skip("device-mapper is available: the revert would run")
    vol = volume(1)
    driver.create_volume(vol)
    before = lv_sizes(loop_vg)
    snap = SnapshotView(id="0a1b2c3d-0000-4000-8000-000000000001", volume_id=vol.id,
                        volume_size=1, volume_name=vol.name)
    with pytest.raises(exception.Unsupported, match="device-mapper"):
        driver.revert_to_snapshot(None, vol, snap)
    assert lv_sizes(loop_vg) == before
    assert driver._lvs()[vol.name].tags == ()
