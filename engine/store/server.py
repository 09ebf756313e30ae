"""Which PostgreSQL to use: ``DATABASE_URL``, or an embedded server under ``./var/``.

The embedded server comes from the ``pgserver`` wheel, which ships the PostgreSQL binaries,
so a fresh machine needs nothing installed. Its data directory is reused across runs, and
a second process started while the first runs finds the same server (pgserver keeps a
per-data-directory list of the processes using it and stops the server when the last exits).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "engine"


class EmbeddedServerUnavailable(RuntimeError):
    """DATABASE_URL is unset and the embedded server cannot start."""


def embedded_data_dir() -> Path:
    """Where the embedded server keeps its data: ``$ENGINE_VAR_DIR/pgdata`` (default ./var)."""
    return Path(os.environ.get("ENGINE_VAR_DIR", "var")).resolve() / "pgdata"


_embedded = None


def start_embedded() -> str:
    """Start (or join) the embedded server and return a DSN for the engine database."""
    global _embedded
    import warnings

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset in containers
            import pgserver
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedServerUnavailable(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
            "pip install '.[embedded]' or set DATABASE_URL=postgresql://user@host:5432/db"
        ) from exc
    data_dir = embedded_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    if _embedded is None:
        logger.info("starting embedded PostgreSQL with data in %s", data_dir)
        _embedded = pgserver.get_server(data_dir, cleanup_mode="stop")
    uri = _embedded.get_uri()
    _ensure_database(uri, EMBEDDED_DB_NAME)
    return _embedded.get_uri(EMBEDDED_DB_NAME)


def _ensure_database(admin_uri: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another process won
                conn.execute(f'CREATE DATABASE "{name}"')


def database_url() -> str:
    """The DSN this process uses: DATABASE_URL if set, else the embedded server's."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    url = start_embedded()
    # Child processes (web, workers) inherit the same server.
    os.environ["DATABASE_URL"] = url
    return url


def describe(url: str) -> str:
    """A DSN without its password, for status output and logs."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return "<unparseable DATABASE_URL>"
    host = parts.get("host", "local socket")
    if host.startswith("/"):
        host = "embedded (socket)"
    return f"{parts.get('user', '')}@{host}:{parts.get('port', '5432')}/{parts.get('dbname', '')}"
