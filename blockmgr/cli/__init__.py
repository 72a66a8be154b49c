"""``blockmgr``, the user command line, as a client of the REST API.

It never touches the database or RPC: everything goes through ``/v3/{project}/...`` with
Cinder's request and response shapes, so it works the same against ``blockmgr serve`` on a
laptop and against ``blockmgr-api`` in front of a cluster. One job per module:

* ``errors``      what can go wrong, each with the process exit code it maps to
* ``http``        the REST client: noauth headers, microversion, fault bodies to errors
* ``output``      table and JSON rendering
* ``wait``        ``--wait``: poll a resource until it settles, progress on stderr
* ``common``      arguments shared by several commands (paging, ``--wait``, ``--ref``)
* ``volumes``, ``snapshots``, ``groups``, ``manageable``: the commands of each family

The entry point (global options, dispatch, exit codes) is :mod:`blockmgr.cmd.cli`; the user
guide is ``docs/cli.md``.
"""
