"""The one exception hierarchy of blockmgr.

Every error a user, operator or driver author can see derives from :class:`BlockmgrError`.
Each class formats ``msg_fmt`` with the keyword arguments it was given, so the message is
always human readable, and keeps the kwargs (``.kwargs``) so the error can cross RPC and be
rebuilt on the other side (``to_dict`` / ``from_dict``). Families group errors by meaning and
carry the HTTP status the REST API maps them to; add a new class only when a caller needs to
tell it apart, never one class per message.
"""

from __future__ import annotations

import logging
from typing import Any

LOG = logging.getLogger(__name__)

_REGISTRY: dict[str, type["BlockmgrError"]] = {}


class BlockmgrError(Exception):
    """Root of all blockmgr errors. ``code`` is the HTTP status the API uses."""

    msg_fmt = "An unknown error occurred."
    code = 500
    #: False for failures that a different backend could not fix (create is not rescheduled).
    reschedulable = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, message: str | None = None, **kwargs: Any):
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError, ValueError):
                # A wrong kwarg must never hide the real failure behind a formatting error.
                LOG.exception("Bad kwargs %r for %s", kwargs, type(self).__name__)
                message = "%s (%s)" % (self.msg_fmt, kwargs)
        self.msg = str(message)
        super().__init__(self.msg)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form, for RPC replies and flow logbooks."""
        return {"type": type(self).__name__, "message": self.msg,
                "kwargs": {k: _jsonable(v) for k, v in self.kwargs.items()}}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "BlockmgrError":
        cls = _REGISTRY.get(data.get("type", ""), BlockmgrError)
        err = cls.__new__(cls)
        err.kwargs = dict(data.get("kwargs") or {})
        err.msg = data.get("message") or cls.msg_fmt
        Exception.__init__(err, err.msg)
        return err


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


# --- families -------------------------------------------------------------------------------

class NotFound(BlockmgrError):
    msg_fmt = "Resource could not be found."
    code = 404
    reschedulable = False


class Invalid(BlockmgrError):
    msg_fmt = "Invalid request: %(reason)s"
    code = 400
    reschedulable = False


class Conflict(BlockmgrError):
    msg_fmt = "The request conflicts with the current state: %(reason)s"
    code = 409
    reschedulable = False


class QuotaError(BlockmgrError):
    msg_fmt = "Quota error: %(reason)s"
    code = 413
    reschedulable = False


class Unsupported(BlockmgrError):
    msg_fmt = "Operation %(operation)s is not supported by %(what)s."
    code = 501
    reschedulable = False


class DriverError(BlockmgrError):
    msg_fmt = "Backend driver error: %(reason)s"
    code = 500


class BackendUnavailable(BlockmgrError):
    msg_fmt = "Backend %(backend)s is unavailable: %(reason)s"
    code = 503


class ConfigurationError(BlockmgrError):
    msg_fmt = "Configuration error in [%(section)s] %(option)s: %(reason)s"
    code = 500
    reschedulable = False


# --- not found ------------------------------------------------------------------------------

class VolumeNotFound(NotFound):
    msg_fmt = "Volume %(volume_id)s could not be found."


class SnapshotNotFound(NotFound):
    msg_fmt = "Snapshot %(snapshot_id)s could not be found."


class AttachmentNotFound(NotFound):
    msg_fmt = "Attachment %(attachment_id)s could not be found."


class GroupNotFound(NotFound):
    msg_fmt = "Group %(group_id)s could not be found."


class GroupSnapshotNotFound(NotFound):
    msg_fmt = "Group snapshot %(group_snapshot_id)s could not be found."


class ServiceNotFound(NotFound):
    msg_fmt = "Service %(service)s could not be found."


class ReservationNotFound(NotFound):
    msg_fmt = "Quota reservation %(uuid)s could not be found."


class DriverNotFound(NotFound):
    msg_fmt = "Volume driver %(name)s could not be found; known drivers: %(known)s."


class FlowNotFound(NotFound):
    msg_fmt = "Flow %(flow_id)s could not be found."


# --- invalid --------------------------------------------------------------------------------

class InvalidInput(Invalid):
    msg_fmt = "Invalid input received: %(reason)s"


class InvalidStatusTransition(Conflict):
    msg_fmt = ("%(resource)s %(resource_id)s cannot go from status '%(current)s' to "
               "'%(requested)s'; allowed from '%(current)s': %(allowed)s.")


class InvalidVolume(Invalid):
    msg_fmt = "Invalid volume: %(reason)s"


class InvalidSnapshot(Invalid):
    msg_fmt = "Invalid snapshot: %(reason)s"


class InvalidGroup(Invalid):
    msg_fmt = "Invalid group: %(reason)s"


class UnknownQuotaResource(Invalid):
    msg_fmt = "Unknown quota resource(s): %(resources)s; known: %(known)s."


class InvalidQuotaValue(Invalid):
    msg_fmt = "Invalid quota value for %(resource)s: %(reason)s"


class VolumeAttached(InvalidVolume):
    """A destructive operation on a volume a consumer holds (reserved, attaching,
    in-use, detaching): refused with 400 as Cinder does."""

    msg_fmt = "Volume %(volume_id)s is still attached or reserved; detach it first."


class InvalidAttachment(Invalid):
    msg_fmt = "Invalid attachment: %(reason)s"


class VolumeTypeNotFound(NotFound):
    msg_fmt = "Volume type %(volume_type_id)s could not be found."


class VolumeTypeExtraSpecNotFound(NotFound):
    msg_fmt = "Volume type %(volume_type_id)s has no extra spec %(key)s."


class VolumeTypeAccessNotFound(NotFound):
    msg_fmt = "Project %(project_id)s has no access to volume type %(volume_type_id)s."


class InvalidVolumeType(InvalidInput):
    """A volume type that cannot be used or changed as asked: unknown or private type
    named on a volume create, the default type renamed or deleted, a type in use deleted."""

    msg_fmt = "Invalid volume type: %(reason)s"


class VolumeTypeExists(Conflict):
    msg_fmt = "A volume type named %(name)s already exists; choose another name."


class VolumeTypeAccessExists(Conflict):
    msg_fmt = "Project %(project_id)s already has access to volume type %(volume_type_id)s."


class ManageExistingInvalidReference(Invalid):
    msg_fmt = "Manage existing failed due to invalid backend reference %(existing_ref)s: %(reason)s"


class ManageExistingAlreadyManaged(Invalid):
    msg_fmt = "Unable to manage existing object: %(reason)s is already managed."


class ManageExistingVolumeTypeMismatch(Invalid):
    msg_fmt = "Manage existing failed, volume type mismatch: %(reason)s"


# --- conflict -------------------------------------------------------------------------------

class VolumeIsBusy(Conflict):
    msg_fmt = "Volume %(volume_name)s is still in use or has dependent objects."


class SnapshotIsBusy(Conflict):
    msg_fmt = "Snapshot %(snapshot_name)s is still in use or has dependent objects."




# --- quota ----------------------------------------------------------------------------------

class OverQuota(QuotaError):
    msg_fmt = ("Quota exceeded for project %(project_id)s: requested %(requested)s, "
               "limits %(limits)s, in use %(in_use)s, reserved %(reserved)s.")

    @property
    def overs(self) -> list[str]:
        return list(self.kwargs.get("overs") or [])


class VolumeSizeExceedsLimit(QuotaError):
    msg_fmt = ("Requested volume size %(size)d GiB is larger than the maximum allowed "
               "%(limit)d GiB per volume.")


# --- driver / backend -----------------------------------------------------------------------

class VolumeDriverException(DriverError):
    msg_fmt = "Volume driver reported an error: %(reason)s"


class VolumeBackendAPIException(DriverError):
    msg_fmt = "Bad or unexpected response from the storage backend: %(reason)s"


class DriverNotInitialized(DriverError):
    msg_fmt = "Volume driver %(driver)s is not initialized: %(reason)s"


class CommandExecutionError(DriverError):
    msg_fmt = ("Command %(cmd)s failed with exit code %(exit_code)s: %(stderr)s")


class DriverContractError(DriverError):
    """A driver class breaks the contract of an interface it inherits: a method of a
    capability it declares is missing or has an incompatible signature. Raised when the
    driver loads, so the backend stays down with this reason instead of failing on the first
    request that needs the method; ``blockmgr-manage driver check`` lists every problem."""

    msg_fmt = ("Driver %(driver)s cannot be loaded: %(reason)s. Run 'blockmgr-manage driver "
               "check %(driver)s' for the full report.")
    reschedulable = False


class InvalidDriverStats(DriverError):
    """``get_volume_stats`` returned a report the schedulers cannot use (a required key
    missing, a value of the wrong type or out of range); the report is not published."""

    msg_fmt = ("Driver %(driver)s returned an invalid stats report: %(key)s %(reason)s "
               "(see blockmgr.interface.stats.VolumeStats).")
    reschedulable = False


class NoValidBackend(BlockmgrError):
    msg_fmt = "No valid backend was found: %(reason)s"
    code = 400
    reschedulable = False


class MetadataUpdateFailure(DriverError):
    msg_fmt = "Failed to update metadata for %(resource_id)s: %(reason)s"
    reschedulable = False


# --- flows ----------------------------------------------------------------------------------

class FlowInterrupted(BlockmgrError):
    """Recorded as the failure of a task that a worker crash interrupted and that recovery
    reverts instead of running again (see ``docs/flows.md``)."""

    msg_fmt = ("Flow %(flow_id)s was interrupted by a worker restart during %(task)s and "
               "was reverted.")
    reschedulable = False


class FlowLogbookWriteFailed(BlockmgrError):
    """The flow logbook (``[flows] persistence_connection``) refused a write while a flow
    ran, so its progress may not be recorded; the runner then finishes the flow from what
    the logbook holds, as a restart would (``docs/flows.md``)."""

    msg_fmt = ("Could not record the progress of flow %(flow_id)s in the flow logbook: "
               "%(reason)s. Check that the logbook database is reachable and writable; the "
               "flow is finished from its last recorded step once it is (at the latest when "
               "the worker restarts).")
    reschedulable = False


class RequestNotClaimed(BlockmgrError):
    """A request whose claim was deferred to its first write (``blockmgr.ledger``) was not
    pending for a first claim when that write came: another process holds it, it is done,
    or it waits for a retry. Nothing of the run was written; the ledger then claims the
    request the usual way, or leaves it to its holder."""

    msg_fmt = ("Request %(request_id)s was not pending for a first claim; this run wrote "
               "nothing and leaves it to the ledger.")
    reschedulable = False


# --- cluster mode ---------------------------------------------------------------------------

class ClusterUnavailable(BackendUnavailable):
    """The Redis jobboard or the lock service of a clustered backend cannot be reached:
    the request is refused before anything was changed (``docs/cluster.md``)."""

    msg_fmt = ("Backend %(backend)s cannot coordinate with its cluster peers through "
               "%(url)s: %(reason)s. Check that Redis answers there.")


# --- policy ---------------------------------------------------------------------------------

class NotAuthorized(BlockmgrError):
    """The caller is known but may not do this (a non-admin changing quotas, reading another
    project's quota). Resources of another project are reported as not found instead, so
    their ids do not leak."""

    msg_fmt = "Not authorized: %(reason)s"
    code = 403


# --- service start-up -----------------------------------------------------------------------

class ServiceStartError(BlockmgrError):
    """A long-running command cannot start: its port is taken, its state directory is in use
    by another process, ... ``reason`` says what to do about it."""

    msg_fmt = "%(service)s cannot start: %(reason)s"
    reschedulable = False
