"""Every log line of a flow names its request id and its flow id.

How this fits oslo.log. blockmgr's :class:`~blockmgr.context.RequestContext` is a plain
frozen dataclass (it crosses RPC and lives in flow stores as a dict); it is *not* an
``oslo_context.RequestContext``, and nothing in the daemons puts one in oslo.context's
thread-local store. oslo.log's ``ContextFormatter`` only learns about a request from that
store (or from ``extra={'context': ...}`` on each call), so without this module flow logs
came out in the context-free format, with no request id at all.

While a flow runs, :func:`flow_scope` therefore

* stores a :class:`FlowLogContext` (an ``oslo_context.RequestContext`` carrying the flow's
  request id, user, project, and the flow id) in oslo.context's thread-local store, so
  ``ContextFormatter`` uses ``logging_context_format_string`` and fills ``request_id``,
  ``user_identity`` and ``flow_id`` from it; and
* records ``(request_id, flow_id)`` in a thread-local of its own, read by
  :class:`ContextFilter`, which copies them onto every record a handler sees -- so any
  formatter (JSON, plain ``logging.Formatter``, a test's capture handler) has them too.

A flow runs in one thread (serial engine), so thread-locals cover every line it logs. The
previous oslo context of the thread is restored when the flow ends: RPC worker threads are
reused, and a stale context would tag the next, unrelated request's lines.

:func:`setup` is what the daemons call instead of ``oslo_log.setup``: the same, plus a
context format that shows the flow id, plus the filter on every root handler.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from oslo_context import context as oslo_context
from oslo_log import log as oslo_log

#: oslo.log's default context format with the flow id added (``-`` outside flows).
CONTEXT_FORMAT = ("%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s "
                  "[%(global_request_id)s %(request_id)s %(user_identity)s] "
                  "[flow %(flow_id)s] %(instance)s%(message)s")

#: ``flow_id`` of records logged outside any flow.
NO_FLOW = "-"

_local = threading.local()


class FlowLogContext(oslo_context.RequestContext):
    """The oslo.context view of a running flow, for oslo.log only (never for policy)."""

    def __init__(self, *, flow_id: str, **kwargs):
        self.flow_id = flow_id
        super().__init__(**kwargs)

    def get_logging_values(self) -> dict:
        values = super().get_logging_values()
        values["flow_id"] = self.flow_id
        return values


def current() -> tuple[str | None, str] | None:
    """``(request_id, flow_id)`` of the flow running in this thread, or None."""
    return getattr(_local, "scope", None)


@contextlib.contextmanager
def flow_scope(flow_id: str, context: dict | None):
    """Tag every log line of this thread with ``flow_id`` and ``context``'s request id
    until the block ends (see the module docstring). ``context`` is the flow's stored
    request context dict (None: no request id known)."""
    context = context or {}
    request_id = context.get("request_id")
    previous_scope = getattr(_local, "scope", None)
    previous_oslo = oslo_context.get_current()
    _local.scope = (request_id, flow_id)
    # overwrite=True stores it in oslo.context's thread-local for oslo.log.
    FlowLogContext(flow_id=flow_id, request_id=request_id, user_id=context.get("user_id"),
                   project_id=context.get("project_id"),
                   is_admin=bool(context.get("is_admin")), overwrite=True)
    try:
        yield
    finally:
        _local.scope = previous_scope
        _restore_oslo_context(previous_oslo)


def engine_scope(engine):
    """:func:`flow_scope` for a TaskFlow engine whose store holds ``context`` (the request
    context dict every blockmgr flow stores)."""
    try:
        context = engine.storage.fetch("context")
    except Exception:   # a flow without a stored context: tag the flow id only
        context = None
    return flow_scope(engine.storage.flow_uuid,
                      context if isinstance(context, dict) else None)


def _restore_oslo_context(previous) -> None:
    if previous is not None:
        previous.update_store()
        return
    # oslo.context has no public "clear"; its store is a documented-in-code thread-local
    # attribute that get_current() reads with getattr(..., None).
    store = oslo_context._request_store
    if hasattr(store, "context"):
        del store.context


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``flow_id`` to records that do not carry them: the running
    flow's values, else ``flow_id = '-'`` (``request_id`` is then left absent, so
    ``ContextFormatter`` keeps choosing its context-free format). Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = getattr(_local, "scope", None)
        if scope is not None:
            request_id, flow_id = scope
            if request_id and not getattr(record, "request_id", None):
                record.request_id = request_id
            if not hasattr(record, "flow_id"):
                record.flow_id = flow_id
        elif not hasattr(record, "flow_id"):
            record.flow_id = NO_FLOW
        return True


def install_filter(logger: logging.Logger | None = None) -> ContextFilter:
    """Add one :class:`ContextFilter` to every handler of ``logger`` (default: root) that
    has none yet; returns the filter."""
    logger = logger or logging.getLogger()
    found = ContextFilter()
    for handler in logger.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(found)
    return found


def setup(conf, product: str = "blockmgr") -> None:
    """``oslo_log.setup`` with the flow id in the context format (unless the operator set
    ``logging_context_format_string``) and :class:`ContextFilter` on the root handlers."""
    conf.set_default("logging_context_format_string", CONTEXT_FORMAT)
    oslo_log.setup(conf, product)
    install_filter()
