"""Package list and data files for setuptools; every other piece of metadata lives in
pyproject.toml.

pyproject.toml cannot combine automatic package discovery with a package mapped from another
directory, and blockmgr needs both: every package under ``blockmgr/`` (found automatically, so a
new package needs no edit here) plus the top-level ``migrations/`` directory installed as
``blockmgr.migrations`` (the mapping is ``[tool.setuptools] package-dir`` in pyproject.toml).

Data files, installed under ``<prefix>/share/blockmgr/`` (``/usr/local/share/blockmgr`` for a
system-wide install, ``<venv>/share/blockmgr`` in a virtualenv) and shipped in the sdist:

* ``blockmgr.conf.sample`` and ``blockmgr-config-generator.conf`` (``etc/blockmgr/``);
* ``systemd/*.service``, the units of blockmgr-api, blockmgr-scheduler and blockmgr-volume
  (``etc/systemd/``).
"""

import glob

from setuptools import find_packages, setup

DATA_FILES = [
    ("share/blockmgr", ["etc/blockmgr/blockmgr.conf.sample",
                        "etc/blockmgr/blockmgr-config-generator.conf"]),
    ("share/blockmgr/systemd", sorted(glob.glob("etc/systemd/*.service"))),
]

setup(packages=find_packages(include=["blockmgr", "blockmgr.*"])
      + ["blockmgr.migrations", "blockmgr.migrations.versions"],
      data_files=DATA_FILES)
