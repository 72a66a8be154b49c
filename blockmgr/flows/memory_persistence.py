"""An in-process flow registry with the API of :class:`~blockmgr.flows.persistence.
FlowPersistence`, for tests and benchmarks (``[flows] persistence_connection = memory``)."""

from __future__ import annotations

import threading

from taskflow import exceptions as tf_exc
from taskflow.persistence import base as tf_base
from taskflow.persistence import models as tf_models

from blockmgr.flows.persistence import FINAL_FLOW_STATES
from blockmgr.flows.persistence import PRUNABLE_FLOW_STATES


class MemoryPersistence(tf_base.Backend):
    """In-process flow registry with the API of :class:`FlowPersistence`.

    Lost at process exit: for tests and benchmarks only (``persistence_connection=memory``).

    Why not TaskFlow's ``impl_memory``: it stores every detail in a path-based fake
    filesystem, and every save (about 30 per 7-task flow) builds a connection, walks and
    locks that tree and merges a copy -- ~3.5 ms per flow, a third of the engine's own
    cost -- and its logbook keeps every flow it ever ran, so later flows get slower. Here
    the engine's :class:`~taskflow.storage.Storage` already holds the authoritative objects
    (it merges each saved clone into the flow detail it owns), so a save only has to hand
    the detail back; the backend keeps a reference to each *live* flow detail so that
    :meth:`unfinished_flow_uuids` and :meth:`get_connection` readers see current state.
    A flow that ends ``SUCCESS``/``REVERTED`` is dropped at once when ``prune_on_finish``
    (the runner's default, like ``finished_flow_retention = 0``), otherwise at
    :meth:`prune_finished`; a ``FAILURE`` is kept for an operator, as in the database.
    """

    def __init__(self, prune_on_finish: bool = True):
        super().__init__({})
        self.prune_on_finish = prune_on_finish
        self._lock = threading.Lock()
        self._books: dict[str, tf_models.LogBook] = {}   # uuid -> book (no flow details)
        self._flows: dict[str, tf_models.FlowDetail] = {}
        self._flow_book: dict[str, str] = {}              # flow uuid -> book uuid

    def get_connection(self) -> "_MemoryConnection":
        return _MemoryConnection(self)

    def close(self) -> None:
        """Nothing to release."""

    def upgrade(self) -> None:
        """Nothing to create."""

    def flush(self, flow_uuid: str | None = None) -> None:
        """Every write is immediate."""

    def add_flow_detail(self, book: tf_models.LogBook,
                        flow_detail: tf_models.FlowDetail) -> None:
        with self._lock:
            if book.uuid not in self._books:
                self._books[book.uuid] = _bare_book(book)
            self._flows[flow_detail.uuid] = flow_detail
            self._flow_book[flow_detail.uuid] = book.uuid

    def _saw_flow(self, flow_detail: tf_models.FlowDetail) -> None:
        if self.prune_on_finish and flow_detail.state in PRUNABLE_FLOW_STATES:
            with self._lock:
                self._flows.pop(flow_detail.uuid, None)
                self._flow_book.pop(flow_detail.uuid, None)

    def _book_flows(self, book_uuid: str | None) -> list[tf_models.FlowDetail]:
        with self._lock:
            return [fd for uuid, fd in self._flows.items()
                    if book_uuid is None or self._flow_book[uuid] == book_uuid]

    def unfinished_flow_uuids(self, book_uuid: str | None = None) -> set[str]:
        return {fd.uuid for fd in self._book_flows(book_uuid)
                if fd.state not in FINAL_FLOW_STATES}

    def prune_finished(self, book_uuid: str, older_than) -> int:
        """Memory logbooks carry no per-flow timestamps: every finished flow is pruned."""
        doomed = [fd.uuid for fd in self._book_flows(book_uuid)
                  if fd.state in PRUNABLE_FLOW_STATES]
        with self._lock:
            for uuid in doomed:
                self._flows.pop(uuid, None)
                self._flow_book.pop(uuid, None)
        return len(doomed)


class _MemoryConnection(tf_base.Connection):
    """Hands saved details back (the engine's storage owns them); see MemoryPersistence."""

    def __init__(self, backend: MemoryPersistence):
        self._backend = backend

    @property
    def backend(self):
        return self._backend

    def close(self):
        pass

    def upgrade(self):
        pass

    def validate(self):
        pass

    def clear_all(self):
        b = self._backend
        with b._lock:
            b._books.clear()
            b._flows.clear()
            b._flow_book.clear()

    def update_atom_details(self, atom_detail):
        return atom_detail

    def update_flow_details(self, flow_detail, ignore_missing=False):
        self._backend._saw_flow(flow_detail)
        return flow_detail

    def save_logbook(self, book):
        b = self._backend
        with b._lock:
            b._books[book.uuid] = _bare_book(book)
            for fd in book:
                b._flows[fd.uuid] = fd
                b._flow_book[fd.uuid] = book.uuid
        return book

    def destroy_logbook(self, book_uuid):
        b = self._backend
        with b._lock:
            if b._books.pop(book_uuid, None) is None:
                raise tf_exc.NotFound("No logbook found with uuid '%s'" % book_uuid)
            for uuid in [u for u, owner in b._flow_book.items() if owner == book_uuid]:
                b._flows.pop(uuid, None)
                b._flow_book.pop(uuid, None)

    def get_logbook(self, book_uuid, lazy=False):
        b = self._backend
        with b._lock:
            try:
                bare = b._books[book_uuid]
            except KeyError:
                raise tf_exc.NotFound("No logbook found with uuid '%s'" % book_uuid)
            book = _bare_book(bare)
            if not lazy:
                for uuid, owner in b._flow_book.items():
                    if owner == book_uuid:
                        book.add(b._flows[uuid])
        return book

    def get_logbooks(self, lazy=False):
        with self._backend._lock:
            uuids = list(self._backend._books)
        for uuid in uuids:
            yield self.get_logbook(uuid, lazy=lazy)

    def get_flows_for_book(self, book_uuid, lazy=False):
        return iter(self.get_logbook(book_uuid))

    def get_flow_details(self, fd_uuid, lazy=False):
        with self._backend._lock:
            try:
                return self._backend._flows[fd_uuid]
            except KeyError:
                raise tf_exc.NotFound("No flow details found with uuid '%s'" % fd_uuid)

    def get_atom_details(self, ad_uuid):
        with self._backend._lock:
            flows = list(self._backend._flows.values())
        for fd in flows:
            ad = fd.find(ad_uuid)
            if ad is not None:
                return ad
        raise tf_exc.NotFound("No atom details found with uuid '%s'" % ad_uuid)

    def get_atoms_for_flow(self, fd_uuid):
        return iter(self.get_flow_details(fd_uuid))


def _bare_book(book: tf_models.LogBook) -> tf_models.LogBook:
    """A copy of ``book`` without its flow details."""
    bare = tf_models.LogBook(book.name, uuid=book.uuid)
    bare.meta = book.meta
    bare.created_at, bare.updated_at = book.created_at, book.updated_at
    return bare
