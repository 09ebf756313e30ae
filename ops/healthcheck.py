"""Container liveness probe used by the image's HEALTHCHECK (standard library + psycopg only).

* ``HEALTHCHECK_URL`` set (the web service): GET it, healthy on HTTP 2xx.
* otherwise (engine, token-refresher): ``SELECT 1`` through ``DATABASE_URL`` — the process is
  useless without its system of record, and a dead process ends the container anyway.

Exit status 0 = healthy, 1 = unhealthy (Docker's convention). Never prints secrets: the DSN
is not echoed, only the error class.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def check_http(url: str, timeout: float = 4.0) -> str | None:
    """Return None when ``url`` answers 2xx, else a short reason."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed URL)
            if 200 <= response.status < 300:
                return None
            return f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def check_database(dsn: str, timeout: int = 4) -> str | None:
    """Return None when ``SELECT 1`` succeeds on ``dsn``, else the error class name."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return type(exc).__name__


def main() -> int:
    """Run the probe selected by the environment."""
    url = os.environ.get("HEALTHCHECK_URL", "").strip()
    if url:
        problem = check_http(url)
    else:
        dsn = os.environ.get("DATABASE_URL", "").strip()
        problem = "DATABASE_URL is not set" if not dsn else check_database(dsn)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
