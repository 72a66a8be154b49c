"""The scheduler: picks a backend pool for creates and checks routes for imports and extends.

``rpcapi`` (client, what API services and volume workers import), ``manager`` (endpoints),
``host_state`` (capacity reports + charges), ``filters`` / ``weighers`` (placement rules),
``liveness`` (which backends are up), ``reservations`` (orphaned quota reservations sweep),
``service`` (the daemon's parts wired together). See ``docs/scheduler.md``.
"""
