"""The least-privilege segment role (migration 024): what it may read, that custom SQL cannot leave it,
and that a server where it exists without this database's grants still resolves audiences."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlparse
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from passpush import tasks
from passpush.audience import SEGMENT_ROLE
from passpush.db.embedded import drop_database, ensure_database
from passpush.db.migrations import apply_migrations
from passpush.errors import AudienceError
from passpush.paths import MIGRATIONS_DIR
from passpush.seed import SeedSpec, seed_program
from reliability.support import DAG_ID, MESSAGE

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

ROLE_MIGRATION = MIGRATIONS_DIR / "024_segment_reader_role.sql"
LOYALTY_TABLES = ("programs", "users", "passes_master")
PASSPUSH_TABLES = ("push_campaigns", "push_campaign_recipients", "passpush_rate_limits")


def _with_dbname(conninfo: str, dbname: str, **changes: str) -> str:
    params = {**conninfo_to_dict(conninfo), "dbname": dbname, **changes}
    return make_conninfo(**params)


@pytest.fixture
def fresh_database(migrated_database_url: str) -> Iterator[str]:
    admin = _with_dbname(migrated_database_url, "postgres")
    name = f"passpush_role_{uuid.uuid4().hex[:10]}"
    ensure_database(admin, name)
    try:
        yield _with_dbname(migrated_database_url, name)
    finally:
        drop_database(admin, name)


def _migrate_without_024(url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path != ROLE_MIGRATION:
            shutil.copy(path, folder / path.name)
    apply_migrations(url, folder)


def test_the_role_reads_the_loyalty_tables_and_nothing_else(db: psycopg.Connection) -> None:
    can_login, = db.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (SEGMENT_ROLE,)).fetchone()
    assert can_login is False
    for table in LOYALTY_TABLES:
        assert db.execute("SELECT has_table_privilege(%s, %s, 'SELECT'), has_table_privilege(%s, %s,"
                          " 'INSERT, UPDATE, DELETE, TRUNCATE')", (SEGMENT_ROLE, table) * 2).fetchone() == (True, False)
    for table in (*PASSPUSH_TABLES, "pg_catalog.pg_authid"):
        assert db.execute("SELECT has_table_privilege(%s, %s, 'SELECT, INSERT, UPDATE, DELETE')",
                          (SEGMENT_ROLE, table)).fetchone() == (False,)
    assert db.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (SEGMENT_ROLE,)).fetchone() == (True,)


@pytest.mark.parametrize("query", [
    "SELECT name AS member_id FROM push_campaigns",
    "SELECT rendered_message AS member_id FROM push_campaign_recipients",
    "SELECT rolname AS member_id FROM pg_authid",
    "SELECT usename AS member_id FROM pg_shadow",
    "SELECT pg_read_file('postgresql.conf') AS member_id",
    # Taking the session user back before reading: refused inside the contained function.
    "SELECT query_to_xml('SELECT name FROM push_campaigns', false, false, '')::text AS member_id"
    " FROM (SELECT set_config('role', 'none', true)) AS s",
    "SELECT query_to_xml('SELECT rolname FROM pg_authid', false, false, '')::text AS member_id"
    " FROM (SELECT set_config('session_authorization', current_user, true)) AS s",
])
def test_custom_segments_reading_beyond_the_loyalty_tables_are_refused(
        query: str, migrated_database_url: str, db: psycopg.Connection, seed_loyalty) -> None:
    program = seed_loyalty(20)
    campaign_id = tasks.create_campaign(
        {"program_id": program.program_id, "name": "nosy", "message": MESSAGE, "audience": "sql", "sql": query},
        dag_id=DAG_ID, run_id=str(uuid.uuid4()), conninfo=migrated_database_url)

    with pytest.raises(AudienceError, match=r"the segment role may not|cannot set parameter"):
        tasks.resolve_audience(campaign_id, conninfo=migrated_database_url)

    status, preview = db.execute("SELECT status, preview FROM push_campaigns WHERE id = %s",
                                 (campaign_id,)).fetchone()
    assert (status, preview) == ("FAILED", None)
    assert db.execute("SELECT count(*) FROM push_campaign_recipients WHERE campaign_id = %s",
                      (campaign_id,)).fetchone() == (0,)


def test_a_role_without_grants_in_this_database_is_not_used(fresh_database: str, tmp_path: Path) -> None:
    """The role belongs to the server; a database migrated before 024 has no grants for it. Using it
    there anyway made every segment fail with "permission denied for table passes_master"."""
    _migrate_without_024(fresh_database, tmp_path)
    program = seed_program(fresh_database, SeedSpec(members=30, seed=77))
    for conf in ({"audience": "all_active"},
                 {"audience": "sql", "sql": "SELECT external_id AS member_id FROM passes_master"}):
        campaign_id = tasks.create_campaign(
            {"program_id": program.program_id, "name": "old db", "message": MESSAGE, "dry_run": True, **conf},
            dag_id=DAG_ID, run_id=str(uuid.uuid4()), conninfo=fresh_database)
        preview = tasks.resolve_audience(campaign_id, conninfo=fresh_database)
        assert preview["targeted"] == program.active if conf["audience"] == "all_active" else program.members


def test_the_migration_only_notices_when_it_may_not_create_or_grant(fresh_database: str, tmp_path: Path) -> None:
    _migrate_without_024(fresh_database, tmp_path)
    user = f"passpush_plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fresh_database, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEROLE NOSUPERUSER").format(sql.Identifier(user)))
    notices: list[str] = []
    try:
        with psycopg.connect(_with_dbname(fresh_database, conninfo_to_dict(fresh_database)["dbname"], user=user),
                             autocommit=True) as plain:
            plain.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            for statement in sqlparse.split(ROLE_MIGRATION.read_text()):
                plain.execute(statement)
    finally:
        with psycopg.connect(fresh_database, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))
    assert any("not granted" in n for n in notices), notices
    assert any("passpush_run_segment not created" in n for n in notices), notices
