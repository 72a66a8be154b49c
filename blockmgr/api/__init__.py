"""The client library an API service imports: validate, write the row, take quota, cast.

::

    from blockmgr import api
    client = api.Client(conf, db, quota, transport=transport)
    volume = client.volumes.create_volume(ctx, 10, name="data")

:class:`Client` bundles the services (``volumes``, ``snapshots``, ``groups``,
``attachments``, ``admin`` (resets), and
``quotas``, which needs no RPC), sharing
one scheduler and one volume RPC client. Each service can also be built alone with explicit
RPC clients (tests pass recording doubles). Contracts: ``docs/client-library.md``.
"""

from __future__ import annotations

from blockmgr.api.admin_actions import AdminActionService
from blockmgr.api.attachments import AttachmentService
from blockmgr.api.groups import GroupService
from blockmgr.api.quotas import QuotaSetService
from blockmgr.api.snapshots import SnapshotService
from blockmgr.api.volume_types import VolumeTypeService
from blockmgr.api.volumes import VolumeService

__all__ = ["AdminActionService", "AttachmentService", "Client", "GroupService", "QuotaSetService", "SnapshotService", "VolumeService",
           "VolumeTypeService"]


class Client:
    """:param transport: an RPC transport (:func:`blockmgr.rpc.get_transport`); or pass
    ``scheduler_rpcapi`` and ``volume_rpcapi`` directly.

    The RPC clients built from ``transport`` give up on an unreachable broker after
    ``[DEFAULT] api_rpc_retries`` reconnection attempts, so that a cast fails (and the
    resource goes to its error status) instead of blocking the API request until the broker
    is back; oslo.messaging's own default would retry forever."""

    def __init__(self, conf, db, quota, *, transport=None, scheduler_rpcapi=None,
                 volume_rpcapi=None):
        if scheduler_rpcapi is None or volume_rpcapi is None:
            if transport is None:
                raise ValueError("give a transport, or both scheduler_rpcapi and "
                                 "volume_rpcapi")
            from blockmgr.scheduler.rpcapi import SchedulerAPI
            from blockmgr.volume.rpcapi import VolumeAPI

            retry = conf.api_rpc_retries
            scheduler_rpcapi = scheduler_rpcapi or SchedulerAPI(transport, retry=retry)
            volume_rpcapi = volume_rpcapi or VolumeAPI(transport, retry=retry)
        deps = dict(scheduler_rpcapi=scheduler_rpcapi, volume_rpcapi=volume_rpcapi)
        self.volumes = VolumeService(conf, db, quota, **deps)
        self.snapshots = SnapshotService(conf, db, quota, **deps)
        self.groups = GroupService(conf, db, quota, **deps)
        self.attachments = AttachmentService(conf, db, quota, **deps)
        self.admin = AdminActionService(conf, db, quota, **deps)
        self.quotas = QuotaSetService(conf, quota)
        self.volume_types = VolumeTypeService(conf, db, quota)
