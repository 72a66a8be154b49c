"""The in-memory fake passes the whole conformance suite (every interface, with data I/O)."""

import pytest

from blockmgr.testing.conformance import DriverConformanceTests
from blockmgr.testing.fake_driver import FakeDriver, FakeForeignObjects, FakeVolumeIO


class TestFakeDriverConformance(DriverConformanceTests):

    @pytest.fixture
    def driver(self):
        driver = FakeDriver(None, "fake", host="node1@fake")
        driver.do_setup(None)
        driver.check_for_setup_error()
        return driver

    @pytest.fixture
    def volume_io(self, driver):
        return FakeVolumeIO(driver)

    @pytest.fixture
    def foreign_object(self, driver):
        return FakeForeignObjects(driver)
