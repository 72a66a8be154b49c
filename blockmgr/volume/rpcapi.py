"""Client side of the volume RPC API: what API services and the scheduler send to a backend.

Every method takes the request context and the backend ``host`` (``host@backend`` with an
optional ``#pool``, which is stripped: the message goes to topic
:data:`blockmgr.rpc.VOLUME_TOPIC`, server ``host@backend``), then ids. Casts return at once;
calls block for the result up to ``timeout`` (default ``[DEFAULT] rpc_response_timeout``) and
raise the endpoint's blockmgr error as a plain instance of its class
(:func:`blockmgr.rpc.local_error`), ``oslo_messaging.MessagingTimeout`` if nobody answers.
"""

from __future__ import annotations

from blockmgr import exception
from blockmgr import rpc


class VolumeAPI:
    """Volume RPC client.

    Version history (server side: :class:`blockmgr.volume.endpoint.VolumeEndpoint`):

    * 1.3 -- cast ``revert_to_snapshot`` (a ledger request: revert a volume to its latest
      snapshot).
    * 1.2 -- call ``connect_attachment`` (export and connect an attachment, returns the
      connection info); cast ``detach_volume`` (a ledger request: end an attachment).
    * 1.1 -- fanout cast ``publish_capabilities`` (a starting scheduler asks for reports).
    * 1.0 -- initial version: casts ``create_volume``, ``manage_existing``,
      ``manage_existing_snapshot``, ``delete_volume``, ``create_snapshot``,
      ``delete_snapshot``, ``extend_volume``, ``create_group``, ``delete_group``,
      ``update_group``, ``create_group_snapshot``, ``delete_group_snapshot``,
      ``create_group_from_src``; calls ``initialize_connection``, ``terminate_connection``,
      ``get_manageable_volumes``, ``get_manageable_snapshots``, ``get_capabilities``.

    A new method or argument bumps the minor version here and in the endpoint's
    ``RPC_API_VERSION``; the client then sends that version for it, so an older server
    refuses it (``UnsupportedVersion``) instead of misbehaving.
    """

    RPC_API_VERSION = "1.0"
    TOPIC = rpc.VOLUME_TOPIC

    def __init__(self, transport, *, timeout: float | None = None, retry: int | None = None):
        """``retry``: broker reconnection attempts per send (:func:`blockmgr.rpc.get_client`;
        None: forever)."""
        self.transport = transport
        self.timeout = timeout
        self.retry = retry

    def _client(self, host: str, version: str = RPC_API_VERSION):
        if not isinstance(host, str) or not host.partition("#")[0]:
            raise exception.InvalidInput(reason="a volume backend host (host@backend) is "
                                                "required, got %r" % (host,))
        return rpc.get_client(self.transport, self.TOPIC, server=rpc.backend_of(host),
                              version=version, timeout=self.timeout, retry=self.retry)

    def _cast(self, ctxt, host, method, **kwargs) -> None:
        self._client(host).cast(ctxt, method, **kwargs)

    def _call(self, ctxt, host, method, _version: str = RPC_API_VERSION, **kwargs):
        """``_version``: the version a method newer than 1.0 needs (an older server then
        refuses it instead of failing on an unknown method)."""
        try:
            return self._client(host, _version).call(ctxt, method, **kwargs)
        except exception.BlockmgrError as exc:
            raise rpc.local_error(exc) from None

    # --- casts --------------------------------------------------------------------------

    def publish_capabilities(self, ctxt) -> None:
        """Ask every volume backend to send its capacity report to the schedulers now."""
        rpc.get_client(self.transport, self.TOPIC, version="1.1", fanout=True,
                       retry=self.retry).cast(ctxt, "publish_capabilities")

    def ring(self, ctxt, host, action: str, arguments: dict, request_id: str) -> None:
        """Wake backend ``host`` up for ledger request ``request_id``: cast ``action`` with
        the request's ``arguments`` and its id (:mod:`blockmgr.ledger`)."""
        self._cast(ctxt, host, action, request_id=request_id, **arguments)

    def create_volume(self, ctxt, host, volume_id, request_spec, filter_properties,
                      allow_reschedule=True):
        self._cast(ctxt, host, "create_volume", volume_id=volume_id,
                   request_spec=request_spec, filter_properties=filter_properties,
                   allow_reschedule=allow_reschedule)

    def manage_existing(self, ctxt, host, volume_id, ref):
        self._cast(ctxt, host, "manage_existing", volume_id=volume_id, ref=ref)

    def manage_existing_snapshot(self, ctxt, host, snapshot_id, ref):
        self._cast(ctxt, host, "manage_existing_snapshot", snapshot_id=snapshot_id, ref=ref)

    def delete_volume(self, ctxt, host, volume_id, unmanage_only=False, cascade=False):
        self._cast(ctxt, host, "delete_volume", volume_id=volume_id,
                   unmanage_only=unmanage_only, cascade=cascade)

    def create_snapshot(self, ctxt, host, snapshot_id):
        self._cast(ctxt, host, "create_snapshot", snapshot_id=snapshot_id)

    def delete_snapshot(self, ctxt, host, snapshot_id, unmanage_only=False):
        self._cast(ctxt, host, "delete_snapshot", snapshot_id=snapshot_id,
                   unmanage_only=unmanage_only)

    def extend_volume(self, ctxt, host, volume_id, new_size, reservations=None):
        self._cast(ctxt, host, "extend_volume", volume_id=volume_id, new_size=new_size,
                   reservations=reservations)

    def create_group(self, ctxt, host, group_id):
        self._cast(ctxt, host, "create_group", group_id=group_id)

    def delete_group(self, ctxt, host, group_id):
        self._cast(ctxt, host, "delete_group", group_id=group_id)

    def update_group(self, ctxt, host, group_id, add_volumes=None, remove_volumes=None):
        self._cast(ctxt, host, "update_group", group_id=group_id, add_volumes=add_volumes,
                   remove_volumes=remove_volumes)

    def create_group_snapshot(self, ctxt, host, group_snapshot_id):
        self._cast(ctxt, host, "create_group_snapshot", group_snapshot_id=group_snapshot_id)

    def delete_group_snapshot(self, ctxt, host, group_snapshot_id):
        self._cast(ctxt, host, "delete_group_snapshot", group_snapshot_id=group_snapshot_id)

    def create_group_from_src(self, ctxt, host, group_id, group_snapshot_id=None,
                              source_group_id=None):
        self._cast(ctxt, host, "create_group_from_src", group_id=group_id,
                   group_snapshot_id=group_snapshot_id, source_group_id=source_group_id)

    # --- calls --------------------------------------------------------------------------

    def initialize_connection(self, ctxt, host, volume_id, connector) -> dict:
        return self._call(ctxt, host, "initialize_connection", volume_id=volume_id,
                          connector=connector)

    def terminate_connection(self, ctxt, host, volume_id, connector, force=False) -> None:
        return self._call(ctxt, host, "terminate_connection", volume_id=volume_id,
                          connector=connector, force=force)

    def get_manageable_volumes(self, ctxt, host, marker=None, limit=None, offset=None,
                               sort_keys=None, sort_dirs=None) -> list:
        return self._call(ctxt, host, "get_manageable_volumes", marker=marker, limit=limit,
                          offset=offset, sort_keys=sort_keys, sort_dirs=sort_dirs)

    def get_manageable_snapshots(self, ctxt, host, marker=None, limit=None, offset=None,
                                 sort_keys=None, sort_dirs=None) -> list:
        return self._call(ctxt, host, "get_manageable_snapshots", marker=marker, limit=limit,
                          offset=offset, sort_keys=sort_keys, sort_dirs=sort_dirs)

    def get_capabilities(self, ctxt, host) -> dict:
        return self._call(ctxt, host, "get_capabilities")

    def connect_attachment(self, ctxt, host, volume_id, attachment_id, connector) -> dict:
        """(1.2) Export volume ``volume_id`` and connect attachment ``attachment_id`` for
        ``connector``; returns the connection info."""
        return self._call(ctxt, host, "connect_attachment", _version="1.2",
                          volume_id=volume_id, attachment_id=attachment_id,
                          connector=connector)

    def detach_volume(self, ctxt, host, volume_id, attachment_id, force=False):
        """(1.2) End attachment ``attachment_id`` (the API rings it as a ledger request)."""
        self._client(host, "1.2").cast(ctxt, "detach_volume", volume_id=volume_id,
                                       attachment_id=attachment_id, force=force)

    def revert_to_snapshot(self, ctxt, host, volume_id, snapshot_id):
        """(1.3) Revert ``volume_id`` to its latest snapshot ``snapshot_id`` (the API rings it
        as a ledger request)."""
        self._cast(ctxt, host, "revert_to_snapshot", volume_id=volume_id,
                   snapshot_id=snapshot_id)
