"""Read-only typed views of resources, the only objects drivers ever receive.

Drivers never see ORM rows and never touch the database: they read these frozen views and
return *model updates* (plain dicts of column -> value) that the manager applies. Views are
built from rows by the ``from_model`` constructors (or directly, in tests and by tools).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class VolumeView:
    id: str
    size: int
    name: str = ""
    host: str | None = None
    status: str | None = None
    provider_location: str | None = None
    provider_id: str | None = None
    provider_auth: str | None = None
    volume_type_id: str | None = None
    group_id: str | None = None
    project_id: str | None = None
    snapshot_id: str | None = None
    source_volid: str | None = None

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", "volume-%s" % self.id)

    @classmethod
    def from_model(cls, row: Any) -> "VolumeView":
        """From an ORM ``Volume`` or any row with the :data:`VOLUME_VIEW_COLUMNS` (a Core
        row has no ``name``: it is derived from the id, as the model does)."""
        return cls(id=row.id, size=row.size, name=getattr(row, "name", ""), host=row.host,
                   status=row.status,
                   provider_location=row.provider_location, provider_id=row.provider_id,
                   provider_auth=row.provider_auth, volume_type_id=row.volume_type_id,
                   group_id=row.group_id, project_id=row.project_id,
                   snapshot_id=row.snapshot_id, source_volid=row.source_volid)

    def with_changes(self, **changes) -> "VolumeView":
        return dataclasses.replace(self, **changes)


#: The ``volumes`` columns a :class:`VolumeView` is made of (``name`` derives from ``id``).
VOLUME_VIEW_COLUMNS = tuple(f.name for f in dataclasses.fields(VolumeView) if f.name != "name")


@dataclasses.dataclass(frozen=True)
class SnapshotView:
    id: str
    volume_id: str
    volume_size: int
    name: str = ""
    volume_name: str = ""
    status: str | None = None
    provider_location: str | None = None
    provider_id: str | None = None
    volume_type_id: str | None = None
    group_snapshot_id: str | None = None
    project_id: str | None = None

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", "snapshot-%s" % self.id)
        if not self.volume_name:
            object.__setattr__(self, "volume_name", "volume-%s" % self.volume_id)

    @classmethod
    def from_model(cls, row: Any) -> "SnapshotView":
        return cls(id=row.id, volume_id=row.volume_id, volume_size=row.volume_size,
                   name=row.name, status=row.status, provider_location=row.provider_location,
                   provider_id=row.provider_id, volume_type_id=row.volume_type_id,
                   group_snapshot_id=row.group_snapshot_id, project_id=row.project_id)

    def with_changes(self, **changes) -> "SnapshotView":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class GroupView:
    id: str
    name: str | None = None
    host: str | None = None
    status: str | None = None
    group_type_id: str | None = None
    project_id: str | None = None

    @classmethod
    def from_model(cls, row: Any) -> "GroupView":
        return cls(id=row.id, name=row.name, host=row.host, status=row.status,
                   group_type_id=row.group_type_id, project_id=row.project_id)


@dataclasses.dataclass(frozen=True)
class GroupSnapshotView:
    id: str
    group_id: str
    name: str | None = None
    status: str | None = None
    project_id: str | None = None

    @classmethod
    def from_model(cls, row: Any) -> "GroupSnapshotView":
        return cls(id=row.id, group_id=row.group_id, name=row.name, status=row.status,
                   project_id=row.project_id)
