"""Start a daemon in milliseconds: fork it from a process that has already imported it.

A crash-under-load run restarts ``blockmgr-volume`` once per injected crash -- hundreds of
times. Started as a fresh interpreter the daemon spends ~2 s importing blockmgr, TaskFlow,
oslo.messaging and the database drivers before its ``main`` runs. The zygote imports all of
that once (no thread, no connection, no config: nothing that a fork would duplicate badly)
and then forks on request; each child sets its environment, sends its output to a log file
and runs the daemon's real ``main(argv)`` -- the same code path as the console script, from
configuration loading and driver setup to recovery and serving.

Protocol (one JSON object per line on the zygote's stdin/stdout):
``{"op": "spawn", "argv": [...], "env": {...}, "log": path}`` -> ``{"pid": n}``;
``{"op": "poll", "pid": n}`` -> ``{"status": exit code or null while alive}``.
The zygote reaps its children, so only it can report their exit status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_PRELOAD = (
    "blockmgr.volume.service", "blockmgr.volume.manager", "blockmgr.volume.endpoint",
    "blockmgr.drivers.loopback.driver", "blockmgr.flows.engine",
    "blockmgr.flows.create_volume", "blockmgr.flows.manage_existing",
    "blockmgr.flows.manage_existing_snapshot", "blockmgr.flows.delete_volume",
    "blockmgr.flows.create_snapshot", "blockmgr.flows.delete_snapshot",
    "blockmgr.flows.extend_volume", "blockmgr.flows.create_group",
    "blockmgr.flows.delete_group", "blockmgr.flows.update_group",
    "blockmgr.flows.create_group_snapshot", "blockmgr.flows.delete_group_snapshot",
    "blockmgr.flows.create_group_from_src", "tests.functional.e2e_driver",
    "oslo_messaging", "oslo_messaging._drivers.impl_rabbit", "pymysql", "psycopg2",
    "sqlalchemy.dialects.mysql", "sqlalchemy.dialects.postgresql",
    "taskflow.persistence.backends.impl_sqlalchemy",
)


class ForkedDaemon:
    """A daemon forked by a :class:`Zygote`: ``alive``, ``kill()``, ``stop()``, ``returncode``
    (the shape tests use of ``tests.functional.daemons.DaemonProcess``)."""

    def __init__(self, zygote: "Zygote", pid: int, log: Path):
        self.zygote, self.pid, self.log = zygote, pid, log
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.poll(self.pid)
        return self.returncode

    @property
    def alive(self) -> bool:
        return self.poll() is None

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.returncode

    def kill(self) -> None:
        if self.alive:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.wait(30)

    def stop(self, timeout: float = 20) -> int | None:
        if self.alive:
            os.kill(self.pid, signal.SIGTERM)
            if self.wait(timeout) is None:
                self.kill()
        return self.returncode

    def log_text(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""


class Zygote:
    """The pre-imported parent of the daemons a test restarts (see the module docstring)."""

    def __init__(self, main: str = "blockmgr.cmd.volume:main"):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.functional.zygote", main],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=str(REPO), env=env, text=True, bufsize=1)
        ready = self.proc.stdout.readline()
        assert ready.strip() == '{"ready": true}', "zygote failed to start: %r" % ready

    def _ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the zygote died"
        return json.loads(line)

    def spawn(self, argv: list[str], env: dict, log: Path) -> ForkedDaemon:
        pid = self._ask(op="spawn", argv=list(argv), env=dict(env), log=str(log))["pid"]
        return ForkedDaemon(self, pid, log)

    def poll(self, pid: int) -> int | None:
        return self._ask(op="poll", pid=pid)["status"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _child(main, argv, env, log) -> None:
    os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(env)
    sys.argv = ["blockmgr-volume"] + list(argv)
    code = 1
    try:
        code = main(list(argv)) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(main_spec: str) -> None:
    import importlib

    from blockmgr.db.session import preferred_mysql_driver

    module_name, _sep, func = main_spec.partition(":")
    module = importlib.import_module(module_name)
    if hasattr(module, "use_native_threads"):
        module.use_native_threads()
    for name in _PRELOAD:
        importlib.import_module(name)
    if preferred_mysql_driver() == "mysqldb":   # the [mysql] extra is installed
        importlib.import_module("MySQLdb")
    main = getattr(module, func)
    statuses: dict[int, int] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _child(main, request["argv"], request["env"], request["log"])
            reply = {"pid": pid}
        else:
            pid = request["pid"]
            if pid not in statuses:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    statuses[pid] = os.waitstatus_to_exitcode(status)
            reply = {"status": statuses.get(pid)}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    _serve(sys.argv[1])
