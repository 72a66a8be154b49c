"""Volume types of the client library: create, list, show, update, delete, extra specs and
per-project access of private types (``docs/rest-api.md``, "Volume types").

Rules:

* Changing types, their extra specs or their access is for admins; anyone may list and
  show the public types and the private types their project was given access to. A private
  type another project cannot see is reported as not found.
* Names are unique among live types. The type named :data:`DEFAULT_TYPE_NAME` is what a
  volume created without a type gets (as in Cinder since Train); it cannot be renamed or
  deleted. A type some live volume or snapshot uses cannot be deleted.
* :meth:`VolumeTypeService.resolve` turns the type a volume create names (a name or an id)
  into ``{id, name, extra_specs}`` inside the creating transaction, holding a shared lock
  on the type row so that a concurrent delete cannot remove it under the new volume.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from blockmgr import exception
from blockmgr.api import common
from blockmgr.api import listing
from blockmgr.db import models

DEFAULT_TYPE_NAME = "__DEFAULT__"
DEFAULT_TYPE_DESCRIPTION = "Default Volume Type"
#: Extra specs a non-admin does not see (they name backends), as in Cinder.
SENSITIVE_SPECS = frozenset({"volume_backend_name"})
MAX_SPEC = 255
#: What an extra spec key may contain (Cinder's rule).
_SPEC_KEY_RE = re.compile(r"^[a-zA-Z0-9\-_:. /]{1,255}$")


def check_spec_key(key) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_SPEC:
        raise exception.InvalidInput(reason="an extra spec key must be a non-empty string of "
                                            "at most %d characters, not %r" % (MAX_SPEC, key))
    if not _SPEC_KEY_RE.match(key):
        raise exception.InvalidInput(reason="extra spec key %r may contain only letters, "
                                            "digits, '-', '_', ':', '.', '/' and spaces"
                                            % (key[:64],))
    return key


def check_spec_value(key: str, value) -> str:
    """A value as Cinder stores it: a string (numbers and booleans are written as text)."""
    if isinstance(value, bool):
        value = "True" if value else "False"
    elif isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_SPEC:
        raise exception.InvalidInput(reason="extra spec %s must be a string of at most %d "
                                            "characters" % (key, MAX_SPEC))
    match = listing.CONTROL_TEXT_RE.search(value)
    if match:
        raise exception.InvalidInput(reason="extra spec %s contains the control character "
                                            "U+%04X" % (key, ord(match.group())))
    return value


def check_specs(specs) -> dict[str, str]:
    if specs is None:
        return {}
    if not isinstance(specs, dict):
        raise exception.InvalidInput(reason="extra_specs must be an object of key: value, "
                                            "not %r" % (specs,))
    return {check_spec_key(k): check_spec_value(k, v) for k, v in specs.items()}


def check_name(name) -> str:
    name = common.check_text(name, "volume type name")
    if name is None or not name.strip():
        raise exception.InvalidInput(reason="a volume type needs a non-empty name")
    return name


def check_project(project_id) -> str:
    if not isinstance(project_id, str) or not project_id or len(project_id) > 255 \
            or listing.CONTROL_ID_RE.search(project_id):
        raise exception.InvalidInput(reason="project must be a non-empty project id of at "
                                            "most 255 characters, not %r" % (project_id,))
    return project_id


class VolumeTypeService:
    """:param conf: config (unused today, kept for symmetry with the other services).
    :param db: :class:`blockmgr.db.session.Database`.
    :param quota: :class:`blockmgr.quota.QuotaEngine`, whose ``run_in_transaction`` retries
        a writing transaction on a deadlock."""

    def __init__(self, conf, db, quota):
        self.conf = conf
        self.db = db
        self.quota = quota

    # --- reading --------------------------------------------------------------------------

    def list_types(self, ctx, *, is_public: bool | None = True) -> list[dict]:
        """The types ``ctx`` may see, by name. A non-admin sees the public types and the
        private ones its project has access to, whatever ``is_public`` says. An admin sees,
        with ``is_public`` True (the default), the public types and those its project has
        access to; False: the private types only; None: every type."""
        ctx = common.check_context(ctx)
        stmt = sa.select(models.VolumeType).where(models.VolumeType.deleted.is_(False))
        if not ctx.is_admin or is_public is True:
            stmt = stmt.where(sa.or_(models.VolumeType.is_public.is_(True),
                                     models.VolumeType.id.in_(self._accessible(ctx))))
        elif is_public is False:
            stmt = stmt.where(models.VolumeType.is_public.is_(False))
        with self.db.reader() as session:
            rows = session.scalars(stmt.order_by(models.VolumeType.name,
                                                 models.VolumeType.id)).all()
            specs = _specs_of(session, [r.id for r in rows])
            return [self._view(ctx, row, specs.get(row.id, {})) for row in rows]

    def get_type(self, ctx, type_ref: str) -> dict:
        """The type ``type_ref`` names (its id, or else its name) if ``ctx`` may see it.

        :raises VolumeTypeNotFound: no such type, or a private one ``ctx`` cannot see.
        """
        ctx = common.check_context(ctx)
        with self.db.reader() as session:
            row = self._find(session, ctx, type_ref)
            return self._view(ctx, row, _specs_of(session, [row.id]).get(row.id, {}))

    def default_type(self, ctx) -> dict:
        """The default type (created when missing)."""
        ctx = common.check_context(ctx)
        self.ensure_default()
        with self.db.reader() as session:
            row = _by_name(session, DEFAULT_TYPE_NAME)
            return self._view(ctx, row, _specs_of(session, [row.id]).get(row.id, {}))

    def ensure_default(self) -> None:
        """Create the default type if it is missing (a database built from the models
        rather than by the migrations, which create it)."""
        with self.db.reader() as session:
            if _by_name(session, DEFAULT_TYPE_NAME, required=False) is not None:
                return

        def work(session):
            if _by_name(session, DEFAULT_TYPE_NAME, required=False) is None:
                session.add(models.VolumeType(name=DEFAULT_TYPE_NAME,
                                              description=DEFAULT_TYPE_DESCRIPTION,
                                              is_public=True))
                session.flush()

        self.quota.run_in_transaction(work)

    def resolve(self, session, ctx, volume_type) -> dict:
        """What a volume create gets, read in its transaction: ``volume_type`` None is
        the default type (created if missing); a string is a type's id or name that
        ``ctx`` may use. The row is held with a shared lock until the transaction ends.

        :raises InvalidVolumeType: unknown, deleted, or private without access.
        """
        if volume_type is None:
            row = _by_name(session, DEFAULT_TYPE_NAME, required=False, lock=SHARE)
            if row is None:   # a schema built from the models: the migrations create it
                row = models.VolumeType(name=DEFAULT_TYPE_NAME, is_public=True,
                                        description=DEFAULT_TYPE_DESCRIPTION)
                session.add(row)
                session.flush()
        else:
            if not isinstance(volume_type, str) or not volume_type or len(volume_type) > 255:
                raise exception.InvalidVolumeType(
                    reason="name a volume type by its name or id, not %r" % (volume_type,))
            try:
                row = self._find(session, ctx, volume_type, lock=SHARE)
            except exception.VolumeTypeNotFound:
                raise exception.InvalidVolumeType(
                    reason="volume type %r does not exist or is not available to project "
                           "%s; list the types with GET /types" % (volume_type[:64],
                                                                   ctx.project_id)) from None
        specs = _specs_of(session, [row.id]).get(row.id, {})
        return {"id": row.id, "name": row.name, "extra_specs": specs}

    # --- changing -------------------------------------------------------------------------

    def create_type(self, ctx, name: str, *, description: str | None = None,
                    is_public: bool = True, extra_specs: dict | None = None) -> dict:
        """:raises VolumeTypeExists: a live type has that name."""
        ctx = _admin(ctx)
        name = check_name(name)
        description = common.check_text(description, "description")
        _check_bool(is_public, "is_public")
        specs = check_specs(extra_specs)
        self.ensure_default()

        def work(session):
            _serialize_names(session)
            if _by_name(session, name, required=False) is not None:
                raise exception.VolumeTypeExists(name=name)
            row = models.VolumeType(name=name, description=description, is_public=is_public)
            session.add(row)
            session.flush()
            for key, value in specs.items():
                session.add(models.VolumeTypeExtraSpec(volume_type_id=row.id, key=key,
                                                       value=value))
            session.flush()
            return self._view(ctx, row, specs)

        return self.quota.run_in_transaction(work)

    def update_type(self, ctx, type_id: str, *, name: str | None = None,
                    description: str | None = None, is_public: bool | None = None) -> dict:
        """Change a type's name, description and/or visibility (at least one).

        :raises InvalidVolumeType: renaming the default type.
        :raises VolumeTypeExists: the new name is another live type's.
        """
        ctx = _admin(ctx)
        if name is None and description is None and is_public is None:
            raise exception.InvalidInput(reason="nothing to update: give a name, a "
                                                "description and/or is_public")
        if name is not None:
            name = check_name(name)
        description = common.check_text(description, "description")
        if is_public is not None:
            _check_bool(is_public, "is_public")
        if name is not None:
            self.ensure_default()

        def work(session):
            if name is not None:
                _serialize_names(session)
            row = _by_id(session, type_id, lock=EXCLUSIVE)
            if name is not None and name != row.name:
                if row.name == DEFAULT_TYPE_NAME:
                    raise exception.InvalidVolumeType(
                        reason="the default volume type %s cannot be renamed"
                               % DEFAULT_TYPE_NAME)
                if _by_name(session, name, required=False) is not None:
                    raise exception.VolumeTypeExists(name=name)
                # The per-type quota (volumes_<name>, ...) follows the name, in the same
                # transaction.
                self.quota.rename_volume_type(row.name, name, session=session)
                row.name = name
            if description is not None:
                row.description = description
            if is_public is not None:
                row.is_public = is_public
            session.flush()
            return self._view(ctx, row, _specs_of(session, [row.id]).get(row.id, {}))

        return self.quota.run_in_transaction(work)

    def delete_type(self, ctx, type_id: str) -> None:
        """Delete a type with its extra specs and access list.

        :raises InvalidVolumeType: the default type, or a type a live volume or snapshot
            uses.
        """
        ctx = _admin(ctx)

        def work(session):
            row = _by_id(session, type_id, lock=EXCLUSIVE)
            if row.name == DEFAULT_TYPE_NAME:
                raise exception.InvalidVolumeType(
                    reason="the default volume type %s cannot be deleted" % DEFAULT_TYPE_NAME)
            for model, what in ((models.Volume, "volume"), (models.Snapshot, "snapshot")):
                users = session.scalar(sa.select(sa.func.count(model.id)).where(
                    model.volume_type_id == row.id, model.deleted.is_(False)))
                if users:
                    raise exception.InvalidVolumeType(
                        reason="volume type %s (%s) is used by %d %s(s); delete them or "
                               "retype them first" % (row.id, row.name, users, what))
            session.execute(sa.delete(models.VolumeTypeExtraSpec).where(
                models.VolumeTypeExtraSpec.volume_type_id == row.id))
            session.execute(sa.delete(models.VolumeTypeProject).where(
                models.VolumeTypeProject.volume_type_id == row.id))
            row.deleted = True
            row.deleted_at = models.utcnow()
            session.flush()

        self.quota.run_in_transaction(work)

    # --- extra specs ----------------------------------------------------------------------

    def get_extra_specs(self, ctx, type_id: str) -> dict[str, str]:
        ctx = common.check_context(ctx)
        with self.db.reader() as session:
            row = self._find(session, ctx, type_id, by_name=False)
            return _visible_specs(ctx, _specs_of(session, [row.id]).get(row.id, {}))

    def get_extra_spec(self, ctx, type_id: str, key: str) -> str:
        specs = self.get_extra_specs(ctx, type_id)
        if key not in specs:
            raise exception.VolumeTypeExtraSpecNotFound(volume_type_id=type_id, key=key)
        return specs[key]

    def set_extra_specs(self, ctx, type_id: str, specs: dict) -> dict[str, str]:
        """Add or change the given extra specs (others are kept); returns them."""
        ctx = _admin(ctx)
        specs = check_specs(specs)
        if not specs:
            raise exception.InvalidInput(reason="give at least one extra spec")

        def work(session):
            row = _by_id(session, type_id, lock=EXCLUSIVE)
            existing = {s.key: s for s in session.scalars(sa.select(
                models.VolumeTypeExtraSpec).where(
                models.VolumeTypeExtraSpec.volume_type_id == row.id))}
            for key, value in specs.items():
                if key in existing:
                    existing[key].value = value
                else:
                    session.add(models.VolumeTypeExtraSpec(volume_type_id=row.id, key=key,
                                                           value=value))
            session.flush()
            return dict(specs)

        return self.quota.run_in_transaction(work)

    def delete_extra_spec(self, ctx, type_id: str, key: str) -> None:
        ctx = _admin(ctx)

        def work(session):
            row = _by_id(session, type_id, lock=EXCLUSIVE)
            deleted = session.execute(sa.delete(models.VolumeTypeExtraSpec).where(
                models.VolumeTypeExtraSpec.volume_type_id == row.id,
                models.VolumeTypeExtraSpec.key == key)).rowcount
            if not deleted:
                raise exception.VolumeTypeExtraSpecNotFound(volume_type_id=row.id, key=key)

        self.quota.run_in_transaction(work)

    # --- access ---------------------------------------------------------------------------

    def list_access(self, ctx, type_id: str) -> list[dict]:
        """``[{volume_type_id, project_id}]`` of a private type.

        :raises InvalidVolumeType: a public type (everyone has access).
        """
        ctx = _admin(ctx)
        with self.db.reader() as session:
            row = _by_id(session, type_id)
            _check_private(row)
            projects = session.scalars(sa.select(models.VolumeTypeProject.project_id).where(
                models.VolumeTypeProject.volume_type_id == row.id).order_by(
                models.VolumeTypeProject.project_id)).all()
            return [{"volume_type_id": row.id, "project_id": p} for p in projects]

    def add_access(self, ctx, type_id: str, project_id: str) -> None:
        """:raises VolumeTypeAccessExists: the project has access already."""
        ctx = _admin(ctx)
        project_id = check_project(project_id)

        def work(session):
            row = _by_id(session, type_id, lock=EXCLUSIVE)
            _check_private(row)
            if _access_row(session, row.id, project_id) is not None:
                raise exception.VolumeTypeAccessExists(volume_type_id=row.id,
                                                       project_id=project_id)
            session.add(models.VolumeTypeProject(volume_type_id=row.id,
                                                 project_id=project_id))
            session.flush()

        self.quota.run_in_transaction(work)

    def remove_access(self, ctx, type_id: str, project_id: str) -> None:
        """:raises VolumeTypeAccessNotFound: the project had no access."""
        ctx = _admin(ctx)
        project_id = check_project(project_id)

        def work(session):
            row = _by_id(session, type_id, lock=EXCLUSIVE)
            _check_private(row)
            access = _access_row(session, row.id, project_id)
            if access is None:
                raise exception.VolumeTypeAccessNotFound(volume_type_id=row.id,
                                                         project_id=project_id)
            session.delete(access)
            session.flush()

        self.quota.run_in_transaction(work)

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _accessible(ctx):
        return sa.select(models.VolumeTypeProject.volume_type_id).where(
            models.VolumeTypeProject.project_id == (ctx.project_id or ""))

    def _find(self, session, ctx, type_ref, *, by_name: bool = True, lock=None):
        """The live type ``type_ref`` names (id first, then name) that ``ctx`` may see."""
        if not isinstance(type_ref, str) or not type_ref or len(type_ref) > 255:
            raise exception.VolumeTypeNotFound(volume_type_id=str(type_ref)[:64])
        row = _by_id(session, type_ref, required=False, lock=lock)
        if row is None and by_name:
            row = _by_name(session, type_ref, required=False, lock=lock)
        if row is None or not self._may_see(session, ctx, row):
            raise exception.VolumeTypeNotFound(volume_type_id=type_ref[:64])
        return row

    @staticmethod
    def _may_see(session, ctx, row) -> bool:
        if row.is_public or ctx.is_admin:
            return True
        return _access_row(session, row.id, ctx.project_id or "") is not None

    @staticmethod
    def _view(ctx, row, specs: dict) -> dict:
        return {"id": row.id, "name": row.name, "description": row.description,
                "is_public": bool(row.is_public),
                "extra_specs": _visible_specs(ctx, specs),
                "created_at": row.created_at.isoformat() if row.created_at else None,
                "updated_at": row.updated_at.isoformat() if row.updated_at else None}


def _admin(ctx):
    ctx = common.check_context(ctx)
    if not ctx.is_admin:
        raise exception.NotAuthorized(reason="only an admin may change volume types")
    return ctx


def _check_bool(value, what: str) -> None:
    if not isinstance(value, bool):
        raise exception.InvalidInput(reason="%s must be a boolean, not %r" % (what, value))


def _check_private(row) -> None:
    if row.is_public:
        raise exception.InvalidVolumeType(
            reason="volume type %s is public: every project has access; make it private "
                   "(is_public false) to manage its access list" % row.id)


def _visible_specs(ctx, specs: dict) -> dict:
    if ctx.is_admin:
        return dict(specs)
    return {k: v for k, v in specs.items() if k not in SENSITIVE_SPECS}


#: Row locks: a volume create holds its type with a shared lock, a change of the type
#: takes an exclusive one, so a delete waits for the creates in flight and then sees their
#: volumes, and a create that comes after a delete finds the type gone.
SHARE, EXCLUSIVE = "share", "exclusive"


def _lock(stmt, session, lock):
    if lock and session.bind.dialect.name != "sqlite":   # SQLite: one writer at a time
        stmt = stmt.with_for_update(read=lock == SHARE)
    return stmt


def _serialize_names(session) -> None:
    """Names are unique among live types, which no index can say (deleted types keep
    theirs): a transaction that gives a type a name first locks the default type's row,
    so two of them never both find a name free."""
    _by_name(session, DEFAULT_TYPE_NAME, required=False, lock=EXCLUSIVE)


def _by_id(session, type_id, *, required: bool = True, lock=None):
    row = None
    if isinstance(type_id, str) and 0 < len(type_id) <= 36:
        row = session.scalars(_lock(sa.select(models.VolumeType).where(
            models.VolumeType.id == type_id, models.VolumeType.deleted.is_(False)),
            session, lock)).first()
    if row is None and required:
        raise exception.VolumeTypeNotFound(volume_type_id=str(type_id)[:64])
    return row


def _by_name(session, name: str, *, required: bool = True, lock=None):
    row = session.scalars(_lock(sa.select(models.VolumeType).where(
        models.VolumeType.name == name, models.VolumeType.deleted.is_(False)).order_by(
        models.VolumeType.created_at), session, lock)).first()
    if row is None and required:
        raise exception.VolumeTypeNotFound(volume_type_id=name[:64])
    return row


def _access_row(session, type_id: str, project_id: str):
    return session.scalars(sa.select(models.VolumeTypeProject).where(
        models.VolumeTypeProject.volume_type_id == type_id,
        models.VolumeTypeProject.project_id == project_id)).first()


def _specs_of(session, type_ids: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    if not type_ids:
        return out
    rows = session.execute(sa.select(models.VolumeTypeExtraSpec.volume_type_id,
                                     models.VolumeTypeExtraSpec.key,
                                     models.VolumeTypeExtraSpec.value).where(
        models.VolumeTypeExtraSpec.volume_type_id.in_(type_ids)).order_by(
        models.VolumeTypeExtraSpec.key)).all()
    for type_id, key, value in rows:
        out.setdefault(type_id, {})[key] = value
    return out


def type_names(session, type_ids) -> dict[str, str]:
    """id -> name of the given types (deleted ones included), for volume views."""
    ids = sorted({t for t in type_ids if t})
    if not ids:
        return {}
    return dict(session.execute(sa.select(models.VolumeType.id, models.VolumeType.name).where(
        models.VolumeType.id.in_(ids))).all())
