"""blockmgr: a block storage manager built from persisted TaskFlow flows."""

__version__ = "0.1.0"
