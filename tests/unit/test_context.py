"""RequestContext: an oslo.context RequestContext that travels over RPC and sits in flow
logbooks and the requests table, so it must survive JSON and read dicts stored earlier."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from oslo_config import cfg
from oslo_context import context as oslo_context
from oslo_log import formatters as oslo_formatters
from oslo_log import log as oslo_log

from blockmgr import context


def test_round_trip_through_json_keeps_every_field():
    ctx = context.RequestContext(project_id="p1", user_id="u1", is_admin=False,
                                 request_id="req-fixed", read_deleted="yes")
    data = json.loads(json.dumps(ctx.to_dict()))
    assert context.RequestContext.from_dict(data) == ctx


def test_to_dict_uses_json_types_only():
    data = context.RequestContext(project_id="p1").to_dict()
    assert data == {"project_id": "p1", "user_id": None, "is_admin": False,
                    "request_id": data["request_id"], "read_deleted": "no"}
    assert json.loads(json.dumps(data)) == data


def test_from_dict_ignores_fields_a_newer_sender_added():
    ctx = context.RequestContext.from_dict(
        {"project_id": "p1", "request_id": "req-1", "roles": ["admin"], "tenant": "x"})
    assert ctx.project_id == "p1"
    assert ctx.request_id == "req-1"
    assert ctx.is_admin is False


def test_from_empty_dict_gives_a_fresh_request_id():
    first = context.RequestContext.from_dict(None)
    second = context.RequestContext.from_dict({})
    assert first.request_id.startswith("req-")
    assert first.request_id != second.request_id


def test_request_ids_are_unique():
    assert len({context.generate_request_id() for _ in range(100)}) == 100


def test_a_dict_stored_by_an_earlier_release_loads():
    # The former dataclass's asdict(): these five keys, nothing else.
    stored = {"project_id": "p1", "user_id": "u1", "is_admin": True,
              "request_id": "req-0b7d3d4e-51c6-4d68-bb9b-5b8b4a1f0b01", "read_deleted": "no"}
    ctx = context.RequestContext.from_dict(json.loads(json.dumps(stored)))
    assert (ctx.project_id, ctx.user_id, ctx.is_admin, ctx.request_id, ctx.read_deleted) == (
        "p1", "u1", True, stored["request_id"], "no")
    assert ctx.to_dict() == stored


def test_an_oslo_context_dict_loads():
    sent = {}

    def build():   # in a thread of its own: oslo's constructor makes it the current context
        sent.update(oslo_context.RequestContext(user_id="u1", project_id="p1",
                                                request_id="req-9").to_dict())

    thread = threading.Thread(target=build)
    thread.start()
    thread.join(5)
    ctx = context.RequestContext.from_dict(sent)
    assert (ctx.project_id, ctx.user_id, ctx.request_id, ctx.is_admin) == (
        "p1", "u1", "req-9", False)


def test_it_is_an_oslo_context():
    ctx = context.RequestContext(project_id="p1", user_id="u1")
    assert isinstance(ctx, oslo_context.RequestContext)
    assert ctx.global_id == ctx.request_id
    assert ctx.to_policy_values()["project_id"] == "p1"


@pytest.mark.parametrize("field", context.FIELDS)
def test_context_is_immutable(field):
    ctx = context.RequestContext(project_id="p1")
    with pytest.raises(context.FrozenContextError, match="immutable"):
        setattr(ctx, field, "changed")
    assert ctx == context.RequestContext(project_id="p1", request_id=ctx.request_id)


def test_equal_contexts_hash_alike_and_replace_makes_a_new_one():
    ctx = context.RequestContext(project_id="p1", user_id="u1")
    same = context.RequestContext.from_dict(ctx.to_dict())
    assert same == ctx and hash(same) == hash(ctx) and len({ctx, same}) == 1
    other = ctx.replace(request_id="req-other")
    assert other.request_id == "req-other" and ctx.request_id != "req-other"
    assert other != ctx and (other.project_id, other.user_id) == ("p1", "u1")


def test_building_a_context_leaves_the_threads_log_context_alone():
    seen = {}

    def worker():
        # A thread with no current context: oslo's own constructor would store this one.
        context.RequestContext(project_id="p1")
        seen["after_build"] = oslo_context.get_current()
        ctx = context.get_admin_context()
        ctx.update_store()
        seen["after_update"] = oslo_context.get_current() is ctx

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert seen == {"after_build": None, "after_update": True}


def test_oslo_log_formats_the_request_natively():
    conf = cfg.ConfigOpts()
    oslo_log.register_options(conf)
    conf([], project="blockmgr-test")
    ctx = context.RequestContext(project_id="p1", user_id="u1", request_id="req-abc")
    record = logging.LogRecord("blockmgr.test", logging.INFO, __file__, 1, "hello", None, None)
    record.context = ctx
    line = oslo_formatters.ContextFormatter(config=conf).format(record)
    assert "req-abc u1 p1 " in line and line.endswith("] hello")
    assert record.read_deleted == "no"


def test_elevated_keeps_the_request_and_adds_admin():
    ctx = context.RequestContext(project_id="p1", user_id="u1")
    admin = ctx.elevated()
    assert admin.is_admin is True
    assert (admin.request_id, admin.project_id, admin.user_id) == (
        ctx.request_id, "p1", "u1")
    assert ctx.is_admin is False


def test_project_access():
    ctx = context.RequestContext(project_id="p1")
    assert ctx.can_access_project("p1")
    assert not ctx.can_access_project("p2")
    assert not ctx.can_access_project(None)
    assert ctx.elevated().can_access_project("p2")


def test_admin_context():
    assert context.get_admin_context("req-42") == context.RequestContext(
        is_admin=True, request_id="req-42")
    assert context.get_admin_context().is_admin is True
