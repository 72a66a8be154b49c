"""The REST API: Cinder's block storage v3 shapes over the client library.

One FastAPI application (:func:`blockmgr.api.rest.app.create_app`) serves ``blockmgr-api`` and
the API inside ``blockmgr serve``. Layout, one job per module:

* ``app``       builds the application from its collaborators and mounts the routers
* ``errors``    every error as Cinder's fault body (``{"itemNotFound": {"message", "code"}}``),
  transient failures as ``503`` + ``Retry-After``; no exception escapes the application
* ``deps``      request context (noauth / keystone headers), admin checks, paging parameters
* ``versions``  version discovery at ``/`` and ``/v3/``
* one router module per resource family (``volumes``, ``snapshots``, ``manage``, ``groups``,
  ``quotas``, ``services``, ``zones``, ``pools``, ``resource_filters``, ...), each thin:
  parse the body (pydantic, unknown fields and control characters refused), call the
  client library, render a view. Each is mounted twice: under ``/v3/{project_id}`` and,
  for microversion 3.67's URLs, under ``/v3``.

Contract for operators and client authors: ``docs/rest-api.md``.
"""
