"""An all-in-one node (scheduler and a loopback worker on the in-process broker) on a fresh
database of a real server, for functional tests of the REST layer."""

from __future__ import annotations

import contextlib

from blockmgr import allinone
from blockmgr import conf as bm_conf
from tests.conftest import create_database


@contextlib.contextmanager
def all_in_one_on(db_backend: str, tmp_path):
    """A started :class:`~blockmgr.allinone.AllInOne` on a new ``db_backend`` database,
    stopped and its database dropped afterwards."""
    url, drop = create_database(db_backend, tmp_path)
    conf = bm_conf.new_config(args=[])
    conf.set_override("state_path", str(tmp_path))
    conf.set_override("host", "node1")
    conf.set_override("transport_url", allinone.private_transport_url())
    conf.set_override("report_interval", 1)
    conf.set_override("startup_wait", 0, group="scheduler")
    conf.set_override("connection", url, group="database")
    allinone.embedded_config(conf)
    node = allinone.AllInOne(conf)
    assert node.start(ready_timeout=30), "the loopback backend did not come up"
    try:
        yield node
    finally:
        node.stop(grace=5)
        node.db.dispose()
        conf.reset()
        drop()
