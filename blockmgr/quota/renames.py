"""Renaming a volume type's quota: its per-type resources are named after the type, so a
rename must move their limits, usages and live reservations to the new names (Cinder moves
the usages on a rename too). Part of :class:`blockmgr.quota.QuotaEngine`, which supplies the
database (``_db``) and the transaction runner (``_run``).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session

from blockmgr import exception
from blockmgr.db import models
from blockmgr.quota import per_type

#: The package logs under one name, whichever part of it speaks.
LOG = logging.getLogger("blockmgr.quota")

_QT, _UT, _RT = models.Quota.__table__, models.QuotaUsage.__table__, models.Reservation.__table__


class RenamesMixin:
    """The type-rename part of :class:`~blockmgr.quota.QuotaEngine`."""

    def rename_volume_type(self, old_name: str, new_name: str, *,
                           session: Session | None = None) -> int:
        """Move the per-type quota of a volume type renamed from ``old_name`` to
        ``new_name``; return how many limit and usage rows moved.

        Call it with ``session=`` in the transaction that renames the type, so that the
        rename and the move commit together. What moves, for each of ``volumes``,
        ``snapshots`` and ``gigabytes``:

        * limits: the old name's overrides become the new name's; overrides an earlier,
          deleted type of the new name left behind are dropped first;
        * usages: each project's row takes the new name, with its live reservations. Where
          an earlier type of the new name left a row, the old row's ``in_use`` replaces the
          leftover's (which counted no live volume) and the reserved amounts are added, the
          reservations following; the old row is left at zero.

        The usage rows of both names are locked in the engine's order (project, then
        resource) first. A name too long for the quota tables has no per-type resources
        (:func:`blockmgr.quota.per_type.resource_name`): nothing moves to or from it.

        :raises InvalidInput: a name that is not a non-empty string.
        """
        for name in (old_name, new_name):
            if not isinstance(name, str) or not name:
                raise exception.InvalidInput(reason="a volume type name must be a non-empty "
                                                    "string, not %r" % (name,))
        pairs = [(per_type.resource_name(b, old_name), per_type.resource_name(b, new_name))
                 for b in per_type.BASES]
        pairs = [(o, n) for o, n in pairs if o is not None and n is not None and o != n]
        if not pairs:
            return 0
        if session is not None:
            return self._rename(session, pairs)
        return self._run(lambda s: self._rename(s, pairs))

    def _rename(self, session: Session, pairs: list[tuple[str, str]]) -> int:
        session.flush()   # what the caller's ORM objects still hold, before Core writes
        names = sorted({name for pair in pairs for name in pair})
        rows = session.execute(
            sa.select(_UT.c.id, _UT.c.project_id, _UT.c.resource, _UT.c.in_use,
                      _UT.c.reserved)
            .where(_UT.c.resource.in_(names))
            .order_by(_UT.c.project_id, _UT.c.resource)
            .with_for_update()).all()
        usages = {(row.project_id, row.resource): row for row in rows}
        moved = 0
        for old, new in pairs:
            moved += self._rename_limits(session, old, new)
            for (project_id, resource), row in sorted(usages.items()):
                if resource == old:
                    self._rename_usage(session, row, usages.get((project_id, new)), new)
                    moved += 1
        if moved:
            LOG.info("Moved %d per-type quota row(s) to the new type name (%s)", moved,
                     ", ".join("%s -> %s" % pair for pair in pairs))
        return moved

    @staticmethod
    def _rename_limits(session: Session, old: str, new: str) -> int:
        session.execute(sa.delete(_QT).where(_QT.c.resource == new))
        return session.execute(sa.update(_QT).where(_QT.c.resource == old)
                               .values(resource=new)).rowcount

    def _rename_usage(self, session: Session, row, leftover, new: str) -> None:
        now = models.utcnow()
        if leftover is None:
            session.execute(sa.update(_UT).where(_UT.c.id == row.id)
                            .values(resource=new, updated_at=now))
            session.execute(sa.update(_RT).where(_RT.c.usage_id == row.id)
                            .values(resource=new))
        else:
            session.execute(sa.update(_UT).where(_UT.c.id == leftover.id).values(
                in_use=row.in_use, reserved=leftover.reserved + row.reserved, updated_at=now))
            session.execute(sa.update(_UT).where(_UT.c.id == row.id)
                            .values(in_use=0, reserved=0, updated_at=now))
            session.execute(sa.update(_RT).where(_RT.c.usage_id == row.id,
                                                 _RT.c.deleted.is_(False))
                            .values(resource=new, usage_id=leftover.id))
        self._known_usages.add((row.project_id, new))
