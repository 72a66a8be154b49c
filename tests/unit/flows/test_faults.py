"""The test-only crash hook's spec parsing, and arming it from a file."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap

import pytest

from blockmgr import exception
from blockmgr.flows import faults


def test_specs_parse():
    assert faults.parse(None) is None and faults.parse("") is None
    assert faults.parse("before:a.B") == ("before", "a.B")
    assert faults.parse("after:a.B\n") == ("after", "a.B")
    assert faults.parse("file:/tmp/x") == ("file", "/tmp/x")


@pytest.mark.parametrize("spec", ["a.B", "during:a.B", "before:", "file:"])
def test_bad_specs_say_what_is_accepted(spec):
    with pytest.raises(exception.InvalidInput, match="before:<task name>"):
        faults.parse(spec)


def test_file_spec_is_read_at_every_run(tmp_path):
    armed = tmp_path / "armed"
    fault = ("file", str(armed))
    assert isinstance(faults.listener_for(None, fault), contextlib.nullcontext)
    armed.write_text("")
    assert isinstance(faults.listener_for(None, fault), contextlib.nullcontext)
    armed.write_text("file:%s" % armed)
    with pytest.raises(exception.InvalidInput, match="not another file"):
        faults.listener_for(None, fault)


def test_armed_file_kills_the_process_at_the_boundary(tmp_path):
    """A real flow in a child process: unarmed it finishes; armed it dies with EXIT_CODE."""
    armed = tmp_path / "armed"
    script = textwrap.dedent("""
        import sys
        from taskflow import engines, task
        from taskflow.patterns import linear_flow
        from blockmgr.flows import faults

        class Step(task.Task):
            def execute(self):
                print("ran", self.name, flush=True)

        flow = linear_flow.Flow("f").add(Step("one"), Step("two"))
        engine = engines.load(flow)
        engine.compile(); engine.prepare()
        with faults.listener_for(engine, ("file", sys.argv[1])):
            engine.run()
    """)
    run = lambda: subprocess.run([sys.executable, "-c", script, str(armed)],  # noqa: E731
                                 capture_output=True, text=True, timeout=120)
    result = run()
    assert result.returncode == 0 and result.stdout.split() == ["ran", "one", "ran", "two"]
    armed.write_text("after:one")
    result = run()
    assert result.returncode == faults.EXIT_CODE, result.stderr
    assert result.stdout.split() == ["ran", "one"]
    os.unlink(armed)


def test_flow_qualified_spec_fires_only_in_that_flow(tmp_path):
    armed = tmp_path / "armed"
    script = textwrap.dedent("""
        import sys
        from taskflow import engines, task
        from taskflow.patterns import linear_flow
        from blockmgr.flows import faults

        class Step(task.Task):
            def execute(self):
                print("ran", self.name, flush=True)

        for flow_name in ("other", "target"):
            flow = linear_flow.Flow(flow_name).add(Step("one"))
            engine = engines.load(flow)
            engine.compile(); engine.prepare()
            with faults.listener_for(engine, ("file", sys.argv[1])):
                engine.run()
    """)
    armed.write_text("after:target/one")
    result = subprocess.run([sys.executable, "-c", script, str(armed)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == faults.EXIT_CODE, result.stderr
    assert result.stdout.split() == ["ran", "one", "ran", "one"]
