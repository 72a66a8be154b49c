"""The request context: who asked, and the id that ties every log line and event together.

:class:`RequestContext` is an ``oslo_context.RequestContext``, so oslo.log formats it
natively (``%(request_id)s``, ``%(user_identity)s``, ... in
``logging_context_format_string``) and oslo libraries accept it. On top of oslo's context it
keeps the contract blockmgr relies on:

* **A compact dict in JSON types.** A context travels over RPC, is stored in flow logbooks and
  in the ``requests`` table. :meth:`RequestContext.to_dict` writes the five keys of
  :data:`FIELDS` (the keys stored dicts have always had, so rows and logbooks written by
  earlier releases load unchanged); :meth:`~RequestContext.from_dict` reads them, ignores
  any other key (a newer sender's), and accepts oslo's ``user`` for ``user_id``. oslo's own
  ``to_dict`` (17 keys, an auth token among them) is used only for log lines.
* **Immutable and hashable.** One context is shared by every thread working on a request, so
  its :data:`FIELDS` can be set once, when it is built, and never reassigned
  (:class:`FrozenContextError`); derive a new context with :meth:`~RequestContext.replace`
  or :meth:`~RequestContext.elevated`. Equality and the hash are those of :data:`FIELDS`.
  (Only these five are guarded, with a property each, not a ``__setattr__`` on every
  attribute: oslo's constructor sets some 35 attributes, and a Python ``__setattr__`` would
  make building a context, which every RPC message and stored request does, about six
  times slower.)
* **Building one never changes the thread's log identity.** oslo's constructor stores the new
  context in oslo.context's thread-local (which oslo.log formats every line with) when asked
  to or when the thread has none; a blockmgr context is stored only by an explicit
  :meth:`~RequestContext.update_store` (:mod:`blockmgr.logcontext` does it around a flow),
  so a context built to ring or cast a request does not tag the caller's later lines.
"""

from __future__ import annotations

import operator
from typing import Any

from oslo_context import context as oslo_context

#: The keys of :meth:`RequestContext.to_dict`, in order.
FIELDS = ("project_id", "user_id", "is_admin", "request_id", "read_deleted")

#: ``req-<uuid4>``: oslo.context's request id format.
generate_request_id = oslo_context.generate_request_id


class FrozenContextError(AttributeError):
    """A field of a built :class:`RequestContext` was assigned (contexts are immutable;
    use :meth:`RequestContext.replace`)."""


def _set_once(name: str) -> property:
    """A property stored in ``_<name>``: read at C speed, assignable once (by the
    constructor)."""
    slot = "_" + name

    def fset(self, value: Any) -> None:
        if slot in self.__dict__:
            raise FrozenContextError("cannot assign %s: a RequestContext is immutable "
                                     "(use replace())" % name)
        self.__dict__[slot] = value

    return property(operator.attrgetter(slot), fset, doc="Set once, when the context is built.")


class RequestContext(oslo_context.RequestContext):
    """Who asked (project, user, admin or not) and the request id; see the module doc.

    ``read_deleted`` (``no``, ``yes``, ``only``) is blockmgr's own field. Any other keyword
    argument goes to ``oslo_context.RequestContext`` (``roles``, ``global_request_id``, ...)
    and is not part of :meth:`to_dict`.
    """

    project_id = _set_once("project_id")
    user_id = _set_once("user_id")
    request_id = _set_once("request_id")
    read_deleted = _set_once("read_deleted")
    # oslo's constructor writes ``_is_admin`` itself, so this setter always refuses.
    is_admin = _set_once("is_admin")

    _built = False

    def __init__(self, project_id: str | None = None, user_id: str | None = None,
                 is_admin: bool = False, request_id: str | None = None,
                 read_deleted: str = "no", **kwargs: Any):
        kwargs.setdefault("overwrite", False)
        self.read_deleted = read_deleted
        super().__init__(project_id=project_id, user_id=user_id, is_admin=bool(is_admin),
                         request_id=request_id, **kwargs)
        self._built = True

    def _key(self) -> tuple:
        return (self.project_id, self.user_id, self.is_admin, self.request_id,
                self.read_deleted)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()   # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "%s(%s)" % (self.__class__.__name__,
                           ", ".join("%s=%r" % pair for pair in zip(FIELDS, self._key())))

    # --- the wire form ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The five :data:`FIELDS`, JSON types only (the form RPC and storage use)."""
        return {"project_id": self.project_id, "user_id": self.user_id,
                "is_admin": self.is_admin, "request_id": self.request_id,
                "read_deleted": self.read_deleted}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, **kwargs: Any) -> "RequestContext":
        """The context of a :meth:`to_dict` dict (None or ``{}``: an anonymous context with
        a fresh request id). Unknown keys are ignored; ``kwargs`` go to the constructor."""
        values = values or {}
        user_id = values.get("user_id")
        return cls(project_id=values.get("project_id"),
                   user_id=user_id if user_id is not None else values.get("user"),
                   is_admin=values.get("is_admin", False),
                   request_id=values.get("request_id"),
                   read_deleted=values.get("read_deleted") or "no", **kwargs)

    # --- derived contexts -------------------------------------------------------------------

    def replace(self, **changes: Any) -> "RequestContext":
        """A new context with the :data:`FIELDS` of this one, ``changes`` applied."""
        fields = dict(zip(FIELDS, self._key()))
        fields.update(changes)
        return RequestContext(**fields)

    def elevated(self) -> "RequestContext":
        """The same request (same request id) with admin rights, for manager-side work."""
        return self.replace(is_admin=True)

    def can_access_project(self, project_id: str | None) -> bool:
        return self.is_admin or project_id == self.project_id

    # --- oslo.context / oslo.log ------------------------------------------------------------

    def update_store(self) -> None:
        """Make this the thread's current context (what oslo.log tags lines with). Only
        an explicit call does; oslo's constructor calls this too, and is ignored."""
        if self._built:
            super().update_store()

    def get_logging_values(self) -> dict[str, Any]:
        """oslo's logging values (``user_identity``, ``global_request_id``, ...) plus
        ``read_deleted``; computed from oslo's full ``to_dict``, not the compact one."""
        values = oslo_context.RequestContext.to_dict(self)
        values.update(user_name=self.user_name, project_name=self.project_name,
                      domain_name=self.domain_name, user_domain_name=self.user_domain_name,
                      project_domain_name=self.project_domain_name,
                      read_deleted=self.read_deleted,
                      auth_token="***" if self.auth_token else None)   # noqa: S105
        return values


def get_admin_context(request_id: str | None = None) -> RequestContext:
    return RequestContext(is_admin=True, request_id=request_id)
