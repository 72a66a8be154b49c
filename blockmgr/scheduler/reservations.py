"""The scheduler's periodic sweep of quota reservations nobody will resolve.

A reservation is an orphan when its owner flow is **finished or gone** (its flow detail is in
a final state or was pruned): such a flow will never commit or roll it back. Orphans are
released at the next sweep, whatever their age -- Cinder can only wait for the 24 h expiry.
Reservations of a flow that is still unfinished (running, or waiting for its worker to come
back and resume it) are never touched, even past their expiry. Reservations without an owner
(the API's extend reservations before a worker adopts them) are released once expired.

Liveness comes from the flow logbooks (``[flows] persistence_connection``, normally the
service database). With in-memory logbooks the scheduler cannot see any flow, so it treats
every owner as live and releases only ownerless expired reservations.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from blockmgr import periodic

LOG = logging.getLogger(__name__)


class UnfinishedFlows:
    """``is_live(flow_id)`` over one snapshot of the unfinished flows, taken at the first
    question and reused for the rest of the sweep.

    Taking the snapshot lazily matters: the quota engine lists reservation owners *first*,
    then asks; a flow started after the snapshot cannot own any of the listed reservations.
    """

    def __init__(self, persistence):
        self._persistence = persistence
        self._live: set[str] | None = None

    def __call__(self, flow_id: str) -> bool:
        if self._live is None:
            self._live = set(self._persistence.unfinished_flow_uuids())
        return flow_id in self._live


def liveness(persistence) -> Callable[[str], bool]:
    """A fresh ``is_owner_live`` for one sweep: :class:`UnfinishedFlows` over
    ``persistence``, or "everyone is live" when the logbooks are not visible (None)."""
    if persistence is None:
        return lambda _owner: True
    return UnfinishedFlows(persistence)


@dataclasses.dataclass
class SweepResult:
    orphans: list[str] = dataclasses.field(default_factory=list)
    expired: int = 0


class ReservationSweeper:
    """Releases orphaned and expired reservations.

    :param persistence: the flow persistence backend (``unfinished_flow_uuids()``), or None
        when flows are not visible from here (every owner is then treated as live).
    """

    def __init__(self, quota, persistence=None):
        self.quota = quota
        self.persistence = persistence

    def _liveness(self) -> Callable[[str], bool]:
        return liveness(self.persistence)

    def sweep(self) -> SweepResult:
        result = SweepResult()
        result.orphans = list(self.quota.release_orphans(self._liveness()))
        result.expired = self.quota.expire(self._liveness())
        if result.orphans or result.expired:
            LOG.info("Reservation sweep released %d orphaned and %d expired reservation(s)",
                     len(result.orphans), result.expired)
        return result


class PeriodicSweep:
    """Runs ``sweeper.sweep()`` at start and then every ``interval`` seconds until
    :meth:`stop` (a :class:`blockmgr.periodic.PeriodicTimer`: a failing sweep is logged
    and runs again at the next tick)."""

    def __init__(self, sweeper: ReservationSweeper, interval: float):
        self._timer = periodic.PeriodicTimer("reservation-sweeper", interval, sweeper.sweep)

    def start(self) -> None:
        self._timer.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._timer.stop(timeout)
