"""The one chokepoint through which drivers run host commands (lvm2, losetup, ...).

Why one place: every command gets the same treatment — ``LC_ALL=C`` so output parsing does not
depend on the host's locale, the FULL inherited environment (oslo.concurrency's
``env_variables`` replaces the environment rather than extending it, so PATH would be lost),
a timeout so a hung tool cannot hang a flow forever, and one typed error,
:class:`~blockmgr.exception.CommandExecutionError`, carrying the exit code and stderr. Tests
swap the runner (see :class:`CommandRunner`) to record commands where the real tool cannot run.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from typing import Mapping, Sequence

from oslo_concurrency import processutils

from blockmgr import exception

LOG = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120


class CommandRunner:
    """Runs commands for a driver. Subclass (or wrap) it in tests to record or script calls."""

    def __init__(self, timeout: int = DEFAULT_TIMEOUT_S, extra_env: Mapping[str, str] | None = None):
        self.timeout = timeout
        self.extra_env = dict(extra_env or {})

    def execute(self, *cmd: str, check_exit_code: Sequence[int] = (0,),
                process_input: str | None = None, timeout: int | None = None,
                env: Mapping[str, str] | None = None) -> tuple[str, str]:
        """Run ``cmd`` (no shell) and return ``(stdout, stderr)``.

        :raises CommandExecutionError: non-allowed exit code, timeout, or the tool is missing.
        """
        environment = {**os.environ, "LC_ALL": "C", **self.extra_env, **(env or {})}
        printable = " ".join(shlex.quote(str(part)) for part in cmd)
        try:
            out, err = processutils.execute(
                *[str(part) for part in cmd], env_variables=environment,
                check_exit_code=list(check_exit_code), process_input=process_input,
                timeout=timeout if timeout is not None else self.timeout)
        except processutils.ProcessExecutionError as exc:
            raise exception.CommandExecutionError(
                cmd=printable, exit_code=exc.exit_code,
                stderr=(exc.stderr or exc.description or "").strip()) from None
        except subprocess.TimeoutExpired as exc:
            raise exception.CommandExecutionError(
                cmd=printable, exit_code=None,
                stderr="timed out after %ss" % exc.timeout) from None
        except OSError as exc:  # e.g. the binary is not installed
            raise exception.CommandExecutionError(
                cmd=printable, exit_code=None, stderr=str(exc)) from None
        return out, err
