"""VolumeTypeService of the client library and the type a volume create resolves
(SQLite, recording RPC doubles)."""

from __future__ import annotations

import pytest

from blockmgr import exception
from tests.unit.test_api import ADMIN
from tests.unit.test_api import A
from tests.unit.test_api import B
from tests.unit.test_api import env  # noqa: F401  (the fixture)
from tests.unit.test_api import state_of


def test_create_sends_the_types_extra_specs_to_the_scheduler(env):  # noqa: F811
    gold = env.volume_types.create_type(ADMIN, "gold", extra_specs={
        "volume_backend_name": "lvm", "capabilities:multiattach": "<is> True"})
    row = env.volumes.create_volume(A, 1, volume_type="gold")
    assert row["volume_type_id"] == gold["id"]
    (method, kwargs), = env.sched.sent
    assert kwargs["request_spec"]["volume_type"] == {
        "id": gold["id"], "name": "gold",
        "extra_specs": {"volume_backend_name": "lvm", "capabilities:multiattach": "<is> True"}}


def test_no_type_is_the_default_type_created_on_first_use(env):  # noqa: F811
    row = env.volumes.create_volume(A, 1)
    default = env.volume_types.default_type(A)
    assert default["name"] == "__DEFAULT__" and row["volume_type_id"] == default["id"]
    env.volumes.create_volume(A, 1)
    assert [t["name"] for t in env.volume_types.list_types(ADMIN, is_public=None)] == [
        "__DEFAULT__"]


@pytest.mark.parametrize("ref", ["nope", "", 7, "x" * 300])
def test_unknown_types_are_refused_and_nothing_is_written(env, ref):  # noqa: F811
    env.volumes.create_volume(A, 1)
    before = state_of(env.db)
    with pytest.raises(exception.InvalidVolumeType):
        env.volumes.create_volume(A, 1, volume_type=ref)
    assert state_of(env.db) == before and len(env.sched.sent) == 1


def test_private_types_need_access(env):  # noqa: F811
    secret = env.volume_types.create_type(ADMIN, "secret", is_public=False)
    with pytest.raises(exception.InvalidVolumeType):
        env.volumes.create_volume(A, 1, volume_type=secret["id"])
    env.volume_types.add_access(ADMIN, secret["id"], "pA")
    assert env.volumes.create_volume(A, 1, volume_type="secret")["volume_type_id"] == \
        secret["id"]
    with pytest.raises(exception.VolumeTypeNotFound):
        env.volume_types.get_type(B, "secret")
    with pytest.raises(exception.VolumeTypeAccessExists):
        env.volume_types.add_access(ADMIN, secret["id"], "pA")
    env.volume_types.remove_access(ADMIN, secret["id"], "pA")
    with pytest.raises(exception.VolumeTypeAccessNotFound):
        env.volume_types.remove_access(ADMIN, secret["id"], "pA")


def test_changes_are_admin_only_and_checked(env):  # noqa: F811
    with pytest.raises(exception.NotAuthorized):
        env.volume_types.create_type(A, "mine")
    gold = env.volume_types.create_type(ADMIN, "gold")
    with pytest.raises(exception.VolumeTypeExists):
        env.volume_types.create_type(ADMIN, "gold")
    with pytest.raises(exception.VolumeTypeExists):
        env.volume_types.update_type(ADMIN, env.volume_types.create_type(
            ADMIN, "silver")["id"], name="gold")
    with pytest.raises(exception.InvalidInput):
        env.volume_types.update_type(ADMIN, gold["id"])
    with pytest.raises(exception.InvalidInput):
        env.volume_types.create_type(ADMIN, "x", is_public="yes")
    with pytest.raises(exception.InvalidInput):
        env.volume_types.set_extra_specs(ADMIN, gold["id"], {"k": ["list"]})
    assert env.volume_types.set_extra_specs(ADMIN, gold["id"], {"n": 5, "b": True}) == {
        "n": "5", "b": "True"}
    with pytest.raises(exception.VolumeTypeExtraSpecNotFound):
        env.volume_types.delete_extra_spec(ADMIN, gold["id"], "missing")


def test_a_type_in_use_and_the_default_type_are_not_deleted(env):  # noqa: F811
    gold = env.volume_types.create_type(ADMIN, "gold", extra_specs={"k": "v"})
    env.volumes.create_volume(A, 1, volume_type="gold")
    with pytest.raises(exception.InvalidVolumeType, match="used by 1 volume"):
        env.volume_types.delete_type(ADMIN, gold["id"])
    default = env.volume_types.default_type(ADMIN)
    with pytest.raises(exception.InvalidVolumeType, match="cannot be deleted"):
        env.volume_types.delete_type(ADMIN, default["id"])
    unused = env.volume_types.create_type(ADMIN, "unused", extra_specs={"k": "v"})
    env.volume_types.delete_type(ADMIN, unused["id"])
    with pytest.raises(exception.VolumeTypeNotFound):
        env.volume_types.get_type(ADMIN, unused["id"])
    # The name is free again, without the old extra specs.
    assert env.volume_types.create_type(ADMIN, "unused")["extra_specs"] == {}
