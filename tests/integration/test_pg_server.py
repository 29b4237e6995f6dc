"""The tests' own PostgreSQL server (tests/pg_server.py) starts and isolates databases."""

from __future__ import annotations

import psycopg

from tests.pg_server import PgServer


def test_each_test_gets_an_empty_database_of_its_own(pg_server: PgServer, pg_url: str) -> None:
    other = pg_server.create_database()
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
            assert row is not None and row[0] >= 150000
        with psycopg.connect(other, autocommit=True) as conn:
            found = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 't'").fetchone()
            assert found == (0,)
    finally:
        pg_server.drop_database(other)
