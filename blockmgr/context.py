"""The request context: who asked, and the id that ties every log line and event together.

A context travels over RPC and is stored in flow logbooks, so it must round-trip through
:meth:`RequestContext.to_dict` / :meth:`RequestContext.from_dict` using JSON types only.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any


def generate_request_id() -> str:
    return "req-" + str(uuid.uuid4())


@dataclasses.dataclass(frozen=True)
class RequestContext:
    project_id: str | None = None
    user_id: str | None = None
    is_admin: bool = False
    request_id: str = dataclasses.field(default_factory=generate_request_id)
    read_deleted: str = "no"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RequestContext":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def elevated(self) -> "RequestContext":
        """The same request (same request id) with admin rights, for manager-side work."""
        return dataclasses.replace(self, is_admin=True)

    def can_access_project(self, project_id: str | None) -> bool:
        return self.is_admin or project_id == self.project_id


def get_admin_context(request_id: str | None = None) -> RequestContext:
    return RequestContext(is_admin=True, request_id=request_id or generate_request_id())
