"""Checking TaskFlow's logbook schema at worker start without loading alembic."""

from __future__ import annotations

import sqlalchemy as sa

from blockmgr.flows import logbook_schema
from tests.conftest import assert_python_ok


def test_head_is_one_revision_of_taskflows_scripts():
    heads = logbook_schema.head_revisions()
    assert len(heads) == 1
    assert all(len(h) >= 11 for h in heads)


def test_is_current_only_when_the_database_records_the_head(tmp_path):
    engine = sa.create_engine("sqlite:///%s" % (tmp_path / "lb.sqlite"))
    assert not logbook_schema.is_current(engine)   # no version table
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('1cea328f0f65')"))
    assert not logbook_schema.is_current(engine)   # behind
    [head] = logbook_schema.head_revisions()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert logbook_schema.is_current(engine)
    engine.dispose()


def test_importing_the_flow_stack_does_not_load_alembic_and_migrations_still_load():
    code = (
        "import sys\n"
        "from blockmgr.volume import manager\n"
        "from taskflow.persistence.backends import impl_sqlalchemy\n"
        "assert 'alembic' not in sys.modules, 'alembic imported'\n"
        "assert callable(impl_sqlalchemy.migration.db_sync)\n"
        "assert 'alembic' in sys.modules\n")
    assert_python_ok(code)
