"""The REST API: Cinder's block storage v3 shapes over the client library.

One FastAPI application (:func:`blockmgr.api.rest.app.create_app`) serves ``blockmgr-api`` and
the API inside ``blockmgr serve``. Layout, one job per module:

* ``app``       builds the application from its collaborators and mounts the routers
* ``errors``    every error as Cinder's fault body (``{"itemNotFound": {"message", "code"}}``)
* ``deps``      request context (noauth / keystone headers), admin checks, paging parameters
* ``versions``  version discovery at ``/`` and ``/v3/``
* one router module per resource family (``volumes``, ``snapshots``, ``manage``, ``groups``,
  ``quotas``, ``services``, ...), each thin: parse the body (pydantic, unknown fields
  refused), call the client library, render a view.

Contract for operators and client authors: ``docs/rest-api.md``.
"""
