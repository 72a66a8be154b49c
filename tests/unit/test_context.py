"""RequestContext: travels over RPC and sits in flow logbooks, so it must survive JSON."""

from __future__ import annotations

import dataclasses
import json

import pytest

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


def test_context_is_immutable():
    ctx = context.RequestContext(project_id="p1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.project_id = "p2"


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
