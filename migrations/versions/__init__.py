"""Alembic revisions of blockmgr's schema, one module per revision, oldest first."""
