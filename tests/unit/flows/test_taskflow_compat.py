"""The installed TaskFlow is one blockmgr's compatibility module was checked against.

blockmgr reaches below TaskFlow's public API in one module only
(:mod:`blockmgr.flows.taskflow_compat`). When TaskFlow is upgraded past the pinned range, or
a private name that module uses is renamed or removed, this test fails and names what
changed, instead of flows misbehaving at run time.
"""

import importlib.metadata
import pathlib
import re

from blockmgr.flows import taskflow_compat


def test_installed_taskflow_is_inside_the_supported_range():
    version = importlib.metadata.version("taskflow")
    low, high = taskflow_compat.SUPPORTED_TASKFLOW
    as_tuple = taskflow_compat._version_tuple
    assert as_tuple(low) <= as_tuple(version) < as_tuple(high), (
        "TaskFlow %s is outside >=%s,<%s: review blockmgr/flows/taskflow_compat.py, then "
        "widen SUPPORTED_TASKFLOW and the pin in pyproject.toml" % (version, low, high))


def test_the_pin_in_pyproject_matches_the_supported_range():
    pyproject = pathlib.Path(taskflow_compat.__file__).parents[2] / "pyproject.toml"
    low, high = taskflow_compat.SUPPORTED_TASKFLOW
    pins = re.findall(r'"taskflow([^"]*)"', pyproject.read_text())
    assert pins == [">=%s,<%s" % (low, high)]


def test_every_private_taskflow_name_relied_on_exists():
    assert taskflow_compat.problems() == []


def test_a_version_outside_the_range_is_reported(monkeypatch):
    monkeypatch.setattr(taskflow_compat, "installed_version", lambda: "7.0.0")
    assert any("outside the supported range" in p for p in taskflow_compat.problems())


def test_a_missing_private_name_is_reported(monkeypatch):
    monkeypatch.setattr(taskflow_compat, "_CLASS_NAMES",
                        taskflow_compat._CLASS_NAMES + ((taskflow_compat, "_no_such"),))
    assert any("_no_such is gone" in p for p in taskflow_compat.problems())


def test_the_injector_atom_name_is_taskflows():
    from taskflow import storage

    assert taskflow_compat.INJECTOR_NAME == storage.Storage.injector_name
