"""What start-up recovery (:mod:`blockmgr.volume.recovery`) must leave alone in a cluster.

Step 1 of recovery needs nothing here: a cluster runner's ``unfinished()`` returns only the
flows this worker could claim. Step 2 (orphaned transitional rows) must not touch a resource
whose job a live peer has just posted and claimed but whose flow is not persisted yet:
:func:`busy_resources` names them.
"""

from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)


def busy_resources(runner) -> set[str]:
    """Resource ids of jobs on the cluster's board that are claimed by someone (a live
    worker) -- empty for a runner that is not a cluster member's."""
    board = getattr(runner, "board", None)
    if board is None:
        return set()
    busy = set()
    try:
        for job in board.jobs():
            if board.owner(job.uuid) is None:
                continue
            resource_id = (job.details or {}).get("resource_id")
            if resource_id:
                busy.add(resource_id)
    except Exception:
        LOG.warning("Could not read the cluster jobboard; orphan recovery goes on without it",
                    exc_info=True)
    return busy
