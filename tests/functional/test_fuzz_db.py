"""schemathesis over the whole OpenAPI document on MariaDB and PostgreSQL: the same run as
``tests/unit/rest/test_fuzz.py`` (every operation, positive and negative examples, then
positive ones on ids of real resources; no server error, bad input refused with a 4xx,
answers as the document declares), with the stack's database on the real servers, where
text and integer limits differ from SQLite's. Fewer examples per operation than on SQLite
(each request is a round trip to the database server)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings

from tests.functional.stacks import all_in_one_on
from tests.unit.rest import test_fuzz

#: Examples per operation and generation mode on a database server.
MAX_EXAMPLES = 4


@pytest.fixture
def db_stack(db_backend, tmp_path):
    if db_backend == "sqlite":
        pytest.skip("SQLite is fuzzed by tests/unit/rest/test_fuzz.py")
    with all_in_one_on(db_backend, tmp_path) as node:
        yield node


def test_no_server_error_on_a_database_server(db_stack, monkeypatch):
    assert db_stack.db.dialect in ("postgresql", "mysql")
    monkeypatch.setattr(test_fuzz, "FUZZ_SETTINGS",
                        settings(test_fuzz.FUZZ_SETTINGS, max_examples=MAX_EXAMPLES))
    with TestClient(db_stack.app, raise_server_exceptions=False) as http:
        test_fuzz.test_no_server_error_and_bad_input_is_refused(db_stack, http)
