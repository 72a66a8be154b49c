"""A stateful property test of the whole stack: random operations through the client
library of an all-in-one node (scheduler and a loopback worker on the in-process broker,
SQLite), with injected driver failures, checked after every step.

Invariants, once the node is quiet (no open request):

* no volume or snapshot is left in a transitional status;
* quota usage equals what the tables say (``QuotaEngine.check``);
* the worker's allocated capacity equals the sum of its live volumes;
* no data the user imported (a file with a marker of its own) is gone, unless the API
  accepted the deletion of the volume that holds it;
* an attached volume is never deleted, unmanaged or extended (the API refuses).

CI runs a fixed budget; run it longer with, e.g.::

    BLOCKMGR_PROPERTY_EXAMPLES=50 BLOCKMGR_PROPERTY_STEPS=40 \\
        .venv/bin/python -m pytest tests/functional/test_stack_properties.py -q
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
import sqlalchemy as sa

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes,  # noqa: E402
                                 invariant, rule)

from blockmgr import allinone  # noqa: E402
from blockmgr import conf as bm_conf  # noqa: E402
from blockmgr import context as bm_context  # noqa: E402
from blockmgr import exception  # noqa: E402
from blockmgr import quota as bm_quota  # noqa: E402
from blockmgr import states  # noqa: E402
from blockmgr.db import models  # noqa: E402
from blockmgr.db import requests as db_requests  # noqa: E402

pytestmark = [pytest.mark.functional, pytest.mark.slow]

EXAMPLES = int(os.environ.get("BLOCKMGR_PROPERTY_EXAMPLES", "4"))
STEPS = int(os.environ.get("BLOCKMGR_PROPERTY_STEPS", "14"))
GiB = 1024 ** 3
CTX = bm_context.RequestContext(project_id="p-prop", user_id="u-prop")
ADMIN = bm_context.RequestContext(project_id="p-prop", user_id="admin", is_admin=True)
QUIET_TIMEOUT = 30.0


class StackMachine(RuleBasedStateMachine):
    volumes = Bundle("volumes")
    snapshots = Bundle("snapshots")

    def __init__(self):
        super().__init__()
        self.state_dir = os.path.join(_TMP[0], uuid.uuid4().hex[:8])
        conf = bm_conf.new_config(args=[], validate=False)
        conf.set_override("transport_url", allinone.private_transport_url())
        for name in ("volumes", "gigabytes", "snapshots"):
            conf.set_override(name, -1, group="quota")
        conf.set_override("sweep_interval", 0.5, group="requests")
        conf.set_override("retry_delay", 0.1, group="requests")
        self.conf = allinone.embedded_config(conf, self.state_dir)
        # Volume files, not loop devices, even as root: a run leaves no device behind.
        self.conf.set_override("loopback_attach", "file", group=allinone.EMBEDDED_BACKEND)
        self.node = allinone.AllInOne(self.conf)
        assert self.node.start(ready_timeout=60)
        self.client = self.node.client
        backend = self.node.volumes.backends[0]
        self.manager = backend.manager
        self.directory = backend.driver.directory
        #: marker -> volume id holding it (None: not managed yet, or unmanaged)
        self.imported: dict[bytes, str | None] = {}
        #: markers whose volume the API accepted to delete
        self.released: set[bytes] = set()
        self.armed_failure = False

    def teardown(self):
        try:
            self.node.stop(grace=5)
        finally:
            self.conf.reset()

    # --- helpers -------------------------------------------------------------------------

    def _quiet(self):
        deadline = time.monotonic() + QUIET_TIMEOUT
        while time.monotonic() < deadline:
            with self.node.db.reader() as session:
                open_requests = session.execute(sa.select(sa.func.count()).select_from(
                    models.Request).where(models.Request.state.in_(db_requests.OPEN))).scalar()
            if not open_requests:
                return
            time.sleep(0.02)
        raise AssertionError("requests still open after %.0f s" % QUIET_TIMEOUT)

    def _status(self, model, resource_id):
        with self.node.db.reader() as session:
            row = session.get(model, resource_id)
            return None if row is None or row.deleted else row.status

    def _try(self, call, what: str = "call"):
        """Run an API call; a refusal (4xx-like BlockmgrError) is a valid outcome. Outcomes
        are counted in :data:`OUTCOMES` (printed at the end: ``pytest -s``)."""
        try:
            result = call()
            OUTCOMES["%s: accepted" % what] = OUTCOMES.get("%s: accepted" % what, 0) + 1
            return result
        except (exception.Invalid, exception.NotFound, exception.Conflict,
                exception.QuotaError) as exc:
            key = "%s: refused (%s)" % (what, type(exc).__name__)
            OUTCOMES[key] = OUTCOMES.get(key, 0) + 1
            return exc
        finally:
            self._quiet()

    # --- rules ---------------------------------------------------------------------------

    @rule(target=volumes, size=st.integers(1, 2))
    def create(self, size):
        row = self._try(lambda: self.client.volumes.create_volume(CTX, size), "create")
        return row["id"] if isinstance(row, dict) else "none"

    @rule(target=volumes, source=volumes)
    def clone(self, source):
        row = self._try(lambda: self.client.volumes.create_volume(CTX, source_volid=source),
                        "clone")
        return row["id"] if isinstance(row, dict) else "none"

    @rule(target=volumes)
    def manage(self):
        marker = uuid.uuid4().bytes
        name = "user-%s" % marker.hex()[:8]
        with open(os.path.join(self.directory, name), "wb") as f:
            f.truncate(GiB)
            f.write(marker)
        self.imported[marker] = None
        row = self._try(lambda: self.client.volumes.manage_existing(
            CTX, self.manager.host, {"source-name": name}), "manage")
        if isinstance(row, dict):
            if self._status(models.Volume, row["id"]) not in ("available",):
                return "none"
            self.imported[marker] = row["id"]
            return row["id"]
        return "none"

    @rule(target=snapshots, volume=volumes)
    def snapshot(self, volume):
        row = self._try(lambda: self.client.snapshots.create_snapshot(CTX, volume), "snapshot")
        return row["id"] if isinstance(row, dict) else "none"

    @rule(snapshot=consumes(snapshots))
    def delete_snapshot(self, snapshot):
        self._try(lambda: self.client.snapshots.delete_snapshot(CTX, snapshot), "delete snapshot")

    @rule(volume=volumes, grow=st.integers(1, 2))
    def extend(self, volume, grow):
        before = self._size(volume)
        self._try(lambda: self.client.volumes.extend_volume(CTX, volume, (before or 0) + grow),
                  "extend")

    def _size(self, volume):
        with self.node.db.reader() as session:
            row = session.get(models.Volume, volume)
            return None if row is None else row.size

    @rule(volume=volumes, cascade=st.booleans())
    def delete(self, volume, cascade):
        status = self._status(models.Volume, volume)
        result = self._try(lambda: self.client.volumes.delete_volume(CTX, volume,
                                                                     cascade=cascade),
                           "delete")
        if status == "in-use":
            assert isinstance(result, Exception), "an attached volume was deleted"
        if isinstance(result, dict):
            for marker, holder in self.imported.items():
                if holder == volume:
                    self.released.add(marker)

    @rule(volume=volumes)
    def unmanage(self, volume):
        status = self._status(models.Volume, volume)
        result = self._try(lambda: self.client.volumes.unmanage(ADMIN, volume), "unmanage")
        if status == "in-use":
            assert isinstance(result, Exception), "an attached volume was unmanaged"
        if isinstance(result, dict):
            for marker, holder in self.imported.items():
                if holder == volume:
                    self.imported[marker] = None   # the data stays, under another name

    @rule(volume=volumes)
    def attach(self, volume):
        attachments = self.client.attachments

        def go():
            made = attachments.create(CTX, volume, instance_uuid=str(uuid.uuid4()))
            attachment_id = made.get("id") or made.get("attachment", {}).get("id")
            attachments.update(CTX, attachment_id, {"host": "client", "initiator": None,
                                                    "platform": "x86_64", "os_type": "linux"})
            attachments.complete(CTX, attachment_id)
            return made

        self._try(go, "attach")

    @rule(volume=volumes)
    def detach(self, volume):
        found = self._try(lambda: self.client.attachments.list_for_volume(CTX, volume),
                          "list attachments")
        for attachment in found if isinstance(found, list) else []:
            if isinstance(attachment, dict):
                self._try(lambda a=attachment: self.client.attachments.delete(CTX, a["id"]),
                          "detach")

    @rule(volume=volumes)
    def reset(self, volume):
        status = self._status(models.Volume, volume)
        if status and status.startswith("error"):
            self._try(lambda: self.client.admin.reset_status(ADMIN, "volume", volume,
                                                             "available"), "reset")

    @rule()
    def arm_driver_failure(self):
        """The next create on the backend fails once (a backend error)."""
        driver = self.manager.driver
        original = driver.create_volume

        def fail_once(volume):
            driver.create_volume = original
            raise exception.VolumeBackendAPIException(reason="injected backend failure")

        driver.create_volume = fail_once

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def nothing_transitional(self):
        with self.node.db.reader() as session:
            stuck = session.execute(sa.select(models.Volume.id, models.Volume.status).where(
                models.Volume.deleted.is_(False),
                models.Volume.status.in_(sorted(states.TRANSITIONAL["volume"])))).all()
            stuck += session.execute(sa.select(models.Snapshot.id, models.Snapshot.status)
                                     .where(models.Snapshot.deleted.is_(False),
                                            models.Snapshot.status.in_(sorted(
                                                states.TRANSITIONAL["snapshot"])))).all()
        assert not stuck, stuck

    @invariant()
    def quota_matches_the_tables(self):
        assert bm_quota.QuotaEngine(self.node.db, self.conf).check() == []

    @invariant()
    def allocated_capacity_is_the_live_volumes(self):
        with self.node.db.reader() as session:
            live = session.execute(sa.select(sa.func.coalesce(sa.func.sum(models.Volume.size),
                                                              0)).where(
                models.Volume.deleted.is_(False), models.Volume.host.is_not(None))).scalar()
        assert sum(self.manager.capacity.snapshot().values()) == live

    @invariant()
    def imported_data_survives(self):
        present = set()
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                present.add(f.read(16))
        lost = [m.hex() for m in self.imported if m not in present and m not in self.released]
        assert not lost, lost


_TMP: list[str] = []
#: "rule: accepted|refused (error)" -> count over the whole run.
OUTCOMES: dict[str, int] = {}


@pytest.fixture
def property_tmp(tmp_path):
    _TMP[:] = [str(tmp_path)]
    yield tmp_path


def test_random_operations_keep_every_invariant(property_tmp):
    StackMachine.TestCase.settings = settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck))
    OUTCOMES.clear()
    StackMachine.TestCase("runTest").runTest()
    print("\noutcomes: %s" % ", ".join("%s %d" % kv for kv in sorted(OUTCOMES.items())))
    # the run exercised the stack, not only its refusals
    assert OUTCOMES.get("create: accepted", 0) > 0
