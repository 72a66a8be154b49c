"""Client side of the scheduler RPC API (topic ``blockmgr-scheduler``).

Every method is a cast: the caller (an API service, or a volume worker rescheduling a failed
create) learns the outcome from the resource's status, never from a reply. Arguments are ids
and JSON dicts only; the context travels as its dict (:mod:`blockmgr.rpc`).
"""

from __future__ import annotations

from blockmgr import rpc


class SchedulerAPI:
    """Casts to the schedulers.

    Version history (bump the minor version for a compatible addition, the major for a
    break; servers declare the highest version they accept in ``SchedulerManager.target``):

    * 1.0 - Initial version: ``create_volume``, ``manage_existing``,
      ``manage_existing_snapshot``, ``create_group``, ``extend_volume`` and the fanout
      ``update_service_capabilities``.

    ``create_volume`` has the signature of the volume workers' ``reschedule`` callable, so a
    bound ``SchedulerAPI(transport).create_volume`` is what a worker is given.
    """

    RPC_API_VERSION = "1.0"

    def __init__(self, transport, *, timeout: float | None = None, retry: int | None = None):
        """``retry``: broker reconnection attempts per send (:func:`blockmgr.rpc.get_client`;
        None: forever)."""
        self._client = rpc.get_client(transport, rpc.SCHEDULER_TOPIC,
                                      version=self.RPC_API_VERSION, timeout=timeout,
                                      retry=retry)
        self._fanout = rpc.get_client(transport, rpc.SCHEDULER_TOPIC,
                                      version=self.RPC_API_VERSION, fanout=True,
                                      timeout=timeout, retry=retry)

    def ring(self, ctx, action: str, arguments: dict, request_id: str) -> None:
        """Wake a scheduler up for ledger request ``request_id``: cast ``action`` with the
        request's ``arguments`` and its id (:mod:`blockmgr.ledger`)."""
        self._client.cast(ctx, action, request_id=request_id, **arguments)

    def create_volume(self, ctx, volume_id: str, request_spec: dict,
                      filter_properties: dict | None = None) -> None:
        """Place volume ``volume_id`` (status ``creating``) and cast it to its backend.

        ``filter_properties['retry']`` (``num_attempts``, ``backends``, ``exc``) is present
        on a reschedule; the scheduler counts the attempt and skips the backends tried.
        """
        self._client.cast(ctx, "create_volume", volume_id=volume_id,
                          request_spec=dict(request_spec or {}),
                          filter_properties=dict(filter_properties or {}))

    def manage_existing(self, ctx, volume_id: str, ref: dict, host: str) -> None:
        """Route the import of ``ref`` as volume ``volume_id`` (``managing``) to ``host``."""
        self._client.cast(ctx, "manage_existing", volume_id=volume_id, ref=dict(ref),
                          host=host)

    def manage_existing_snapshot(self, ctx, snapshot_id: str, ref: dict, host: str) -> None:
        """Route the import of ``ref`` as snapshot ``snapshot_id`` to ``host`` (its
        volume's backend)."""
        self._client.cast(ctx, "manage_existing_snapshot", snapshot_id=snapshot_id,
                          ref=dict(ref), host=host)

    def create_group(self, ctx, group_id: str, request_spec: dict) -> None:
        """Place consistency group ``group_id`` (``creating``) and cast it to its backend."""
        self._client.cast(ctx, "create_group", group_id=group_id,
                          request_spec=dict(request_spec or {}))

    def extend_volume(self, ctx, volume_id: str, new_size: int,
                      reservations: list[str] | None) -> None:
        """Check volume ``volume_id``'s pool can grow it to ``new_size`` GiB, then cast the
        extend (with the API's ``gigabytes`` reservation uuids) to its backend."""
        self._client.cast(ctx, "extend_volume", volume_id=volume_id, new_size=new_size,
                          reservations=list(reservations or []))

    def update_service_capabilities(self, ctx, service_name: str, host: str,
                                    capabilities: dict, timestamp: str | None = None) -> None:
        """Fanout a capacity report of ``host`` (``host@backend``) to every scheduler."""
        self._fanout.cast(ctx, "update_service_capabilities", service_name=service_name,
                          host=host, capabilities=capabilities, timestamp=timestamp)
