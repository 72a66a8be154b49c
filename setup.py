"""Package list for setuptools; every other piece of metadata lives in pyproject.toml.

pyproject.toml cannot combine automatic package discovery with a package mapped from another
directory, and blockmgr needs both: every package under ``blockmgr/`` (found automatically, so a
new package needs no edit here) plus the top-level ``migrations/`` directory installed as
``blockmgr.migrations`` (the mapping is ``[tool.setuptools] package-dir`` in pyproject.toml).
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["blockmgr", "blockmgr.*"])
      + ["blockmgr.migrations", "blockmgr.migrations.versions"])
