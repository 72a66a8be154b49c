"""Tools for driver authors and for blockmgr's own tests.

- :mod:`blockmgr.testing.conformance`: the behavioural conformance suite a driver author runs
  with pytest against their own driver (needs pytest; imported on demand).
- :mod:`blockmgr.testing.fake_driver`: :class:`~blockmgr.testing.fake_driver.FakeDriver`, an
  in-memory driver implementing every interface, for flow tests. Never a default backend.
"""

from blockmgr.testing.fake_driver import (FakeDriver, FakeForeignObjects,  # noqa: F401
                                          FakeVolumeIO)
