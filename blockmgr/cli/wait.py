"""``--wait``: follow a resource until the operation on it settles.

Operations are asynchronous: the API answers ``202`` once the request is recorded and a worker
runs the flow. ``--wait`` polls ``GET <path>`` and reports on stderr every status change with
the time elapsed (plus a heartbeat while nothing changes), then ends in one of three ways:

* **settled as asked**: the status is one of the target's ``success`` statuses (and its
  ``check`` finds nothing missing, e.g. the new size after an extend), or the resource is
  gone (``404``) for a delete / unmanage -> returns the last body (``None`` when gone);
* **failed**: an ``error*`` status, or a stable status that is not the goal (a delete the
  backend refused leaves the volume ``available``) -> :class:`ResourceFailed` with the
  server's ``status_reason`` when the view carries one;
* **timed out** -> :class:`WaitTimedOut` (the operation may still finish).

Which statuses are "still working" comes from :data:`blockmgr.states.TRANSITIONAL`, the same
table the workers use.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from blockmgr import states
from blockmgr.cli import errors

#: First poll interval, growth factor and cap (seconds): quick operations settle in well
#: under a second, long ones do not hammer the API.
FIRST_INTERVAL = 0.1
BACKOFF = 1.5
MAX_INTERVAL = 2.0
#: Seconds without a status change between "still <status>" lines.
HEARTBEAT = 10.0


@dataclasses.dataclass(frozen=True)
class Target:
    """What to wait for.

    :param kind: resource kind in :data:`blockmgr.states.MACHINES` (``volume``, ``snapshot``,
        ``group``, ``group_snapshot``).
    :param resource_id: its id.
    :param path: ``GET`` path relative to ``/v3/<project>/`` (e.g. ``volumes/<id>``).
    :param key: the body's top-level key (``volume``).
    :param success: statuses that mean the operation completed.
    :param gone: a ``404`` means the operation completed (delete, unmanage).
    :param check: for a success status, returns why the body still is not what was asked
        (e.g. the size after an extend), or ``None`` when it is; the wait then fails with
        that reason.
    :param command: the CLI command family, for hints (``volume``, ``group snapshot``).
    :param pending: more statuses that mean "still working" for this wait (a detach:
        ``detaching``, which is also a consumer's hold and so not transitional in general).
    """
    kind: str
    resource_id: str
    path: str
    key: str
    success: frozenset = frozenset()
    gone: bool = False
    check: Callable[[dict], str | None] | None = None
    command: str = ""
    pending: frozenset = frozenset()

    @property
    def label(self) -> str:
        return "%s %s" % (self.kind.replace("_", " "), self.resource_id)


def wait_for(client, target: Target, *, timeout: float, note: Callable[[str], None],
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> dict | None:
    """Poll until ``target`` settles; returns the final body, ``None`` if the resource is gone.

    :raises ResourceFailed: the resource ended in an error status, or in a stable status that
        is not the goal.
    :raises WaitTimedOut: still in flight after ``timeout`` seconds.
    :raises ApiRequestFailed, ServerUnreachable: from the polls themselves.
    """
    transitional = states.TRANSITIONAL[target.kind] | target.pending
    start = clock()
    last_status = None
    last_report = start
    interval = FIRST_INTERVAL
    while True:
        body = _poll(client, target)
        elapsed = clock() - start
        if body is None:
            note("%s: deleted (%.1f s)" % (target.label, elapsed))
            return None
        status = str(body.get("status"))
        if status != last_status:
            note("%s: %s (%.1f s)" % (target.label, status, elapsed))
            last_status, last_report = status, clock()
        elif clock() - last_report >= HEARTBEAT:
            note("%s: still %s (%.0f s)" % (target.label, status, elapsed))
            last_report = clock()
        if status in target.success:
            problem = target.check(body) if target.check else None
            if problem is None:
                return body
            raise errors.ResourceFailed(kind=target.kind.replace("_", " "),
                                        id=target.resource_id, status=status, reason=problem)
        if status.startswith("error"):
            raise errors.ResourceFailed(kind=target.kind.replace("_", " "),
                                        id=target.resource_id, status=status,
                                        reason=_reason(body))
        if status not in transitional:
            goal = "gone" if target.gone else " or ".join(sorted(target.success))
            raise errors.ResourceFailed(
                kind=target.kind.replace("_", " "), id=target.resource_id, status=status,
                reason="the operation did not take effect (expected %s); %s"
                       % (goal, _reason(body)))
        if elapsed >= timeout:
            raise errors.WaitTimedOut(kind=target.kind.replace("_", " "),
                                      id=target.resource_id, status=status,
                                      timeout="%g" % timeout,
                                      command=target.command or target.kind)
        sleep(min(interval, max(timeout - elapsed, 0.0)))
        interval = min(interval * BACKOFF, MAX_INTERVAL)


def _poll(client, target: Target) -> dict | None:
    try:
        return client.get(target.path)[target.key]
    except errors.ApiRequestFailed as exc:
        if exc.status == 404 and target.gone:
            return None
        raise


def _reason(body: dict[str, Any]) -> str:
    """The server's explanation of the status, when its view carries one."""
    for key in ("status_reason", "reason", "error", "fail_reason"):
        if body.get(key):
            return str(body[key])
    return "the server gives no reason in this view; the volume service's log has it"
