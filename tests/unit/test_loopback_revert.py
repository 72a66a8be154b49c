"""Loopback driver: revert to snapshot replaces the volume file by a copy of the snapshot
file in one rename; the snapshot stays; a refusal or a failed copy changes nothing."""

from __future__ import annotations

import os

import pytest

from blockmgr import exception
from blockmgr.drivers.loopback import filecopy
from tests.unit.test_loopback_driver import (driver, losetup, path_of, read_at,  # noqa: F401
                                             snap, vol, write_at)

GiB = 1024 ** 3


def _volume_with_snapshot(driver):
    driver.create_volume(vol())
    write_at(path_of(driver, "volume-v1"), 4096, b"at-snapshot")
    driver.create_snapshot(snap())
    write_at(path_of(driver, "volume-v1"), 4096, b"later-write")
    write_at(path_of(driver, "volume-v1"), GiB - 7, b"tail-w!")


def _temp_files(driver):
    return [n for n in os.listdir(driver.directory) if n.startswith(".")]


def test_revert_gives_the_volume_the_snapshot_data_and_keeps_the_snapshot(driver):
    _volume_with_snapshot(driver)
    inode = os.stat(path_of(driver, "volume-v1")).st_ino
    assert driver.revert_to_snapshot(None, vol(), snap()) is None
    volume = path_of(driver, "volume-v1")
    assert read_at(volume, 4096, 11) == b"at-snapshot"
    assert read_at(volume, GiB - 7, 7) == bytes(7)
    assert os.path.getsize(volume) == GiB
    assert os.stat(volume).st_ino != inode            # a new file took the name
    assert read_at(path_of(driver, "snapshot-s1"), 4096, 11) == b"at-snapshot"
    assert os.stat(volume).st_blocks <= os.stat(path_of(driver, "snapshot-s1")).st_blocks
    assert _temp_files(driver) == []


def test_revert_twice_is_the_same_as_once_and_the_snapshot_is_independent(driver):
    _volume_with_snapshot(driver)
    driver.revert_to_snapshot(None, vol(), snap())
    write_at(path_of(driver, "volume-v1"), 4096, b"after-rever")
    assert read_at(path_of(driver, "snapshot-s1"), 4096, 11) == b"at-snapshot"
    driver.revert_to_snapshot(None, vol(), snap())
    assert read_at(path_of(driver, "volume-v1"), 4096, 11) == b"at-snapshot"


def test_missing_files_are_refused_and_nothing_changes(driver):
    _volume_with_snapshot(driver)
    with pytest.raises(exception.SnapshotNotFound):
        driver.revert_to_snapshot(None, vol(), snap("s9"))
    with pytest.raises(exception.VolumeNotFound):
        driver.revert_to_snapshot(None, vol("v9"), snap())
    assert not os.path.exists(path_of(driver, "volume-v9"))
    assert read_at(path_of(driver, "volume-v1"), 4096, 11) == b"later-write"


def test_an_attached_volume_is_busy_and_keeps_its_data(driver, losetup):
    _volume_with_snapshot(driver)
    losetup.attached["/dev/loop3"] = path_of(driver, "volume-v1")
    with pytest.raises(exception.VolumeIsBusy, match="/dev/loop3"):
        driver.revert_to_snapshot(None, vol(), snap())
    assert read_at(path_of(driver, "volume-v1"), 4096, 11) == b"later-write"


def test_a_failed_copy_leaves_the_volume_and_no_temp_file(driver, monkeypatch):
    _volume_with_snapshot(driver)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(filecopy, "sparse_copy", broken)
    monkeypatch.setattr(filecopy, "reflink", broken)
    with pytest.raises(OSError):
        driver.revert_to_snapshot(None, vol(), snap())
    assert read_at(path_of(driver, "volume-v1"), 4096, 11) == b"later-write"
    assert _temp_files(driver) == []


def test_a_snapshot_larger_than_the_volume_is_refused(driver):
    _volume_with_snapshot(driver)
    os.truncate(path_of(driver, "snapshot-s1"), 2 * GiB)
    with pytest.raises(exception.InvalidInput, match="smaller than its source"):
        driver.revert_to_snapshot(None, vol(), snap())
    assert read_at(path_of(driver, "volume-v1"), 4096, 11) == b"later-write"
