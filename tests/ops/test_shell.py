
"""ops/*.sh are strict bash and pass shellcheck; healthcheck.py probes for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "ops").glob("*.sh"))


def test_ops_scripts_exist_strict_and_executable() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"server_setup.sh", "docker_deploy.sh", "ssl_init.sh"} <= names
    for script in SCRIPTS:
        text = script.read_text(encoding="utf-8")
        assert text.startswith("#!/usr/bin/env bash\n"), script.name
        assert "\nset -euo pipefail\n" in text, script.name
        assert os.access(script, os.X_OK), f"{script.name} is not executable"
        syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True,
                                check=False)
        assert syntax.returncode == 0, syntax.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck not installed (apt-get install -y shellcheck)")
def test_ops_scripts_pass_shellcheck() -> None:
    result = subprocess.run(["shellcheck", "--severity=style", *map(str, SCRIPTS)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_deploy_without_env_deploy_fails_clearly(tmp_path: Path) -> None:
    env = {**os.environ, "DEPLOY_ENV_FILE": str(tmp_path / "absent.env")}
    result = subprocess.run([str(ROOT / "ops" / "docker_deploy.sh"), "status"], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "absent.env not found" in result.stderr


def test_docker_deploy_rejects_empty_settings(tmp_path: Path) -> None:
    env_file = tmp_path / "deploy.env"
    env_file.write_text("DEPLOY_SSH_KEY=~/.ssh/id\nDEPLOY_USER=root\nDEPLOY_HOST=\n"
                        "DEPLOY_REMOTE_DIR=/opt/x\n")
    env = {**os.environ, "DEPLOY_ENV_FILE": str(env_file)}
    result = subprocess.run([str(ROOT / "ops" / "docker_deploy.sh"), "status"], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "DEPLOY_HOST is empty" in result.stderr


class _Health(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/api/health" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _probe(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"HEALTHCHECK_URL", "DATABASE_URL"}}
    return subprocess.run([sys.executable, str(ROOT / "ops" / "healthcheck.py")],
                          env={**env, **env_extra}, capture_output=True, text=True, check=False,
                          timeout=30)


def test_healthcheck_http_mode_follows_status() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert _probe({"HEALTHCHECK_URL": f"{base}/api/health"}).returncode == 0
        failing = _probe({"HEALTHCHECK_URL": f"{base}/broken"})
        assert failing.returncode == 1 and "HTTP Error 503" in failing.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_database_mode(db_url: str) -> None:
    assert _probe({"DATABASE_URL": db_url}).returncode == 0
    bad = _probe({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"})
    assert bad.returncode == 1 and "OperationalError" in bad.stderr
    assert "nobody" not in bad.stderr  # the DSN is never echoed
