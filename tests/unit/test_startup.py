"""Daemon start-up imports without the cyclic collector (blockmgr.startup)."""

from __future__ import annotations

from tests.conftest import assert_python_ok


def test_preload_imports_with_the_collector_off_then_freezes_and_restores_it():
    code = (
        "import gc\n"
        "from blockmgr import startup\n"
        "seen = []\n"
        "gc.callbacks.append(lambda phase, info: seen.append(info['generation']))\n"
        "assert gc.get_freeze_count() == 0\n"
        "startup.preload(startup.VOLUME_WORKER_MODULES)\n"
        "assert seen == [], seen\n"
        "assert gc.isenabled() and gc.get_freeze_count() > 100000, gc.get_freeze_count()\n"
        "import sys\n"
        "assert 'blockmgr.volume.manager' in sys.modules\n")
    assert_python_ok(code)


def test_a_failing_import_still_restores_the_collector():
    code = (
        "import gc\n"
        "from blockmgr import startup\n"
        "try:\n"
        "    startup.preload(['blockmgr.no_such_module'])\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
        "assert gc.isenabled()\n")
    assert_python_ok(code)
