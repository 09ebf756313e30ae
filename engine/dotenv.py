"""Read ``.env`` (KEY=VALUE lines) into the process environment without overriding it.

The compose services get their environment from ``env_file``; local runs (``make run``,
``python -m engine ...``) read ``./.env`` through this, so the same file configures both.
Malformed lines are refused with the file name and line number.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.config import ConfigError

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def parse(text: str, source: str = ".env") -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ConfigError(f"{source}:{number}: expected KEY=VALUE, got {line[:40]!r}")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        values[key] = value
    return values


def load_dotenv(path: str | os.PathLike[str] = ".env") -> list[str]:
    """Set variables from ``path`` that the environment does not already define."""
    file = Path(path)
    if not file.is_file():
        return []
    loaded = []
    for key, value in parse(file.read_text(encoding="utf-8"), str(file)).items():
        if key not in os.environ:
            os.environ[key] = value
            loaded.append(key)
    return loaded


def set_in_file(path: str | os.PathLike[str], key: str, value: str) -> None:
    """Add or replace ``key`` in the env file (created 0600 if missing)."""
    file = Path(path)
    lines = file.read_text(encoding="utf-8").splitlines() if file.exists() else []
    pattern = re.compile(rf"^\s*(?:export\s+)?{re.escape(key)}\s*=")
    out = [line for line in lines if not pattern.match(line)]
    out.append(f"{key}={value}")
    file.write_text("\n".join(out) + "\n", encoding="utf-8")
    file.chmod(0o600)
