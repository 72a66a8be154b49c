"""The loopback reference driver: volumes are sparse files, attached as loop devices.

It runs on any Linux box (no root needed except to attach loop devices) and does real I/O,
which makes it the backend of the all-in-one mode and the driver the conformance suite is
proven on. Modules:

- :mod:`.options`     the driver's configuration options
- :mod:`.layout`      file naming in the volume directory and durable file operations
- :mod:`.filecopy`    reflink (FICLONE) and sparse-aware (SEEK_DATA/SEEK_HOLE) copies
- :mod:`.loopdev`     loop devices through ``losetup`` (the command chokepoint)
- :mod:`.capacity`    the capacity report
- :mod:`.driver`      :class:`~.driver.LoopbackDriver`, which ties them together

See ``docs/driver-loopback.md`` for the operator's view.
"""
