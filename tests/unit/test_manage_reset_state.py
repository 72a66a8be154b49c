"""``blockmgr-manage volume|snapshot reset-state``: the operator's way back from an error
status without the REST API; the reset clears the resource's open requests."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from oslo_config import cfg

from blockmgr.cmd import manage
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.db.session import Database


@pytest.fixture(autouse=True)
def _unregister_the_backend_section():
    """``manage.main`` registers ``[loop1]`` on the process-global config; later tests
    running other commands in this process would find its required options unset."""
    yield
    cfg.CONF.clear()   # oslo.config unregisters only from an unparsed config
    group = cfg.CONF._groups.get("loop1")   # oslo.config's registry of groups
    for info in list((group._opts if group else {}).values()):
        cfg.CONF.unregister_opt(info["opt"], group="loop1")


def _config(tmp_path):
    db_path = tmp_path / "m.sqlite"
    db = Database("sqlite:///%s" % db_path)
    db.create_schema()
    config = tmp_path / "blockmgr.conf"
    config.write_text("[DEFAULT]\nenabled_backends = loop1\n"
                      "[database]\nconnection = sqlite:///%s\n"
                      "[loop1]\nvolume_driver = loopback\nloopback_directory = %s\n"
                      % (db_path, tmp_path / "vols"))
    return db, str(config)


def test_reset_error_extending_volume_to_available_fails_its_requests(tmp_path, capsys):
    db, config = _config(tmp_path)
    with db.writer() as session:
        vid = repository.create(session, models.Volume, status="error_extending", size=1,
                                host="n1@loop1#loop1", project_id="p1").id
        db_requests.add(session, kind="volume", resource_id=vid, action="extend_volume",
                        arguments={"volume_id": vid}, context={}, target="n1@loop1")
    assert manage.main(["--config-file", config, "volume", "reset-state", "--state",
                        "available", "--attach-status", "detached", vid]) == 0
    out = capsys.readouterr().out
    assert "error_extending -> available" in out and "requests failed: " in out
    with db.reader() as session:
        assert repository.get(session, models.Volume, vid).status == "available"
        (state, result), = session.execute(sa.select(models.Request.state,
                                                     models.Request.result)).all()
    assert state == "failed" and "reset to available" in result


def test_reset_refuses_unknown_ids_and_flow_owned_statuses(tmp_path, capsys):
    db, config = _config(tmp_path)
    with db.writer() as session:
        vid = repository.create(session, models.Volume, status="error", size=1).id
        sid = repository.create(session, models.Snapshot, status="error_deleting",
                                volume_id=vid, volume_size=1).id
    assert manage.main(["--config-file", config, "volume", "reset-state", "--state",
                        "deleting", vid]) == 2
    assert "cannot be reset to 'deleting'" in capsys.readouterr().err
    assert manage.main(["--config-file", config, "volume", "reset-state", "--state",
                        "available", "8a1f0c1e-0000-4000-8000-000000000000"]) == 2
    assert "could not be found" in capsys.readouterr().err
    assert manage.main(["--config-file", config, "snapshot", "reset-state", "--state",
                        "available", sid]) == 0
    with db.reader() as session:
        assert repository.get(session, models.Snapshot, sid).status == "available"
        assert repository.get(session, models.Volume, vid).status == "error"
