"""``blockmgr-api`` in a distributed deployment: the REST daemon, a scheduler and a volume
worker as separate processes on RabbitMQ (a private vhost) and MariaDB.

The same REST application as ``blockmgr serve``; here the client library behind it casts
through the broker to daemons in other processes.
"""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.conftest import require_service
from tests.functional.daemons import Cluster
from tests.functional.daemons import DaemonProcess
from tests.functional.daemons import private_vhost
from tests.functional.daemons import free_port
from tests.functional.daemons import start_api
from tests.functional.daemons import wait_for

pytestmark = [pytest.mark.functional]

PROJECT = "p-api"
HEADERS = {"X-User-Id": "u-api", "X-Project-Id": PROJECT}


@pytest.mark.parametrize("db_backend", ["mysql"])
def test_blockmgr_api_over_rabbitmq_and_mariadb(db_url, tmp_path):
    require_service("rabbitmq")
    with private_vhost() as vhost, Cluster(tmp_path, db_url, hosts={"a": {}},
                                           rabbit_url=vhost) as cluster:
        cluster.start()
        api, url = start_api(cluster, tmp_path)
        with httpx.Client(base_url="%s/v3/%s" % (url, PROJECT), headers=HEADERS,
                          timeout=30) as http:
            response = http.post("/volumes", json={"volume": {"size": 1, "name": "d"}})
            assert response.status_code == 202, response.text
            volume_id = response.json()["volume"]["id"]

            def settled():
                status = http.get("/volumes/%s" % volume_id).json()["volume"]["status"]
                return status if status != "creating" else None

            assert wait_for(settled, 60, 0.1) == "available", cluster.logs()
            assert (cluster.directory("a") / ("volume-%s" % volume_id)).exists()
            assert http.delete("/volumes/%s" % volume_id).status_code == 202
            assert wait_for(lambda: http.get("/volumes/%s" % volume_id).status_code == 404,
                            60, 0.1), cluster.logs()

        api.proc.send_signal(signal.SIGTERM)
        assert api.proc.wait(30) == 0, api.log_text()
        assert "blockmgr-api stopped" in api.log_text()


@pytest.mark.parametrize("db_backend", ["mysql"])
def test_blockmgr_api_refuses_a_database_without_schema(db_url, tmp_path):
    config = tmp_path / "api.conf"
    config.write_text("[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/\n"
                      "log_file = %s\n[database]\nconnection = %s\n[api]\nbind_port = %d\n"
                      % (tmp_path / "api.log", db_url, free_port()))
    api = DaemonProcess("blockmgr-api", config, tmp_path / "api.log").start()
    try:
        assert api.proc.wait(60) == 1
        assert "blockmgr-manage --config-file ... db sync" in api.log_text()
    finally:
        api.kill()
