"""The core volume interface every driver implements."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from blockmgr import exception
from blockmgr.interface.base import DriverBase
from blockmgr.interface.objects import SnapshotView, VolumeView
from blockmgr.interface.stats import VolumeStats
from blockmgr.interface.updates import (ConnectionInfo, Connector, SnapshotModelUpdate,
                                        VolumeModelUpdate)

if TYPE_CHECKING:
    from blockmgr.context import RequestContext


class VolumeDriver(DriverBase):
    """Core volume operations (Cinder's ``VolumeDriverCore`` names and argument order).

    Objects: ``volume`` / ``snapshot`` / ``src_vref`` are read-only views
    (:mod:`blockmgr.interface.objects`); ``volume.name`` (``volume-<id>``) and
    ``snapshot.name`` (``snapshot-<id>``) are the backend names drivers traditionally use, and
    ``provider_location`` / ``provider_id`` carry whatever a previous model update recorded.

    Model updates: methods returning :class:`~blockmgr.interface.updates.VolumeModelUpdate`
    / ``SnapshotModelUpdate`` (or None) give the columns the manager should write on the
    resource (e.g. ``{'provider_location': ...}``); other keys are logged and dropped.
    Drivers never touch the database.

    Errors: drivers raise :mod:`blockmgr.exception` errors: ``VolumeBackendAPIException`` /
    ``VolumeDriverException`` (or ``CommandExecutionError``) for backend failures,
    ``VolumeIsBusy`` / ``SnapshotIsBusy`` for dependents, ``Unsupported`` for a request this
    backend cannot honour.

    Idempotency: flows run tasks at least once (a task interrupted by a crash runs again), so
    every create succeeds when the object already exists as requested and every delete /
    remove / terminate succeeds when there is nothing left to remove.
    """

    #: True if :meth:`extend_volume` works while the volume is attached and the consumer
    #: sees the new size (e.g. the loopback driver refreshes its loop devices). The worker
    #: reports it as the capability ``online_extend_support``; the API extends an
    #: ``in-use`` volume only where it is True (microversion 3.42). Default: False, the
    #: safe answer for a driver that does not say.
    online_extend_support: bool = False

    @abc.abstractmethod
    def do_setup(self, context: RequestContext | None) -> None:
        """Prepare the backend (connect, create directories, check tools).

        Called once at service start, before anything else.

        :param context: admin :class:`~blockmgr.context.RequestContext` (may be None in tools).
        :raises ConfigurationError: the backend is misconfigured.
        :raises VolumeBackendAPIException: the backend cannot be reached.
        """

    @abc.abstractmethod
    def check_for_setup_error(self) -> None:
        """Raise if the backend is not usable; the service then stays down and retries.

        :raises ConfigurationError: a configuration problem an operator must fix.
        :raises VolumeBackendAPIException: the backend is not usable now.
        """

    @abc.abstractmethod
    def get_volume_stats(self, refresh: bool = False) -> VolumeStats:
        """Capacity report (:class:`~blockmgr.interface.stats.VolumeStats`).

        Top level: ``volume_backend_name``, ``vendor_name``, ``driver_version``,
        ``storage_protocol`` and a non-empty ``pools`` list whose entries carry ``pool_name``,
        ``total_capacity_gb``, ``free_capacity_gb`` (numbers in GiB, or ``'unknown'`` /
        ``'infinite'``; ``0 <= free <= total``), ``provisioned_capacity_gb`` (sum of the sizes
        of the volumes on the pool, in GiB), ``reserved_percentage`` (0-100),
        ``max_over_subscription_ratio`` (>= 1), ``thin_provisioning_support``,
        ``thick_provisioning_support``.

        :param refresh: True: measure now. False: a cached report is fine; must be cheap.
        :returns: the report; the worker checks it at each refresh and publishes nothing
            (the backend keeps its previous report) when a key is missing or wrong.
        :raises VolumeBackendAPIException: the backend cannot be queried (refresh only).
        """

    @abc.abstractmethod
    def create_volume(self, volume: VolumeView) -> VolumeModelUpdate | None:
        """Allocate ``volume.size`` GiB for ``volume``, reading as zeros. No export.

        Idempotent: if the object already exists with the requested size, succeed.

        :param volume: VolumeView of the new volume.
        :returns: model update (e.g. ``provider_location``) or None.
        :raises VolumeBackendAPIException: allocation failed (nothing is left behind).
        """

    @abc.abstractmethod
    def delete_volume(self, volume: VolumeView) -> None:
        """Delete the volume's backend object and its data.

        Idempotent: succeeds if the object is already gone (or never existed).

        :param volume: VolumeView.
        :raises VolumeIsBusy: it has dependents (e.g. snapshots) and nothing was deleted.
        :raises VolumeBackendAPIException: the backend failed.
        """

    @abc.abstractmethod
    def create_snapshot(self, snapshot: SnapshotView) -> SnapshotModelUpdate | None:
        """Take a point-in-time copy of volume ``snapshot.volume_name`` (later writes to the
        volume never show in the snapshot).

        Idempotent: an existing snapshot of that name is success.

        :param snapshot: SnapshotView of the new snapshot.
        :returns: model update or None.
        :raises VolumeBackendAPIException: the backend failed.
        """

    @abc.abstractmethod
    def delete_snapshot(self, snapshot: SnapshotView) -> None:
        """Delete a snapshot. Idempotent: succeeds if already gone.

        :param snapshot: SnapshotView.
        :raises SnapshotIsBusy: volumes still depend on it and nothing was deleted.
        """

    @abc.abstractmethod
    def create_volume_from_snapshot(self, volume: VolumeView,
                                    snapshot: SnapshotView) -> VolumeModelUpdate | None:
        """Create ``volume`` holding the snapshot's data, grown to ``volume.size`` (the new
        space reads as zeros). The new volume is independent of the snapshot's later fate.

        :param volume: VolumeView of the new volume (``volume.size >= snapshot.volume_size``).
        :param snapshot: SnapshotView of the source.
        :returns: model update or None.
        :raises SnapshotNotFound: the snapshot's backend object does not exist.
        """

    @abc.abstractmethod
    def create_cloned_volume(self, volume: VolumeView,
                             src_vref: VolumeView) -> VolumeModelUpdate | None:
        """Create ``volume`` as a copy of volume ``src_vref``, grown to ``volume.size``.
        Later writes to either volume do not show in the other.

        :param volume: VolumeView of the new volume.
        :param src_vref: VolumeView of the source volume.
        :returns: model update or None.
        :raises VolumeNotFound: the source's backend object does not exist.
        """

    @abc.abstractmethod
    def extend_volume(self, volume: VolumeView, new_size: int) -> None:
        """Grow the volume to ``new_size`` GiB, keeping its data; the new space reads as zeros.

        Idempotent: a volume already of ``new_size`` is success.

        :param volume: VolumeView (``volume.size`` is the current size).
        :param new_size: the new size in GiB.
        :raises VolumeBackendAPIException: not enough space or the backend failed.
        """

    @abc.abstractmethod
    def create_export(self, context: RequestContext, volume: VolumeView,
                      connector: Connector) -> VolumeModelUpdate | None:
        """Make the volume reachable for ``connector``.

        :param context: RequestContext.
        :param volume: VolumeView.
        :param connector: os-brick connector properties dict (``host``, ``initiator``...).
        :returns: model update (e.g. ``provider_location``/``provider_auth``) or None.
        """

    @abc.abstractmethod
    def ensure_export(self, context: RequestContext,
                      volume: VolumeView) -> VolumeModelUpdate | None:
        """Re-create an export after a restart (for volumes in use). Idempotent.

        :returns: model update or None.
        """

    @abc.abstractmethod
    def remove_export(self, context: RequestContext, volume: VolumeView) -> None:
        """Tear the export down. Idempotent: succeeds if there is none."""

    @abc.abstractmethod
    def initialize_connection(self, volume: VolumeView, connector: Connector) -> ConnectionInfo:
        """Attach ``volume`` for ``connector``.

        :returns: ``{'driver_volume_type': str, 'data': dict}``, the connection info an
            os-brick connector of that type consumes (e.g. ``'local'`` with
            ``{'device_path': ...}``).
        :raises VolumeBackendAPIException: the attachment could not be made.
        """

    @abc.abstractmethod
    def terminate_connection(self, volume: VolumeView, connector: Connector | None,
                             **kwargs: Any) -> None:
        """Undo ``initialize_connection`` for ``connector`` (None: every connector).

        Idempotent: succeeds if there is no connection.
        """

    def revert_to_snapshot(self, context: RequestContext, volume: VolumeView,
                           snapshot: SnapshotView) -> None:
        """Make the volume's data the snapshot's again (volume action ``revert``). The
        snapshot stays, with its data, and may be reverted to again.

        The manager calls it only for the volume's latest snapshot, taken at the volume's
        current size (``volume.size == snapshot.volume_size``), with the volume detached.

        Idempotent: a revert interrupted by a crash runs again and must leave the snapshot's
        data (reverting twice is the same as once). A driver that consumes the snapshot to
        revert (an LVM merge) takes it again before returning, under the same name.

        The default raises ``Unsupported`` without touching anything: there is no generic
        fallback (copying the snapshot over the volume through the manager would need both
        attached to the worker host). The volume then stays ``available`` with the reason
        recorded (also after ``VolumeIsBusy``); any other error leaves it ``error``.

        :param context: RequestContext.
        :param volume: VolumeView of the volume to revert.
        :param snapshot: SnapshotView of its latest snapshot.
        :raises Unsupported: this backend cannot revert; nothing was changed.
        :raises VolumeIsBusy: the volume is in use on the backend; nothing was changed.
        :raises SnapshotNotFound: the snapshot's backend object does not exist.
        :raises VolumeBackendAPIException: the backend failed (the volume may hold anything).
        """
        raise exception.Unsupported(operation="revert_to_snapshot",
                                    what="driver %s" % type(self).__name__)
