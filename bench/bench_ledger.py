"""Benchmark: what the request ledger costs a worker per request, without RPC or flows.

A worker that runs a request claims it (one conditional UPDATE) and marks it done (one more)
around its flow (``blockmgr.ledger.Ledger.run``). This measures exactly that: N pending
requests are inserted into a fresh database (MariaDB by default, or PostgreSQL, or an SQLite
file), then claimed, run (an empty call) and finished one after the other; it prints the CPU
time and the wall time per request of this process. The database server's own CPU is not
included (``bench_e2e.py`` reports the whole machine).

    .venv/bin/python bench/bench_ledger.py [--db mysql|postgresql|sqlite] [--requests 2000]

Never a timed test: figures go to ``docs/benchmarks.md`` ("The request ledger").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blockmgr import conf as bm_conf  # noqa: E402
from blockmgr import ledger  # noqa: E402
from blockmgr.db import migration  # noqa: E402
from blockmgr.db import models  # noqa: E402
from blockmgr.db.session import Database, preferred_mysql_driver  # noqa: E402

SERVERS = {
    "mysql": os.environ.get("BLOCKMGR_TEST_MYSQL_URL",
                            "mysql+%s://root@127.0.0.1:3306" % preferred_mysql_driver()),
    "postgresql": os.environ.get("BLOCKMGR_TEST_PG_URL",
                                 "postgresql+psycopg2://root@127.0.0.1:5432"),
}
TARGET = "bench@lb"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("mysql", "postgresql", "sqlite"), default="mysql")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()

    name = "bm_ledger_%s" % uuid.uuid4().hex[:8]
    tmp = tempfile.mkdtemp(prefix="bm-bench-ledger-")
    admin = None
    if args.db == "sqlite":
        url = "sqlite:///%s" % os.path.join(tmp, "ledger.sqlite")
    else:
        admin = sa.create_engine(SERVERS[args.db] + ("/test" if args.db == "mysql"
                                                     else "/postgres"),
                                 isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE %s" % name)
        url = "%s/%s" % (SERVERS[args.db], name)
    db = Database(url)
    try:
        migration.upgrade(db.engine)
        conf = bm_conf.new_config(args=[])
        book = ledger.Ledger(db, conf, owner_prefix=TARGET, targets=[TARGET])
        now = models.utcnow()
        ids = [str(uuid.uuid4()) for _ in range(args.requests)]
        with db.engine.begin() as conn:
            conn.execute(models.Request.__table__.insert(), [
                {"id": rid, "kind": "volume", "resource_id": rid, "action": "create_volume",
                 "arguments": "{}", "context": "{}", "target": TARGET, "state": "pending",
                 "attempts": 0, "created_at": now} for rid in ids])
        for rid in ids[:50]:   # warm the pool and the statement cache
            book.run(rid, lambda: None)
        measured = ids[50:]
        cpu, wall = time.process_time(), time.monotonic()
        for rid in measured:
            book.run(rid, lambda: None)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        print("request ledger, %s (%s): %d requests claimed, run and finished one by one"
              % (args.db, db.engine.dialect.driver, len(measured)))
        print("  per request: %.3f ms CPU of this process, %.3f ms wall"
              % (cpu * 1000 / len(measured), wall * 1000 / len(measured)))
    finally:
        db.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.exec_driver_sql("DROP DATABASE %s" % name)
            admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
