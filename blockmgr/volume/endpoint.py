"""The RPC endpoint of one volume backend: the methods :class:`~blockmgr.volume.rpcapi.
VolumeAPI` sends, served by the :class:`~blockmgr.volume.manager.VolumeManager` (operations
that run flows) and by the driver directly (connections, manageable listings, capabilities).

Every method takes the request context first (a :class:`~blockmgr.context.RequestContext`,
rebuilt by :class:`blockmgr.rpc.RequestContextSerializer`) and ids, never rows; results are
JSON. Errors are blockmgr exceptions, declared *expected* so oslo.messaging logs them as
debug instead of a traceback; they reach a ``call``'s caller rebuilt with their kwargs (see
:mod:`blockmgr.rpc`). A failed ``cast`` has nobody to tell: it is logged here once, and the
resource's status (set by the flow) tells the user.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

import oslo_messaging

from blockmgr import exception
from blockmgr import ledger as bm_ledger
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.interface.capabilities import Capability
from blockmgr.interface.objects import SnapshotView
from blockmgr.interface.objects import VolumeView

LOG = logging.getLogger(__name__)

#: Columns a driver's export model update may set.
_EXPORT_COLUMNS = frozenset({"provider_location", "provider_auth", "provider_id"})
_CONNECTABLE = frozenset({states.VolumeStatus.AVAILABLE, states.VolumeStatus.IN_USE})


def _cast(func):
    """An endpoint for a cast: expected errors are logged here (nobody else will)."""
    @functools.wraps(func)
    def wrapper(self, context, *args, **kwargs):
        try:
            return func(self, context, *args, **kwargs)
        except exception.BlockmgrError as exc:
            LOG.warning("%s(%s) on %s failed: %s", func.__name__,
                        ", ".join(map(str, args)) or kwargs, self.host, exc.msg)
            raise
    return oslo_messaging.expected_exceptions(exception.BlockmgrError)(wrapper)


def _call(func):
    """An endpoint for a call: the caller gets the error."""
    return oslo_messaging.expected_exceptions(exception.BlockmgrError)(func)


def _backend_failure(what: str, exc: Exception) -> exception.BlockmgrError:
    if isinstance(exc, exception.BlockmgrError):
        return exc
    error = exception.VolumeBackendAPIException(reason="%s: %s: %s"
                                                % (what, type(exc).__name__, exc))
    error.__cause__ = exc
    return error


class VolumeEndpoint:
    """See the module docstring. Version history: :class:`blockmgr.volume.rpcapi.VolumeAPI`.

    :param manager: the backend's VolumeManager (already through ``init_host``).
    :param capabilities: returns the latest capacity report of the backend.
    """

    RPC_API_VERSION = "1.3"
    target = oslo_messaging.Target(version=RPC_API_VERSION)

    #: The backend's :class:`blockmgr.ledger.Ledger`: messages carrying a ``request_id``
    #: run only once it claims that request (None: every message runs as it comes).
    ledger = None

    def __init__(self, manager, capabilities: Callable[[], dict],
                 publish: Callable[[], object] | None = None):
        self.manager = manager
        self.driver = manager.driver
        self.db = manager.db
        self.host = manager.host
        self._capabilities = capabilities
        self._publish = publish

    # --- flows (VolumeManager) ----------------------------------------------------------

    @_cast
    @bm_ledger.served(defer_claim=True)   # reads only before its flow's first write
    def create_volume(self, context, volume_id, request_spec=None, filter_properties=None,
                      allow_reschedule=True):
        return self.manager.create_volume(context, volume_id, request_spec=request_spec,
                                          filter_properties=filter_properties,
                                          allow_reschedule=allow_reschedule)

    @_cast
    @bm_ledger.served
    def manage_existing(self, context, volume_id, ref):
        return self.manager.manage_existing(context, volume_id, ref)

    @_cast
    @bm_ledger.served
    def manage_existing_snapshot(self, context, snapshot_id, ref):
        return self.manager.manage_existing_snapshot(context, snapshot_id, ref)

    @_cast
    @bm_ledger.served
    def delete_volume(self, context, volume_id, unmanage_only=False, cascade=False):
        return self.manager.delete_volume(context, volume_id, unmanage_only=unmanage_only,
                                          cascade=cascade)

    @_cast
    @bm_ledger.served
    def create_snapshot(self, context, snapshot_id):
        return self.manager.create_snapshot(context, snapshot_id)

    @_cast
    @bm_ledger.served
    def delete_snapshot(self, context, snapshot_id, unmanage_only=False):
        return self.manager.delete_snapshot(context, snapshot_id, unmanage_only=unmanage_only)

    @_cast
    @bm_ledger.served
    def extend_volume(self, context, volume_id, new_size, reservations=None):
        return self.manager.extend_volume(context, volume_id, new_size,
                                          reservations=reservations)

    @_cast
    @bm_ledger.served
    def create_group(self, context, group_id):
        return self.manager.create_group(context, group_id)

    @_cast
    @bm_ledger.served
    def delete_group(self, context, group_id):
        return self.manager.delete_group(context, group_id)

    @_cast
    @bm_ledger.served
    def update_group(self, context, group_id, add_volumes=None, remove_volumes=None):
        return self.manager.update_group(context, group_id, add_volumes=add_volumes,
                                         remove_volumes=remove_volumes)

    @_cast
    @bm_ledger.served
    def create_group_snapshot(self, context, group_snapshot_id):
        return self.manager.create_group_snapshot(context, group_snapshot_id)

    @_cast
    @bm_ledger.served
    def delete_group_snapshot(self, context, group_snapshot_id):
        return self.manager.delete_group_snapshot(context, group_snapshot_id)

    @_cast
    @bm_ledger.served
    def create_group_from_src(self, context, group_id, group_snapshot_id=None,
                              source_group_id=None):
        return self.manager.create_group_from_src(context, group_id,
                                                  group_snapshot_id=group_snapshot_id,
                                                  source_group_id=source_group_id)

    @_cast
    @bm_ledger.served
    def detach_volume(self, context, volume_id, attachment_id, force=False):
        """(1.2) End attachment ``attachment_id`` of ``volume_id`` (``detaching``)."""
        return self.manager.detach_volume(context, volume_id, attachment_id,
                                          force=bool(force))

    @_cast
    @bm_ledger.served
    def revert_to_snapshot(self, context, volume_id, snapshot_id):
        """(1.3) Revert ``volume_id`` (``reverting``) to its latest snapshot ``snapshot_id``
        (``restoring``)."""
        return self.manager.revert_to_snapshot(context, volume_id, snapshot_id)

    @_call
    def connect_attachment(self, context, volume_id, attachment_id, connector):
        """(1.2) Export the volume and connect the attachment for ``connector``; returns
        ``{'driver_volume_type', 'data'}`` (``data`` gains ``volume_id``,
        ``attachment_id`` and the attachment's ``access_mode``).

        :raises InvalidInput: ``connector`` is not a dict.
        :raises InvalidVolume, InvalidAttachment: not held for this attachment, or not on
            this backend.
        :raises VolumeBackendAPIException: export or connection failed (both undone).
        """
        if not isinstance(connector, dict):
            raise exception.InvalidInput(reason="connector must be a dict of connector "
                                                "properties, got %s" % type(connector).__name__)
        try:
            return self.manager.connect_attachment(context, volume_id, attachment_id,
                                                   connector)
        except Exception as exc:
            raise _backend_failure("connect", exc) from exc

    # --- driver calls -------------------------------------------------------------------

    @_call
    def initialize_connection(self, context, volume_id, connector):
        """Export the volume and attach it for ``connector``: returns
        ``{'driver_volume_type', 'data'}`` (os-brick connection info; ``data`` gains
        ``volume_id`` and ``access_mode`` ``rw`` unless the driver set them).

        :raises InvalidInput: ``connector`` is not a dict.
        :raises InvalidVolume: not on this backend, or not ``available``/``in-use``.
        :raises VolumeBackendAPIException: export or attach failed (the export is removed).
        """
        if not isinstance(connector, dict):
            raise exception.InvalidInput(reason="connector must be a dict of connector "
                                                "properties, got %s" % type(connector).__name__)
        view = self._volume(volume_id)
        if view.status not in _CONNECTABLE:
            raise exception.InvalidVolume(
                reason="volume %s is %s; only available or in-use volumes can be connected"
                % (volume_id, view.status))
        try:
            update = self.driver.create_export(context, view, connector) or {}
        except Exception as exc:
            raise _backend_failure("create_export", exc) from exc
        unknown = set(update) - _EXPORT_COLUMNS
        if unknown:
            raise exception.VolumeDriverException(
                reason="create_export returned columns it may not set: %s"
                % ", ".join(sorted(unknown)))
        if update:
            with self.db.writer() as session:
                repository.update(session, repository.get(session, models.Volume, volume_id),
                                  **update)
            view = view.with_changes(**update)
        try:
            info = self.driver.initialize_connection(view, connector)
            if (not isinstance(info, dict) or not info.get("driver_volume_type")
                    or not isinstance(info.get("data"), dict)):
                raise exception.VolumeDriverException(
                    reason="initialize_connection must return {'driver_volume_type': str, "
                           "'data': dict}, got %r" % (info,))
        except Exception as exc:
            self._remove_export_quietly(context, view)
            raise _backend_failure("initialize_connection", exc) from exc
        data = dict(info["data"])
        data.setdefault("volume_id", volume_id)
        data.setdefault("access_mode", "rw")
        return {"driver_volume_type": info["driver_volume_type"], "data": data}

    @_call
    def terminate_connection(self, context, volume_id, connector, force=False):
        """Undo ``initialize_connection`` for ``connector`` (None: every connector).
        Idempotent; the export itself stays (a later detach removes it)."""
        view = self._volume(volume_id)
        try:
            self.driver.terminate_connection(view, connector, force=bool(force))
        except Exception as exc:
            raise _backend_failure("terminate_connection", exc) from exc

    @_call
    def get_manageable_volumes(self, context, marker=None, limit=None, offset=None,
                               sort_keys=None, sort_dirs=None):
        """Backend objects that could be managed (``VolumeManagementDriver`` contract)."""
        self.manager.driver_capabilities.require(Capability.VOLUME_MANAGEMENT,
                                                 "get_manageable_volumes", self.host)
        with self.db.reader() as session:
            known = [VolumeView.from_model(row)
                     for row in repository.volumes_on_host(session, self.host)]
        return self.driver.get_manageable_volumes(known, marker, limit, offset, sort_keys,
                                                  sort_dirs)

    @_call
    def get_manageable_snapshots(self, context, marker=None, limit=None, offset=None,
                                 sort_keys=None, sort_dirs=None):
        """Backend snapshots that could be managed (``SnapshotManagementDriver``)."""
        self.manager.driver_capabilities.require(Capability.SNAPSHOT_MANAGEMENT,
                                                 "get_manageable_snapshots", self.host)
        with self.db.reader() as session:
            known = [SnapshotView.from_model(row)
                     for row in repository.snapshots_on_host(session, self.host)]
        return self.driver.get_manageable_snapshots(known, marker, limit, offset, sort_keys,
                                                    sort_dirs)

    def publish_capabilities(self, context):
        """Fanout target (1.1): a scheduler that starts asks every backend to send its
        capacity report now, instead of waiting up to ``backend_stats_polling_interval``."""
        if self._publish is not None:
            try:
                self._publish()
            except Exception:
                LOG.warning("Could not publish the capabilities of %s on request", self.host,
                            exc_info=True)

    @_call
    def get_capabilities(self, context):
        """The backend's capacity report as of now (driver stats as last measured, the
        allocation as of this moment). ``online_extend_support`` is what the driver class
        declares (:attr:`blockmgr.interface.VolumeDriver.online_extend_support`), as
        recorded when it loaded."""
        report = dict(self._capabilities() or {})
        report["online_extend_support"] = (Capability.ONLINE_EXTEND
                                           in self.manager.driver_capabilities)
        return report

    # --- helpers ------------------------------------------------------------------------

    def _volume(self, volume_id) -> VolumeView:
        if not isinstance(volume_id, str) or not volume_id:
            raise exception.InvalidInput(reason="volume id must be a non-empty string")
        with self.db.reader() as session:
            view = VolumeView.from_model(repository.get(session, models.Volume, volume_id))
        if (view.host or "").partition("#")[0] != self.host:
            raise exception.InvalidVolume(reason="volume %s is on %s, not on this backend %s"
                                          % (volume_id, view.host, self.host))
        return view

    def _remove_export_quietly(self, context, view) -> None:
        try:
            self.driver.remove_export(context, view)
        except Exception:
            LOG.warning("remove_export of %s failed after a failed attach", view.id,
                        exc_info=True)
