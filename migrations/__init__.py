"""blockmgr's alembic environment, installed as the ``blockmgr.migrations`` package.

The directory is ``migrations/`` at the top of the source tree; pyproject.toml maps it into the
package so :mod:`blockmgr.db.migration` finds the scripts in an installed wheel too.
"""
