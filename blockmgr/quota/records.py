"""What the quota engine reports: usage drift and orphaned reservations."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Drift:
    """One usage field that disagrees with the real tables (or the live reservations).

    ``expected`` is the value :meth:`QuotaEngine.sync` writes: for ``reserved`` the sum of the
    live positive reservation deltas; for ``in_use`` the value counted in the resource tables,
    adjusted so that live reservations whose change may or may not have reached the tables yet
    are neither lost nor counted twice.
    """

    project_id: str
    resource: str
    field: str
    recorded: int
    expected: int
    reason: str

    def __str__(self) -> str:
        return "project %s: %s %s is %d, expected %d (%s)" % (
            self.project_id, self.resource, self.field, self.recorded, self.expected,
            self.reason)


@dataclasses.dataclass(frozen=True)
class Orphan:
    """A live reservation nobody will resolve: its owner flow is finished or gone (or it
    has no owner and expired). See :meth:`QuotaEngine.orphans`."""

    uuid: str
    project_id: str
    resource: str
    delta: int
    owner: str | None
