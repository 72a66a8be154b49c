"""A loopback driver whose ``create_volume`` can be made to fail or to take time, for the
end-to-end RPC tests (``test_rpc_e2e.py``). It is loaded by dotted path
(``volume_driver = tests.functional.e2e_driver.FlakyLoopbackDriver``) in a real
``blockmgr-volume`` process, so the test steers it through the file system, not through
shared memory:

* ``e2e_fail_create_flag``: while a file exists at this path, every ``create_volume`` raises
  :class:`~blockmgr.exception.VolumeBackendAPIException` (a reschedulable failure), before
  anything is written. The test creates/removes the file to turn failures on and off.
* ``e2e_create_delay``: seconds each ``create_volume`` sleeps first, so that requests are
  still in flight when the test kills the worker.

Everything else is the real :class:`~blockmgr.drivers.loopback.driver.LoopbackDriver`.
"""

from __future__ import annotations

import os
import time

from oslo_config import cfg

from blockmgr import exception
from blockmgr.drivers.loopback.driver import LoopbackDriver

E2E_OPTS = [
    cfg.StrOpt("e2e_fail_create_flag",
               help="TEST ONLY. While a file exists at this path, create_volume fails with "
                    "VolumeBackendAPIException."),
    cfg.FloatOpt("e2e_create_delay", default=0.0, min=0.0,
                 help="TEST ONLY. Seconds every create_volume waits before creating."),
]


class FlakyLoopbackDriver(LoopbackDriver):
    """The loopback driver with a switchable create failure and a create delay."""

    @classmethod
    def list_opts(cls):
        return list(LoopbackDriver.list_opts()) + E2E_OPTS

    def create_volume(self, volume):
        delay = self.configuration.e2e_create_delay
        if delay:
            time.sleep(delay)
        flag = self.configuration.e2e_fail_create_flag
        if flag and os.path.exists(flag):
            raise exception.VolumeBackendAPIException(
                reason="create of %s refused on %s: test flag %s is set"
                % (volume.id, self.host, flag))
        return super().create_volume(volume)
