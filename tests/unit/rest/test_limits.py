"""``/limits``: Cinder's absolute limits and usage of the caller's project."""

from __future__ import annotations

from tests.unit.rest.conftest import OTHER
from tests.unit.rest.conftest import PROJECT


def test_limits_show_the_projects_limits_and_usage(stack, api, admin_api):
    assert api.post("volumes", {"volume": {"size": 3}}).status_code == 202
    assert admin_api.put("os-quota-sets/%s" % PROJECT,
                         {"quota_set": {"snapshots": 7}}).status_code == 200
    body = api.get("limits").json()
    assert body["limits"]["rate"] == []
    absolute = body["limits"]["absolute"]
    assert absolute["maxTotalVolumes"] == stack.conf.quota.volumes
    assert absolute["maxTotalSnapshots"] == 7
    assert absolute["maxTotalVolumeGigabytes"] == stack.conf.quota.gigabytes
    assert absolute["maxTotalGroups"] == stack.conf.quota.groups
    assert absolute["totalVolumesUsed"] == 1 and absolute["totalGigabytesUsed"] == 3
    assert absolute["totalSnapshotsUsed"] == 0 and absolute["totalGroupsUsed"] == 0
    # an admin may look at another project (python-cinderclient sends tenant_id)
    theirs = admin_api.get("limits?tenant_id=%s" % PROJECT).json()["limits"]["absolute"]
    assert theirs == absolute
    assert admin_api.get("limits?project_id=%s" % PROJECT).json()["limits"][
        "absolute"] == absolute


def test_limits_of_another_project_are_refused_to_a_non_admin(api):
    response = api.get("limits?tenant_id=%s" % OTHER)
    assert response.status_code == 403
    assert response.json()["forbidden"]["code"] == 403
    assert api.get("limits?tenant_id=%s" % PROJECT).status_code == 200
    for query in ("tenant_id=bad%20id", "tenant_id=a&project_id=b"):
        response = api.get("limits?" + query)
        assert response.status_code == 400, (query, response.text)
