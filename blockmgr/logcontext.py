"""Every log line of a flow names its request id and its flow id.

How this fits oslo.log. blockmgr's :class:`~blockmgr.context.RequestContext` is an
``oslo_context.RequestContext``, so oslo.log's formatters fill ``request_id``,
``user_identity``, ``global_request_id`` and the rest natively from the thread's current
context (oslo.context's thread-local store) or from ``extra={'context': ctx}``. Building a
blockmgr context never makes it current (see :mod:`blockmgr.context`), so no line is tagged
by accident. While a flow runs, :func:`flow_scope` makes a :class:`FlowLogContext` current:
the flow's request context, rebuilt from the dict in its store, with the flow id, which it
adds to its logging values as ``flow_id``. Every line the flow logs -- blockmgr's, the
driver's, TaskFlow's -- is then formatted with ``logging_context_format_string`` and carries
both ids. A flow runs in one thread (serial engine), so the thread-local covers every line.
The thread's previous context is restored when the flow ends: RPC worker threads are
reused, and a stale context would tag the next, unrelated request's lines.

:class:`ContextFilter` gives every record a ``flow_id`` (``-`` outside flows), so the
context format, which names ``%(flow_id)s``, also works for a context that is not a flow's.
:func:`setup` is what the daemons call instead of ``oslo_log.setup``: the same, plus a
context format that shows the flow id, plus the filter on every root handler.
"""

from __future__ import annotations

import contextlib
import logging

from oslo_context import context as oslo_context
from oslo_log import log as oslo_log

from blockmgr import context as bm_context

#: oslo.log's default context format with the flow id added (``-`` outside flows).
CONTEXT_FORMAT = ("%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s "
                  "[%(global_request_id)s %(request_id)s %(user_identity)s] "
                  "[flow %(flow_id)s] %(instance)s%(message)s")

#: ``flow_id`` of records logged outside any flow.
NO_FLOW = "-"


class FlowLogContext(bm_context.RequestContext):
    """A flow's request context while it runs: the same request, plus the flow id in its
    logging values (for oslo.log; policy and RPC use the plain context)."""

    def __init__(self, *args, flow_id: str, **kwargs):
        self.flow_id = flow_id
        super().__init__(*args, **kwargs)

    def get_logging_values(self) -> dict:
        values = super().get_logging_values()
        values["flow_id"] = self.flow_id
        return values


@contextlib.contextmanager
def flow_scope(flow_id: str, context: dict | None):
    """Make the flow's context current in this thread until the block ends (see the module
    docstring). ``context`` is the flow's stored request context dict (None: none stored;
    the lines then carry the flow id and a request id of their own)."""
    previous = oslo_context.get_current()
    FlowLogContext.from_dict(context, flow_id=flow_id).update_store()
    try:
        yield
    finally:
        _restore_oslo_context(previous)


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
    """Adds ``flow_id`` to records that do not carry one: the flow's while a flow's context
    is current (or passed as ``extra={'context': ...}``), else ``'-'``. Request ids are
    oslo.log's business (its formatters read the context). Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "flow_id"):
            context = getattr(record, "context", None) or oslo_context.get_current()
            record.flow_id = getattr(context, "flow_id", NO_FLOW)
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
