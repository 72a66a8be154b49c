"""The all-in-one node's embedded defaults."""

from __future__ import annotations

from blockmgr import allinone
from blockmgr import conf as bm_conf


def test_unnamed_node_gets_a_name_that_survives_a_hostname_change(tmp_path):
    conf = bm_conf.new_config(args=[])
    allinone.embedded_config(conf, str(tmp_path))
    assert conf.host == allinone.EMBEDDED_HOST
    assert conf.transport_url == allinone.EMBEDDED_TRANSPORT
    assert conf.enabled_backends == [allinone.EMBEDDED_BACKEND]


def test_what_the_operator_set_is_kept(tmp_path):
    config = tmp_path / "blockmgr.conf"
    config.write_text("[DEFAULT]\nhost = storage7\n"
                      "transport_url = rabbit://u:p@broker:5672/\n")
    conf = bm_conf.new_config(args=["--config-file", str(config)])
    allinone.embedded_config(conf, str(tmp_path))
    assert conf.host == "storage7"
    assert conf.transport_url == "rabbit://u:p@broker:5672/"
