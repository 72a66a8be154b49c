"""Persistence: typed SQLAlchemy models, sessions through oslo.db, query-only repositories."""
