"""Keeping this worker's claims alive, and stopping the worker when one is lost.

A claim (the ``.owned`` key of a flow's job, see :mod:`blockmgr.cluster.board`) lives
``ttl`` seconds unless renewed. :class:`ClaimKeeper` renews every claim this worker holds
every ``interval`` seconds, from a thread of its own, so a long task does not let its claim
expire.

A claim is **lost** when a renewal finds another owner (or none), or when no renewal has
succeeded for 90 % of ``ttl`` (Redis unreachable: the claim may be about to expire and a peer
to take the flow over). A flow whose claim is lost may already be running on a peer; this
worker must not take one more step of it. TaskFlow cannot stop a task half-way, and a
suspended engine would still write its state over the peer's. So the default reaction is
*fail-stop*: the process exits at once (:func:`fail_stop`), its flows stay as last
committed, and peers take them over like any dead worker's. Tests pass their own ``on_lost``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from blockmgr import periodic

LOG = logging.getLogger(__name__)

#: Exit status of a worker that stopped itself after losing a claim.
LOST_CLAIM_EXIT_CODE = 76

#: Fraction of the TTL after which an unrenewed claim is given up for lost.
LOSS_MARGIN = 0.9


def fail_stop(flow_uuid: str, why: str) -> None:
    """Exit the process now: it may no longer run flow ``flow_uuid`` (see module doc)."""
    LOG.critical("Lost the cluster claim on flow %s (%s); a peer may be running it now. "
                 "Stopping this worker at once so the flow runs in one place only; it "
                 "can be restarted right away.", flow_uuid, why)
    logging.shutdown()
    os._exit(LOST_CLAIM_EXIT_CODE)


class ClaimKeeper:
    """Renews the claims of one worker (``owner``) on one board; see the module docstring.

    :param board: a :class:`~blockmgr.cluster.board.ClusterBoard`.
    :param on_lost: ``on_lost(flow_uuid, why)``, called once per lost claim, from the
        keeper's thread.
    """

    def __init__(self, board, owner: str, ttl: float, interval: float, *,
                 on_lost: Callable[[str, str], None] = fail_stop,
                 clock: Callable[[], float] = time.monotonic):
        self.board = board
        self.owner = owner
        self.ttl = float(ttl)
        self.interval = float(interval)
        self.on_lost = on_lost
        self._clock = clock
        self._held: dict[str, float] = {}    # flow uuid -> last successful renewal
        self._lock = threading.Lock()
        self._timer: periodic.PeriodicTimer | None = None
        self.renewals = 0

    def start(self) -> "ClaimKeeper":
        self._timer = periodic.PeriodicTimer("claims-%s" % self.owner, self.interval,
                                             self._round, initial_delay=self.interval).start()
        return self

    def stop(self) -> None:
        """Stop renewing (the claims still held expire ``ttl`` seconds after the last
        renewal, then peers take their flows over)."""
        if self._timer is not None:
            self._timer.stop(self.interval + 6)

    def add(self, flow_uuid: str) -> None:
        """Start renewing a claim this worker has just taken."""
        with self._lock:
            self._held[flow_uuid] = self._clock()

    def discard(self, flow_uuid: str) -> None:
        with self._lock:
            self._held.pop(flow_uuid, None)

    def holds(self, flow_uuid: str) -> bool:
        with self._lock:
            return flow_uuid in self._held

    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def renew_all(self) -> None:
        """One round of renewals (the thread calls it every ``interval`` seconds)."""
        for flow_uuid in self.held():
            why = None
            try:
                if self.board.renew(flow_uuid, self.owner, self.ttl):
                    with self._lock:
                        if flow_uuid in self._held:
                            self._held[flow_uuid] = self._clock()
                    self.renewals += 1
                    continue
                why = "the claim expired or belongs to another worker now"
            except Exception as exc:
                with self._lock:
                    last = self._held.get(flow_uuid)
                if last is None:
                    continue
                silent = self._clock() - last
                if silent < self.ttl * LOSS_MARGIN:
                    LOG.warning("Could not renew the claim on flow %s (%s); %.1f s left "
                                "before it is given up", flow_uuid, exc,
                                self.ttl * LOSS_MARGIN - silent)
                    continue
                why = "no renewal for %.1f s (last error: %s)" % (silent, exc)
            with self._lock:
                still = self._held.pop(flow_uuid, None) is not None
            if still:
                self.on_lost(flow_uuid, why)

    def _round(self) -> None:
        try:
            self.renew_all()
        except Exception:   # never let the keeper die: losing it loses every claim
            LOG.exception("Claim renewal round failed")
