"""What the scheduler knows about each pool: the last capacity report, plus its own placements.

Volume workers fanout a report (``update_service_capabilities``) every
``backend_stats_polling_interval`` seconds: the driver's stats (Cinder's keys and units,
typed as :class:`blockmgr.interface.stats.VolumeStats` and checked by the worker) with one
entry per pool. Between two reports the scheduler **charges** each placement to the
chosen pool at once (free, provisioned and allocated capacity), so a burst of creates spreads
over the backends instead of piling onto the one that looked emptiest in the last report.

When a newer report arrives, charges made *before* the report was measured are assumed to be
in it and are dropped; charges made after it are re-applied on top of it. (Cinder simply
overwrites its state with the report, forgetting placements made while the report travelled.)
The remaining window -- a volume placed before the report was measured whose create had not
reached the backend yet -- closes at the next report.

One manager per scheduler process; selection and charging happen under one lock (see
:meth:`BackendStates.place`), so concurrent requests never see the same free space twice.
Several scheduler processes do not share charges (as in Cinder).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from typing import Callable, Iterable

from oslo_utils import timeutils

from blockmgr.interface.stats import PoolStats, VolumeStats

LOG = logging.getLogger(__name__)

#: Capacity values drivers may report instead of a number (as Cinder's drivers do).
INFINITE = "infinite"
UNKNOWN = "unknown"

_POOL_NUMBERS = ("total_capacity_gb", "free_capacity_gb", "provisioned_capacity_gb",
                 "allocated_capacity_gb")


def _capacity(value):
    """A reported capacity: a float, or ``'infinite'`` / ``'unknown'``."""
    if isinstance(value, str) and value.lower() in (INFINITE, UNKNOWN):
        return value.lower()
    if isinstance(value, bool) or value is None:
        return UNKNOWN
    try:
        return float(value)
    except (TypeError, ValueError):
        return UNKNOWN


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "<is> true")
    return bool(value)


def _ratio(value) -> float:
    # ``'auto'`` (Cinder computes it from history) is treated as the conservative 1.0.
    try:
        return float(value)
    except (TypeError, ValueError):
        return 1.0


def _parse_time(value) -> float:
    """A report timestamp (ISO string, datetime or epoch seconds) as epoch seconds."""
    if value is None:
        return time.time()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = timeutils.parse_isotime(value)
        except ValueError:
            LOG.warning("Unparseable capacity report timestamp %r; using now", value)
            return time.time()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    return time.time()


@dataclasses.dataclass
class PoolState:
    """One pool as last reported, with this scheduler's charges applied.

    ``backend`` is ``host@backend``; :attr:`host` (``host@backend#pool``) is what a volume's
    ``host`` column gets. ``capabilities`` merges the backend's top-level stats with the
    pool's own entries (pool wins), for the capability filter.
    """

    backend: str
    pool_name: str
    total_capacity_gb: float | str = UNKNOWN
    free_capacity_gb: float | str = UNKNOWN
    provisioned_capacity_gb: float | str = 0.0
    allocated_capacity_gb: float | str = 0.0
    reserved_percentage: float = 0.0
    max_over_subscription_ratio: float = 1.0
    thin_provisioning_support: bool = False
    thick_provisioning_support: bool = True
    capabilities: dict = dataclasses.field(default_factory=dict)
    reported_at: float = 0.0

    @property
    def host(self) -> str:
        return "%s#%s" % (self.backend, self.pool_name)

    @classmethod
    def from_report(cls, backend: str, top: VolumeStats, pool: PoolStats,
                    reported_at: float) -> "PoolState":
        """From one pool of a published report (the driver's checked
        :class:`~blockmgr.interface.stats.VolumeStats` plus the worker's additions). Values
        are still parsed leniently: the report crossed RPC as JSON, possibly from a worker of
        another version."""
        caps = {k: v for k, v in top.items() if k != "pools"}
        caps.update(pool)
        provisioned = pool.get("provisioned_capacity_gb",
                               pool.get("allocated_capacity_gb", 0))
        try:
            reserved = float(pool.get("reserved_percentage", 0) or 0)
        except (TypeError, ValueError):
            reserved = 0.0
        return cls(
            backend=backend, pool_name=str(pool.get("pool_name") or "_pool0"),
            total_capacity_gb=_capacity(pool.get("total_capacity_gb")),
            free_capacity_gb=_capacity(pool.get("free_capacity_gb")),
            provisioned_capacity_gb=_capacity(provisioned),
            allocated_capacity_gb=_capacity(pool.get("allocated_capacity_gb", 0)),
            reserved_percentage=min(max(reserved, 0.0), 100.0),
            max_over_subscription_ratio=_ratio(pool.get("max_over_subscription_ratio", 1.0)),
            thin_provisioning_support=_bool(pool.get("thin_provisioning_support", False)),
            thick_provisioning_support=_bool(pool.get("thick_provisioning_support", True)),
            capabilities=caps, reported_at=reported_at)

    def charge(self, size_gb: float, thin: bool) -> None:
        """Count ``size_gb`` more as placed here (negative gives it back).

        Provisioned and allocated always grow; physical free space shrinks only for a thick
        volume (a thin one takes space as it is written).
        """
        for name in ("provisioned_capacity_gb", "allocated_capacity_gb"):
            value = getattr(self, name)
            if isinstance(value, float):
                setattr(self, name, max(0.0, value + size_gb))
        if not thin and isinstance(self.free_capacity_gb, float):
            self.free_capacity_gb = self.free_capacity_gb - size_gb


@dataclasses.dataclass(frozen=True)
class _Charge:
    host: str
    size_gb: float
    thin: bool
    at: float


class BackendStates:
    """Pool states of every backend that reported, and this scheduler's charges.

    :param clock: returns epoch seconds (tests pass a fake one).
    """

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lock = threading.RLock()
        self._pools: dict[str, dict[str, PoolState]] = {}   # backend -> pool name -> state
        self._reported_at: dict[str, float] = {}
        self._received_at: dict[str, float] = {}
        self._charges: list[_Charge] = []

    # --- reports --------------------------------------------------------------------------

    def update(self, backend: str, capabilities: dict, timestamp=None) -> bool:
        """Take a report from ``backend`` (``host@backend``); False if it was stale or bad.

        A report older than the one held is ignored (fanout messages may overtake each
        other). A report without ``pools`` describes a single pool named after the backend.
        """
        if not isinstance(capabilities, dict):
            LOG.warning("Ignoring a capacity report from %s that is not a dict", backend)
            return False
        backend = backend.partition("#")[0]
        reported_at = _parse_time(timestamp)
        pools = capabilities.get("pools")
        if not pools:
            pools = [dict(capabilities, pool_name=capabilities.get("pool_name")
                          or backend.partition("@")[2] or "_pool0")]
        with self._lock:
            if reported_at < self._reported_at.get(backend, float("-inf")):
                LOG.debug("Ignoring a stale capacity report from %s", backend)
                return False
            states = {}
            for pool in pools:
                if not isinstance(pool, dict):
                    continue
                state = PoolState.from_report(backend, capabilities, pool, reported_at)
                states[state.pool_name] = state
            self._pools[backend] = states
            self._reported_at[backend] = reported_at
            self._received_at[backend] = self._clock()
            # Charges made before the measurement are in the report; re-apply the others.
            keep = []
            for charge in self._charges:
                if charge.host.partition("#")[0] != backend:
                    keep.append(charge)
                elif charge.at > reported_at:
                    keep.append(charge)
                    pool = states.get(charge.host.partition("#")[2])
                    if pool is not None:
                        pool.charge(charge.size_gb, charge.thin)
            self._charges = keep
        return True

    def forget(self, backend: str) -> None:
        with self._lock:
            self._pools.pop(backend, None)
            self._reported_at.pop(backend, None)
            self._received_at.pop(backend, None)

    def backends(self) -> set[str]:
        with self._lock:
            return set(self._pools)

    def received_at(self, backend: str) -> float | None:
        with self._lock:
            return self._received_at.get(backend)

    def pools(self) -> list[PoolState]:
        """Copies of every pool state, ordered by host (stable for tests and ties)."""
        with self._lock:
            return sorted((dataclasses.replace(p, capabilities=dict(p.capabilities))
                           for pools in self._pools.values() for p in pools.values()),
                          key=lambda p: p.host)

    def pool(self, host: str) -> PoolState | None:
        backend, _, name = host.partition("#")
        with self._lock:
            pools = self._pools.get(backend) or {}
            if name:
                state = pools.get(name)
            else:
                state = next(iter(sorted(pools.values(), key=lambda p: p.host)), None)
            return None if state is None else dataclasses.replace(state)

    # --- placement ------------------------------------------------------------------------

    def place(self, choose: Callable[[list[PoolState]], PoolState], size_gb: float,
              thin_for: Callable[[PoolState], bool]) -> PoolState:
        """Run ``choose`` over the current pools and charge the winner, atomically.

        ``choose`` raises (e.g. NoValidBackend) when nothing fits; nothing is charged then.
        """
        with self._lock:
            chosen = choose(self.pools())
            self.charge(chosen.host, size_gb, thin_for(chosen))
            return chosen

    def charge(self, host: str, size_gb: float, thin: bool) -> None:
        """Charge ``size_gb`` to pool ``host`` (``host@backend#pool``) until the next report
        measured after now; a negative size gives a charge back."""
        if not size_gb:
            return
        backend, _, name = host.partition("#")
        with self._lock:
            pool = (self._pools.get(backend) or {}).get(name)
            if pool is None:
                return
            pool.charge(size_gb, thin)
            self._charges.append(_Charge(host, size_gb, thin, self._clock()))

    def pending_charges(self, backend: str | None = None) -> list[tuple[str, float]]:
        with self._lock:
            return [(c.host, c.size_gb) for c in self._charges
                    if backend is None or c.host.partition("#")[0] == backend]


def hosts(pools: Iterable[PoolState]) -> list[str]:
    return [p.host for p in pools]
