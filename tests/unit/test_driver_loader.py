"""Driver discovery: entry-point names, dotted paths, and helpful errors for unknown names."""

from __future__ import annotations

from importlib import metadata

import pytest

from blockmgr import exception
from blockmgr.drivers import loader
from blockmgr.interface import VolumeDriver
from blockmgr.testing.fake_driver import FakeDriver


def test_reference_drivers_are_installed_entry_points():
    assert {"loopback", "lvm"} <= set(loader.known_driver_names())


@pytest.mark.parametrize("name", ["loopback", "lvm"])
def test_entry_point_name_loads_a_volume_driver_class(name):
    cls = loader.find_driver_class(name)
    assert isinstance(cls, type) and issubclass(cls, VolumeDriver)


def test_unknown_name_fails_with_the_known_names():
    with pytest.raises(exception.ConfigurationError) as info:
        loader.find_driver_class("no-such-driver", section="backend1")
    message = str(info.value)
    assert "[backend1] volume_driver" in message
    assert "unknown driver 'no-such-driver'" in message
    assert "loopback" in message and "lvm" in message


def test_dotted_path_loads_the_class():
    assert loader.find_driver_class("blockmgr.testing.fake_driver.FakeDriver") is FakeDriver


@pytest.mark.parametrize("path, fragment", [
    ("blockmgr.testing.fake_driver.NoSuchClass", "NoSuchClass"),
    ("no_such_module_xyz.Driver", "no_such_module_xyz"),
])
def test_dotted_path_that_does_not_import_says_why(path, fragment):
    with pytest.raises(exception.ConfigurationError, match="cannot import") as info:
        loader.find_driver_class(path)
    assert fragment in str(info.value)


def test_fake_driver_is_never_an_entry_point():
    entry_points = metadata.entry_points(group=loader.NAMESPACE)
    assert all("blockmgr.testing" not in ep.value for ep in entry_points)
    assert FakeDriver not in [cls for _name, cls in loader.known_driver_classes()]
