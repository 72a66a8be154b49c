"""Each flow module declares the locks its request holds; recovery asks the same rule."""

from taskflow.persistence import models as tf_models

from blockmgr.flows import common
from blockmgr.flows import create_group
from blockmgr.flows import create_group_from_src
from blockmgr.flows import create_group_snapshot
from blockmgr.flows import create_snapshot
from blockmgr.flows import create_volume
from blockmgr.flows import delete_group_snapshot
from blockmgr.flows import delete_snapshot
from blockmgr.flows import extend_volume
from blockmgr.flows import revert_to_snapshot
from blockmgr.flows import taskflow_compat
from blockmgr.flows import update_group
from blockmgr.volume import recovery

ROWS = common.LockRows()


def test_the_declared_names():
    assert create_volume.lock_names("v", {"request_spec": {"snapshot_id": "s"}}, ROWS) == [
        "v", "s-delete_snapshot"]
    assert create_volume.lock_names("v", {"request_spec": {"source_volid": "w"}}, ROWS) == [
        "v", "w-delete_volume"]
    assert create_volume.lock_names("v", {"request_spec": {}}, ROWS) == ["v"]
    assert delete_snapshot.lock_names("s", {}, ROWS) == ["s", "s-delete_snapshot"]
    assert create_snapshot.lock_names("s", {}, common.LockRows(snapshot_volume="v")) == [
        "s", "v-delete_volume"]
    assert revert_to_snapshot.lock_names("v", {"snapshot_id": "s"}, ROWS) == [
        "v", "v-delete_volume", "s-delete_snapshot"]
    assert update_group.lock_names("g", {"add_volumes": ["a"], "remove_volumes": ["b"]},
                                   ROWS) == ["g", "a", "b"]
    assert create_group_snapshot.lock_names(
        "gs", {}, common.LockRows(group_snapshot_group="g")) == ["gs", "g"]
    assert delete_group_snapshot.lock_names(
        "gs", {}, common.LockRows(group_snapshot_members=["s1"])) == ["gs", "s1-delete_snapshot"]
    assert create_group_from_src.lock_names("g", {"source_group_id": "h"}, ROWS) == ["g", "h"]


def test_without_a_declaration_a_request_holds_its_resource():
    for module in (create_group, extend_volume):
        assert not hasattr(module, "lock_names")
        assert common.lock_names_of(module, "r", {}, ROWS) == ["r"]


def test_recovery_holds_what_the_flow_module_declares():
    fd = tf_models.FlowDetail("f", uuid="f")
    fd.meta = {"factory": {"name": "blockmgr.flows.revert_to_snapshot.get_flow"},
               "resource_id": "v"}
    injector = tf_models.TaskDetail(taskflow_compat.INJECTOR_NAME, uuid="f-inj")
    injector.results = {"volume_id": "v", "snapshot_id": "s"}
    fd.add(injector)
    assert recovery.lock_names(None, fd) == revert_to_snapshot.lock_names(
        "v", {"snapshot_id": "s"}, ROWS)


def test_flows_are_declared_without_attributes_on_taskflow_objects():
    from blockmgr.flows import delete_volume

    for module, kwargs, action in ((create_volume, {}, create_volume.ACTION),
                                   (delete_volume, {"unmanage_only": True},
                                    delete_volume.UNMANAGE_ACTION),
                                   (update_group, {}, update_group.ACTION)):
        flow = module.get_flow(**kwargs)
        assert not [a for a in vars(flow) if a.startswith("blockmgr_")]
        assert common.flow_declaration(flow).action == action
    assert common.flow_declaration(create_volume.get_flow()).error_status[1] == "error"
    assert common.flow_declaration(update_group.get_flow()).error_status is None
