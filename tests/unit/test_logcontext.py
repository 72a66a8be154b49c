"""Every log line of a flow carries its request id and flow id (blockmgr.logcontext)."""

from __future__ import annotations

import logging
import uuid

import pytest
from oslo_context import context as oslo_context
from oslo_log import formatters as oslo_formatters

from blockmgr import exception
from blockmgr import logcontext

from tests.unit.test_manager import CTX, _volume, env  # noqa: F401  (fixture)

DRIVER_LOG = logging.getLogger("tests.fake_backend")


class Capture(logging.Handler):
    """Keeps each record with the line oslo.log's ContextFormatter makes of it."""

    def __init__(self, conf):
        super().__init__(logging.DEBUG)
        self.addFilter(logcontext.ContextFilter())
        self.setFormatter(oslo_formatters.ContextFormatter(config=conf))
        self.lines: list[tuple[logging.LogRecord, str]] = []

    def emit(self, record):
        self.lines.append((record, self.format(record)))


@pytest.fixture
def capture(conf):
    conf.set_default("logging_context_format_string", logcontext.CONTEXT_FORMAT)
    handler = Capture(conf)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


def _log_from_driver(message):
    def hook(_call):
        DRIVER_LOG.warning(message)
        return None   # no failure
    return hook


def _flow_lines(capture):
    return [(r, line) for r, line in capture.lines if getattr(r, "flow_id", "-") != "-"]


def test_every_line_of_a_flow_names_request_and_flow(env, capture):
    env.driver.inject_failure("create_volume", _log_from_driver("copying data"), times=1)
    vid = _volume(env)
    env.create_volume(CTX, vid)
    [(driver_record, driver_line)] = [(r, line) for r, line in capture.lines
                                      if r.name == DRIVER_LOG.name]
    flow_id = driver_record.flow_id
    uuid.UUID(flow_id)
    assert driver_record.request_id == CTX.request_id
    assert CTX.request_id in driver_line and "[flow %s]" % flow_id in driver_line
    assert all((r.request_id, r.flow_id) == (CTX.request_id, flow_id)
               for r, _line in _flow_lines(capture))
    # Lines outside the flow are untouched: no request id, flow '-'.
    assert oslo_context.get_current() is None
    logging.getLogger("blockmgr.test").info("after the flow")
    record, line = capture.lines[-1]
    assert record.flow_id == "-" and not getattr(record, "request_id", None)
    assert "[flow" not in line


def test_failed_flow_revert_lines_are_tagged_too(env, capture):
    def fail_with_a_line(_call):
        DRIVER_LOG.error("backend said no")
        return exception.VolumeBackendAPIException(reason="no")

    env.driver.inject_failure("create_volume", fail_with_a_line, times=1)
    other = CTX.__class__(project_id=CTX.project_id, user_id="u2")
    with pytest.raises(exception.VolumeBackendAPIException):
        env.create_volume(other, _volume(env), allow_reschedule=False)
    tagged = _flow_lines(capture)
    assert any(r.name == DRIVER_LOG.name for r, _line in tagged)
    # TaskFlow's own lines about the revert belong to the flow as well.
    engine_lines = [(r, line) for r, line in capture.lines if r.name.startswith("taskflow.")]
    assert engine_lines and all((r, line) in tagged for r, line in engine_lines)
    assert {r.request_id for r, _line in tagged} == {other.request_id}
    assert len({r.flow_id for r, _line in tagged}) == 1
    assert all(other.request_id in line for _r, line in tagged)


def test_scope_restores_the_threads_previous_oslo_context():
    outer = oslo_context.RequestContext(request_id="req-outer")
    try:
        with logcontext.flow_scope("flow-1", {"request_id": "req-inner", "user_id": "u"}):
            inner = oslo_context.get_current()
            assert isinstance(inner, logcontext.FlowLogContext)
            assert (inner.request_id, inner.user_id) == ("req-inner", "u")
            assert inner.get_logging_values()["flow_id"] == "flow-1"
        assert oslo_context.get_current() is outer
    finally:
        logcontext._restore_oslo_context(None)
    assert oslo_context.get_current() is None


def test_a_flow_of_an_earlier_release_without_a_context_is_tagged_with_its_flow():
    with logcontext.flow_scope("flow-2", None):
        current = oslo_context.get_current()
        assert current.flow_id == "flow-2" and current.request_id.startswith("req-")
    assert oslo_context.get_current() is None


def test_a_request_context_outside_flows_gets_the_context_format_and_flow_dash(conf):
    """A blockmgr context passed to a log call is formatted natively by oslo.log (request
    id, user identity); the filter supplies the flow id the context format names."""
    conf.set_default("logging_context_format_string", logcontext.CONTEXT_FORMAT)
    handler = Capture(conf)
    logger = logging.getLogger("blockmgr.test.native")
    logger.addHandler(handler)
    try:
        ctx = CTX.__class__(project_id="p9", user_id="u9", request_id="req-native")
        logger.warning("outside any flow", extra={"context": ctx})
    finally:
        logger.removeHandler(handler)
    [(record, line)] = handler.lines
    assert record.request_id == "req-native" and record.flow_id == logcontext.NO_FLOW
    assert "req-native u9 p9" in line and "[flow -] outside any flow" in line


def test_setup_keeps_an_operator_format(conf, tmp_path):
    conf.set_override("logging_context_format_string", "%(request_id)s %(message)s")
    conf.set_override("log_file", str(tmp_path / "b.log"))
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        logcontext.setup(conf)
        assert conf.logging_context_format_string == "%(request_id)s %(message)s"
        added = [h for h in root.handlers if h not in handlers]
        assert added and all(any(isinstance(f, logcontext.ContextFilter) for f in h.filters)
                             for h in added)
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
