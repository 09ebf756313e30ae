"""Migration runner against a real PostgreSQL."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from engine.store.migrate import SCHEMA_DIR, MigrationError, discover, migrate, status


def _copy_schema(tmp_path: Path) -> Path:
    target = tmp_path / "schema"
    shutil.copytree(SCHEMA_DIR, target)
    return target


def test_migrate_twice_second_run_is_noop(empty_database: str) -> None:
    first = migrate(empty_database)
    assert first == [f.name for f in discover()]
    assert migrate(empty_database) == []
    assert all(s.state == "applied" for s in status(empty_database))


def test_migrate_changed_checksum_refused_naming_file(empty_database: str, tmp_path: Path) -> None:
    schema = _copy_schema(tmp_path)
    migrate(empty_database, schema)
    first = sorted(schema.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after apply\n")
    with pytest.raises(MigrationError, match=first.name):
        migrate(empty_database, schema)
    assert status(empty_database, schema)[0].state == "changed"


def test_migrate_pending_file_listed_then_applied(empty_database: str, tmp_path: Path) -> None:
    schema = _copy_schema(tmp_path)
    migrate(empty_database, schema)
    (schema / "900_extra.sql").write_text("CREATE TABLE extra_thing (id int);")
    assert status(empty_database, schema)[-1].state == "pending"
    assert migrate(empty_database, schema) == ["900_extra.sql"]


def test_migrate_failing_file_rolls_back_and_names_it(empty_database: str, tmp_path: Path) -> None:
    schema = _copy_schema(tmp_path)
    (schema / "901_broken.sql").write_text("CREATE TABLE half_done (id int);\nSELECT nope FROM nowhere;")
    with pytest.raises(MigrationError, match=r"901_broken\.sql"):
        migrate(empty_database, schema)
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations").fetchall()]
    assert "901_broken.sql" not in names


def test_migrate_misnamed_file_refused(tmp_path: Path) -> None:
    schema = tmp_path / "schema"
    schema.mkdir()
    (schema / "1_bad name.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNN_"):
        discover(schema)


def test_migrate_concurrent_runners_apply_each_file_once(empty_database: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def runner() -> None:
        barrier.wait()
        try:
            results.append(migrate(empty_database))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    applied = [name for r in results for name in r]
    assert sorted(applied) == sorted(f.name for f in discover())
    with psycopg.connect(empty_database) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert count == len(discover())
