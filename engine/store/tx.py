"""Transaction helper: one unit of work, commit on success, rollback on error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool


@contextmanager
def transaction(pool: ConnectionPool) -> Iterator[psycopg.Connection[Any]]:
    """Borrow a connection and run the block in one transaction."""
    with pool.connection() as conn, conn.transaction():
        yield conn
