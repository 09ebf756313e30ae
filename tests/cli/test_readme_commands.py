"""Every ``python -m engine ...`` command that README.md shows must run.

The commands are read from the README itself (fenced blocks and inline code), so a command
added to the README is checked without touching this file: each one's subcommand answers
``--help``, each full command line parses, and the legacy import/dedupe commands run for real
on a small legacy fixture against a fresh database.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import build_parser
from tests.ops.legacy_fixtures import build_legacy_json, build_legacy_sqlite

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
COMMAND = re.compile(r"python -m engine\s+([^`#\n]*)")


def readme_commands() -> list[str]:
    """The argument strings after ``python -m engine`` in README.md, in order, deduplicated."""
    seen: dict[str, None] = {}
    for match in COMMAND.finditer(README.read_text(encoding="utf-8")):
        args = match.group(1).strip().rstrip(")").strip()
        if args.startswith("<") or not args:
            continue
        seen.setdefault(args, None)
    return list(seen)


def _subparsers(parser) -> dict:
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return action.choices
    return {}


def subcommand_path(argv: list[str]) -> list[str]:
    """The leading tokens of ``argv`` that name (nested) subcommands."""
    parser, path = build_parser(), []
    for token in argv:
        choices = _subparsers(parser)
        if token not in choices:
            break
        parser = choices[token]
        path.append(token)
    return path


def concrete(args: str, files: dict[str, Path]) -> list[str]:
    """Turn README notation into a real argv: ``[--dry-run]`` -> ``--dry-run``, FILE -> a path."""
    args = re.sub(r"\[([^\]]+)\]", r"\1", args)
    argv = shlex.split(args)
    return [str(files.get(token, token)) for token in argv]


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_readme_lists_the_commands_this_test_checks() -> None:
    commands = readme_commands()
    heads = {" ".join(subcommand_path(shlex.split(re.sub(r"[\[\]]", "", c)))) for c in commands}
    # the README documents at least these; if one disappears, this test must be revisited
    assert {"up", "run", "status", "migrate", "settings set", "import-sqlite", "import-json",
            "dedupe-closed-trades", "backtest run", "dhan-sim", "token-refresher",
            "auth setup", "web"} <= heads, heads


@pytest.mark.parametrize("args", readme_commands())
def test_readme_command_parses_and_has_help(args: str, tmp_path: Path) -> None:
    files = {"FILE": tmp_path / "legacy.sqlite3", "DIR": tmp_path,
             "arb_bot_records.sqlite3": tmp_path / "legacy.sqlite3"}
    argv = concrete(args, files)
    path = subcommand_path(argv)
    assert path, f"README command 'python -m engine {args}' names no known subcommand"
    out = _run([*path, "--help"])
    assert out.returncode == 0, f"python -m engine {' '.join(path)} --help failed:\n{out.stderr}"
    assert "usage:" in out.stdout
    # the full line parses: argparse exits with 2 and "error:" on an unknown option or choice
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README command 'python -m engine {args}' does not parse (exit {exc.code})")
    assert callable(getattr(ns, "handler", None)), f"'{args}' parses to no handler"


@pytest.fixture
def legacy_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=db_url, ENGINE_ENV_FILE=os.devnull)
    env.pop("PYTHONPATH", None)
    return env


def test_readme_legacy_import_commands_run_for_real(legacy_env, pool, tmp_path: Path) -> None:
    sqlite = build_legacy_sqlite(tmp_path / "legacy.sqlite3")
    json_root = build_legacy_json(tmp_path / "json")
    files = {"FILE": sqlite, "arb_bot_records.sqlite3": sqlite, "DIR": json_root}
    ran = set()
    for args in readme_commands():
        argv = concrete(args, files)
        head = subcommand_path(argv)
        if head and head[0] in {"import-sqlite", "import-json", "dedupe-closed-trades"}:
            out = _run(argv, legacy_env)
            assert out.returncode == 0, f"python -m engine {args}:\n{out.stdout}\n{out.stderr}"
            assert "Traceback" not in out.stderr
            ran.add(head[0])
    assert ran == {"import-sqlite", "import-json", "dedupe-closed-trades"}

    # the README's commands above were dry runs: nothing was written
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM closed_trades").fetchone()["n"] == 0
    # and the real import through the main entry point writes the legacy closes once
    for _ in range(2):
        out = _run(["import-sqlite", str(sqlite)], legacy_env)
        assert out.returncode == 0, out.stderr
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM closed_trades").fetchone()["n"] == 3
