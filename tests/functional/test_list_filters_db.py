"""The list filters of later microversions (like-filters, time comparisons, booleans) on
MariaDB and PostgreSQL: the same checks as ``tests/unit/rest/test_list_filters.py``, where
LIKE's case rules, its escape character and time comparisons differ between databases."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.functional.test_rest_bad_input_db import db_stack  # noqa: F401  (the fixture)
from tests.unit.rest import test_list_filters


def test_volume_and_snapshot_filters_on_a_database_server(db_stack):  # noqa: F811
    assert db_stack.db.dialect in ("postgresql", "mysql")
    with TestClient(db_stack.app, raise_server_exceptions=False) as http:
        test_list_filters.test_volume_filters_by_version(http, db_stack)
        test_list_filters.test_snapshot_filters_by_version(http, db_stack)
