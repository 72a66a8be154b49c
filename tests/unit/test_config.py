"""Configuration: defaults, the generated sample, and bad input failing at start.

Every bad-input case must raise :class:`ConfigurationError` naming the section and the option,
before anything else runs.
"""

from __future__ import annotations

import ast
import difflib
import pathlib
import re
import subprocess
import sys

import pytest
from oslo_config import cfg

from blockmgr import conf as bm_conf
from blockmgr import exception
from blockmgr.conf import validation
from blockmgr.drivers import loader

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATOR_CONF = REPO_ROOT / "etc" / "blockmgr" / "blockmgr-config-generator.conf"
SAMPLE = REPO_ROOT / "etc" / "blockmgr" / "blockmgr.conf.sample"

TEST_DRIVER = "%s.ConfigTestDriver" % __name__


class ConfigTestDriver:
    """Just enough of a driver class for config loading: its options, nothing else."""

    @staticmethod
    def list_opts():
        return [cfg.StrOpt("test_pool", default="pool0", help="Pool of the test backend.")]


class RenamedOptionDriver:
    """A driver whose option was renamed: the old name still works in its backend section."""

    @staticmethod
    def list_opts():
        return [cfg.StrOpt("test_pool", default="pool0", deprecated_name="old_pool",
                           help="Pool of the test backend.")]


RENAMED_DRIVER = "%s.RenamedOptionDriver" % __name__


@pytest.fixture
def load(tmp_path):
    """Write ``text`` as the only config file and load it through ``new_config``."""
    loaded = []

    def _load(text: str, **kwargs) -> cfg.ConfigOpts:
        path = tmp_path / ("blockmgr-%d.conf" % len(loaded))
        path.write_text("[DEFAULT]\nstate_path = %s\n" % tmp_path + text)
        config = bm_conf.new_config(args=["--config-file", str(path)], **kwargs)
        loaded.append(config)
        return config

    yield _load
    for config in loaded:
        config.reset()


def _config_error(load, text: str) -> exception.ConfigurationError:
    with pytest.raises(exception.ConfigurationError) as info:
        load(text)
    return info.value


# --- good input -----------------------------------------------------------------------------

def test_defaults_need_no_config_file():
    config = bm_conf.new_config(args=[])
    assert config.enabled_backends == []
    assert config.database.connection.startswith("sqlite:///")
    assert config.database.connection.endswith("/blockmgr.sqlite")
    assert config.quota.volumes == 10
    assert config.quota.per_volume_gigabytes == -1


def test_values_from_file_are_used(load):
    config = load("host = node-1\n[quota]\nvolumes = 3\ngigabytes = -1\n")
    assert config.host == "node-1"
    assert config.quota.volumes == 3
    assert config.quota.gigabytes == -1


def test_oslo_log_options_are_known(load):
    config = load("debug = true\nlog_file = /var/log/blockmgr/blockmgr.log\n"
                  "use_stderr = false\n")
    assert config.debug is True
    assert config.log_file == "/var/log/blockmgr/blockmgr.log"


def test_backend_section_gets_generic_and_driver_options(load):
    config = load("enabled_backends = fast\n[fast]\nvolume_driver = %s\n"
                  "reserved_percentage = 10\ntest_pool = gold\n" % TEST_DRIVER)
    assert config.fast.volume_driver == TEST_DRIVER
    assert config.fast.reserved_percentage == 10
    assert config.fast.max_over_subscription_ratio == 20.0
    assert config.fast.test_pool == "gold"


def test_deprecated_option_names_are_accepted(load):
    config = load("logfile = /var/log/blockmgr/legacy.log\n")  # oslo.log's old name
    assert config.log_file == "/var/log/blockmgr/legacy.log"


def test_deprecated_name_of_a_driver_option_is_accepted_in_its_backend_section(load):
    config = load("enabled_backends = fast\n[fast]\nvolume_driver = %s\nold_pool = gold\n"
                  % RENAMED_DRIVER)
    assert config.fast.test_pool == "gold"


def test_deprecated_name_is_unknown_where_its_option_is_not_registered(load):
    err = _config_error(load, "old_pool = gold\nenabled_backends = fast\n[fast]\n"
                              "volume_driver = %s\n" % RENAMED_DRIVER)
    assert (err.kwargs["section"], err.kwargs["option"]) == ("DEFAULT", "old_pool")
    assert "unknown option" in str(err)


def test_validation_reads_no_private_oslo_config_attribute():
    """Only oslo.config's public API: no ``obj._name`` access in the module."""
    tree = ast.parse(pathlib.Path(validation.__file__).read_text())
    private = sorted({node.attr for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr.startswith("_")
                      and not node.attr.startswith("__")})
    assert private == []


def test_library_namespaces_are_those_of_the_sample_generator():
    namespaces = re.findall(r"^namespace = (\S+)$", GENERATOR_CONF.read_text(), re.M)
    assert set(namespaces) - {"blockmgr"} == set(validation.LIBRARY_OPT_NAMESPACES)


def test_library_sections_are_left_to_their_library(load):
    load("[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 30\n")


def test_files_of_config_dir_are_validated_too(tmp_path):
    conf_dir = tmp_path / "blockmgr.conf.d"
    conf_dir.mkdir()
    (conf_dir / "10-quota.conf").write_text("[quota]\nvolumes = 7\n")
    assert bm_conf.new_config(args=["--config-dir", str(conf_dir)]).quota.volumes == 7

    (conf_dir / "20-typo.conf").write_text("[quota]\nvolumez = 7\n")
    with pytest.raises(exception.ConfigurationError, match=r"\[quota\] volumez"):
        bm_conf.new_config(args=["--config-dir", str(conf_dir)])


# --- bad input ------------------------------------------------------------------------------

def test_unknown_option_in_known_section_names_section_and_option(load):
    err = _config_error(load, "[quota]\nvolumez = 3\n")
    assert (err.kwargs["section"], err.kwargs["option"]) == ("quota", "volumez")
    assert str(err) == "Configuration error in [quota] volumez: unknown option"


def test_unknown_option_in_default_section(load):
    err = _config_error(load, "enabled_backend = lvm-1\n")
    assert (err.kwargs["section"], err.kwargs["option"]) == ("DEFAULT", "enabled_backend")


def test_unknown_section_is_named_with_a_hint(load):
    err = _config_error(load, "[qouta]\nvolumes = 3\n")
    assert err.kwargs["section"] == "qouta"
    assert "unknown section" in str(err)
    assert "enabled_backends" in str(err)


def test_backend_section_that_is_not_enabled_is_unknown(load):
    err = _config_error(load, "[lvm-1]\nvolume_driver = lvm\n")
    assert err.kwargs["section"] == "lvm-1"
    assert "unknown section" in str(err)


@pytest.mark.parametrize("text, option, fragment", [
    ("[quota]\nvolumes = abc\n", "volumes", "abc"),
    ("[quota]\nsnapshots = -5\n", "snapshots", "-5"),
    ("[quota]\nno_snapshot_gb_quota = maybe\n", "no_snapshot_gb_quota", "maybe"),
    ("[quota]\nreservation_expire = 0\n", "reservation_expire", "0"),
])
def test_invalid_value_names_section_option_and_value(load, text, option, fragment):
    err = _config_error(load, text)
    assert (err.kwargs["section"], err.kwargs["option"]) == ("quota", option)
    assert "invalid value" in str(err)
    assert fragment in str(err)


def test_invalid_value_in_backend_section(load):
    err = _config_error(load, "enabled_backends = fast\n[fast]\nvolume_driver = %s\n"
                              "reserved_percentage = 150\n" % TEST_DRIVER)
    assert (err.kwargs["section"], err.kwargs["option"]) == ("fast", "reserved_percentage")
    assert str(err) == ("Configuration error in [fast] reserved_percentage: invalid value "
                        "'150': Should be less than or equal to 100")


def test_unknown_option_in_backend_section(load):
    err = _config_error(load, "enabled_backends = fast\n[fast]\nvolume_driver = %s\n"
                              "test_pol = gold\n" % TEST_DRIVER)
    assert (err.kwargs["section"], err.kwargs["option"]) == ("fast", "test_pol")


def test_enabled_backend_without_volume_driver(load):
    err = _config_error(load, "enabled_backends = fast\n[fast]\nreserved_percentage = 5\n")
    assert (err.kwargs["section"], err.kwargs["option"]) == ("fast", "volume_driver")
    assert "does not set volume_driver" in str(err)


def test_enabled_backend_without_any_section(load):
    err = _config_error(load, "enabled_backends = fast\n")
    assert (err.kwargs["section"], err.kwargs["option"]) == ("fast", "volume_driver")


def test_unknown_driver_name_lists_the_known_ones(load):
    err = _config_error(load, "enabled_backends = fast\n[fast]\nvolume_driver = nosuch\n")
    assert (err.kwargs["section"], err.kwargs["option"]) == ("fast", "volume_driver")
    assert "unknown driver 'nosuch'" in str(err)
    assert "known drivers:" in str(err)
    for name in loader.known_driver_names():
        assert name in str(err)


def test_driver_path_that_does_not_import(load):
    err = _config_error(load, "enabled_backends = fast\n[fast]\n"
                              "volume_driver = blockmgr.no_such_module.Driver\n")
    assert (err.kwargs["section"], err.kwargs["option"]) == ("fast", "volume_driver")
    assert "cannot import 'blockmgr.no_such_module.Driver'" in str(err)


def test_backend_listed_twice(load):
    err = _config_error(load, "enabled_backends = fast,fast\n[fast]\nvolume_driver = %s\n"
                        % TEST_DRIVER)
    assert (err.kwargs["section"], err.kwargs["option"]) == ("DEFAULT", "enabled_backends")
    assert "listed twice" in str(err)


def test_backend_named_like_a_static_section(load):
    err = _config_error(load, "enabled_backends = quota\n")
    assert (err.kwargs["section"], err.kwargs["option"]) == ("DEFAULT", "enabled_backends")
    assert "reserved section name" in str(err)


# --- generated sample -----------------------------------------------------------------------

def test_committed_sample_config_is_up_to_date(tmp_path):
    generated = tmp_path / "blockmgr.conf.sample"
    generator = pathlib.Path(sys.executable).with_name("oslo-config-generator")
    subprocess.run([str(generator), "--config-file", str(GENERATOR_CONF),
                    "--output-file", str(generated)],
                   check=True, capture_output=True, timeout=120, cwd=REPO_ROOT)
    expected = generated.read_text()
    committed = SAMPLE.read_text() if SAMPLE.exists() else ""
    if committed != expected:
        diff = "".join(difflib.unified_diff(
            committed.splitlines(True), expected.splitlines(True),
            "etc/blockmgr/blockmgr.conf.sample (committed)", "generated", n=1))
        pytest.fail("etc/blockmgr/blockmgr.conf.sample is stale: an option changed. "
                    "Regenerate it with `make sample-config` and commit it.\n" + diff[:4000])


def test_sample_config_documents_every_group():
    text = SAMPLE.read_text()
    for section in ("[DEFAULT]", "[database]", "[quota]", "[backend]"):
        assert section in text
    assert "#debug = false" in text  # oslo.log's options are part of the sample


def test_commands_without_backends_accept_a_config_that_lists_backends(tmp_path, capsys):
    """``quota``/``driver`` commands must work on the production config file, whose backend
    sections they do not load (regression: they failed with 'unknown section')."""
    from blockmgr.cmd import manage
    from blockmgr.db.session import Database

    db_path = tmp_path / "q.sqlite"
    Database("sqlite:///%s" % db_path).create_schema()
    config = tmp_path / "blockmgr.conf"
    config.write_text(
        "[DEFAULT]\nenabled_backends = loop1\n"
        "[database]\nconnection = sqlite:///%s\n"
        "[loop1]\nvolume_driver = loopback\nloopback_directory = %s\n"
        % (db_path, tmp_path / "vols"))
    assert manage.main(["--config-file", str(config), "quota", "show",
                        "--project-id", "p1"]) == 0
    assert "volumes" in capsys.readouterr().out


def test_commands_without_backends_still_reject_unknown_sections(tmp_path, capsys):
    from blockmgr.cmd import manage

    config = tmp_path / "blockmgr.conf"
    config.write_text("[DEFAULT]\nenabled_backends = loop1\n[loop2]\nvolume_driver = lvm\n")
    assert manage.main(["--config-file", str(config), "quota", "show",
                        "--project-id", "p1"]) == 2
    assert "[loop2]" in capsys.readouterr().err
