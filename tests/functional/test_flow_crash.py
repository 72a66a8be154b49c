"""Crash tests: kill a worker at every task boundary of a flow, restart, check invariants.

Flows here: create_volume, manage_existing, manage_existing_snapshot (the delete / snapshot /
extend flows are in ``test_flow_crash_single.py``, the group flows in
``test_flow_crash_groups.py``). The boundaries are generated from each flow's definition
(``faults.boundaries(get_flow())``), never listed by hand; every case runs on SQLite, MariaDB
and PostgreSQL (``db_backend``). The machinery -- a forked worker dying by ``os._exit`` at the
boundary, recovery in a fresh manager, the shared invariants -- is ``crash_harness.py``.

A new flow module gets crash tests by adding it to one of the three ``FLOWS`` tables;
:func:`test_every_flow_module_has_crash_tests` fails until it is.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import pytest

import blockmgr.flows
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import create_volume, manage_existing, manage_existing_snapshot
from blockmgr.volume import recovery
from tests.functional import crash_harness as harness
from tests.functional.crash_harness import (GiB, PROJECT, crash_databases,  # noqa: F401
                                            crash_world)

pytestmark = [pytest.mark.functional, pytest.mark.slow]

FLOWS = {
    "create_volume": create_volume.get_flow(),
    "manage_existing": manage_existing.get_flow(),
    "manage_existing_snapshot": manage_existing_snapshot.get_flow(),
}
CASES = harness.cases(FLOWS)


def _prepare(manager, op):
    """Rows (and backend objects) as the API leaves them before casting ``op``; returns the
    endpoint's arguments after the context and what must survive (the imported data)."""
    directory = manager.driver.directory
    with manager.db.writer() as session:
        size = 0 if op == "manage_existing" else 2
        status = "managing" if op == "manage_existing" else "creating"
        vol = repository.create(session, models.Volume, status=status, size=size,
                                host=manager.host + "#lb", project_id=PROJECT)
        manager.quota.consume(session, PROJECT, volumes=1, gigabytes=size)
        vid = vol.id
    if op == "create_volume":
        return [vid], {}
    if op == "manage_existing":
        with open(os.path.join(directory, "foreign-lv"), "wb") as f:
            f.truncate(GiB + 1)
        return [vid, {"source-name": "foreign-lv"}], {"foreign": "foreign-lv", "volume": vid}
    with manager.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, vid),
                          status="available")
        snap = repository.create(session, models.Snapshot, volume_id=vid, status="creating",
                                 volume_size=2, project_id=PROJECT)
        manager.quota.consume(session, PROJECT, snapshots=1, gigabytes=2)
        sid = snap.id
    open(os.path.join(directory, "volume-%s" % vid), "wb").truncate(2 * GiB)
    foreign = "volume-%s@imported" % vid
    open(os.path.join(directory, foreign), "wb").truncate(GiB)
    return [sid, {"source-name": foreign}], {"foreign": foreign, "snapshot": sid}


def _assert_imported_data_kept_once(manager, facts):
    """The adopted object exists exactly once, never deleted: under its managed name when
    the manage finished, under the very name the user gave (``foreign``) when it was
    reverted -- never under an unmanaged name the user did not choose."""
    files = set(os.listdir(manager.driver.directory))
    kept = [name for name in files if name == facts["foreign"]
            or name.startswith("unmanaged-")
            or name == "volume-%s" % facts.get("volume")
            or name == "snapshot-%s" % facts.get("snapshot")
            or ("@" in name and name != facts["foreign"]
                and name.endswith(facts.get("snapshot", "\0")))]
    assert len(kept) == 1, files
    if "volume" in facts:
        model, resource_id, managed = models.Volume, facts["volume"], "volume-%s"
    else:
        model, resource_id, managed = models.Snapshot, facts["snapshot"], "snapshot-%s"
    with manager.db.reader() as session:
        status = repository.get(session, model, resource_id).status
    expected = managed % resource_id if status == "available" else facts["foreign"]
    assert kept == [expected], (status, files)


@pytest.mark.parametrize("op,spec", CASES, ids=[harness.case_id(*c) for c in CASES])
def test_crash_at_boundary_then_recover(crash_world, op, spec):  # noqa: F811
    args, facts = _prepare(crash_world.manager(), op)
    crash = harness.crash_worker(crash_world, spec, op, *args)

    manager, report = harness.recover(crash_world, crash)

    harness.assert_invariants(manager, crash, report)
    if "foreign" in facts:
        _assert_imported_data_kept_once(manager, facts)


def test_invariants_catch_a_crash_nobody_recovered(crash_world):  # noqa: F811
    """The proof can fail: right after a crash between quota reserve and commit (before
    recovery) the volume is ``managing`` and the flow's reservation is live."""
    args, _facts = _prepare(crash_world.manager(), "manage_existing")
    spec = "after:" + manage_existing.ManageExistingTask().name
    crash = harness.crash_worker(crash_world, spec, "manage_existing", *args)
    manager = crash_world.manager()      # no init_host: nothing recovered
    unrecovered = recovery.RecoveryReport(resumed=sorted(crash.flow_ids))
    with pytest.raises(AssertionError, match="managing"):
        harness.assert_invariants(manager, crash, unrecovered)
    [flow_id] = crash.flow_ids
    assert manager.quota.reservations_of(flow_id) != []


def test_every_flow_module_has_crash_tests():
    """Every ``blockmgr.flows`` module with a ``get_flow`` is crash-tested by one of the
    three crash test modules (so a new flow cannot silently skip the proof)."""
    from tests.functional import test_flow_crash_groups, test_flow_crash_single

    covered = set()
    for module in (test_flow_crash_single, test_flow_crash_groups):
        covered |= {flow.name for flow in module.FLOWS.values()}
    covered |= {flow.name for flow in FLOWS.values()}
    expected = set()
    for info in pkgutil.iter_modules(blockmgr.flows.__path__):
        module = importlib.import_module("blockmgr.flows." + info.name)
        if callable(getattr(module, "get_flow", None)):
            expected.add(module.get_flow().name)
    assert expected - covered == set()
