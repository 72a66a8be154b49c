"""Crash tests for the attachment flows: connect (an RPC call) and detach (a ledger request).

Same method as ``test_flow_crash.py`` (machinery in ``crash_harness.py``): every task
boundary of both flows from their definitions, a forked worker killed there, a fresh manager
recovering on SQLite, MariaDB and PostgreSQL. After recovery the shared invariants hold and
the operation finished: a connect leaves the attachment ``attaching`` with its connection
info and the volume ``attaching``; a detach leaves the attachment deleted as ``detached`` and
the volume ``available`` -- never a volume held by nobody, nor one freed while connected.
"""

from __future__ import annotations

import json

import pytest

from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import attachments
from blockmgr.interface.objects import VolumeView
from tests.functional import crash_harness as harness
from tests.functional.crash_harness import (CTX, PROJECT, crash_databases,  # noqa: F401
                                            crash_world)

pytestmark = [pytest.mark.functional, pytest.mark.slow]

FLOWS = {"connect_attachment": attachments.get_connect_flow(),
         "detach_volume": attachments.get_detach_flow()}
CASES = harness.cases(FLOWS)
CONNECTOR = {"host": "compute-1"}


def _prepare(manager, op):
    with manager.db.writer() as session:
        vol = repository.create(session, models.Volume, status="available", size=1,
                                host=manager.host + "#lb", project_id=PROJECT)
        manager.quota.consume(session, PROJECT, volumes=1, gigabytes=1)
        vid = vol.id
        att = repository.create(session, models.Attachment, volume_id=vid,
                                project_id=PROJECT, attach_status="reserved").id
        attachments.settle_volume(session, vid)
    with manager.db.reader() as session:
        manager.driver.create_volume(VolumeView.from_model(
            repository.get(session, models.Volume, vid)))
    if op == "connect_attachment":
        return [vid, att, CONNECTOR], vid, att
    manager.connect_attachment(CTX, vid, att, CONNECTOR)
    with manager.db.writer() as session:
        row = attachments.get_attachment(session, att)
        repository.update(session, row, attach_status="attached")
        repository.update(session, row, attach_status="detaching")
        attachments.settle_volume(session, vid)
    return [vid, att, False], vid, att


@pytest.mark.parametrize("op,spec", CASES, ids=[harness.case_id(*c) for c in CASES])
def test_crash_at_boundary_then_recover(crash_world, op, spec):  # noqa: F811
    args, vid, att = _prepare(crash_world.manager(), op)
    crash = harness.crash_worker(crash_world, spec, op, *args)

    restarted, report = harness.recover(crash_world, crash)

    harness.assert_invariants(restarted, crash, report)
    with restarted.db.reader() as session:
        volume = repository.get(session, models.Volume, vid)
        row = session.get(models.Attachment, att)
        if op == "connect_attachment":
            assert (volume.status, volume.attach_status) == ("attaching", "attaching")
            assert row.attach_status == "attaching" and not row.deleted
            info = json.loads(row.connection_info)
            assert info["driver_volume_type"] == "local" and info["data"]["device_path"]
        else:
            assert (volume.status, volume.attach_status) == ("available", "detached")
            assert row.deleted and row.attach_status == "detached"
