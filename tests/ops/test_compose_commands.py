
"""Every Python service of docker-compose.yml, executed for real (there is no Docker here).

Each test takes the service's ``command`` exactly as the compose file writes it, swaps only
the executable for this machine's (``python`` -> this interpreter, ``gunicorn`` -> the venv's)
and runs it with the service's ``environment`` merged over os.environ, DATABASE_URL pointing
at a fresh test database (the compose host ``postgres`` does not resolve here) and the
log/var directories under tmp. Healthcheck commands (compose's and the Dockerfile's) are run
the same way, with ``/app`` mapped to the repository root.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent
EXECUTABLES = {
    "python": sys.executable,
    "gunicorn": str(VENV_BIN / "gunicorn") if (VENV_BIN / "gunicorn").exists()
    else shutil.which("gunicorn"),
}
#: Variables of the host environment that would change what a service does in a test.
SCRUBBED = ("DHAN_CLIENT_ID", "DHAN_ACCESS_TOKEN", "DHAN_PIN", "DHAN_TOTP_SECRET", "BROKER",
            "MARKET_SOURCE", "TELEGRAM_ENABLED", "CLIQ_ENABLED", "HEALTHCHECK_URL",
            "GUNICORN_CMD_ARGS", "WEB_HOST", "WEB_PORT", "WEB_WORKERS", "SIM_START", "SIM_SPEED", "SIM_SEED")


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def service(compose: Mapping, name: str) -> dict:
    services = compose["services"]
    assert name in services, f"service {name!r} missing from docker-compose.yml"
    return services[name]


def command_of(svc: Mapping) -> list[str]:
    """The service's command as argv (list form as is, string form split like compose)."""
    raw = svc.get("command")
    assert raw, "service has no command (the Dockerfile CMD would run instead)"
    return list(raw) if isinstance(raw, list) else shlex.split(raw)


def local_argv(argv: list[str]) -> list[str]:
    """Replace the container's executable with this machine's (nothing else changes)."""
    exe = EXECUTABLES.get(argv[0])
    assert exe, f"no local executable for {argv[0]!r}"
    return [exe, *argv[1:]]


def environment_of(svc: Mapping) -> dict[str, str]:
    """The service's ``environment`` (mapping or KEY=VALUE list form) as a dict of strings."""
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, os.environ.get(item, ""))
                   for item in raw)
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def service_env(svc: Mapping, tmp: Path, db_url: str, **overrides: str) -> dict[str, str]:
    """os.environ (minus broker/chat secrets), then the service's environment, then the
    test's database, tmp log/var directories and ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(environment_of(svc))
    env.update(DATABASE_URL=db_url, LOG_DIR=str(tmp / "logs"), ENGINE_VAR_DIR=str(tmp / "var"),
               PYTHONUNBUFFERED="1")
    env.update(overrides)
    return env


def healthcheck_argv(test: list[str] | str) -> list[str]:
    """A compose/Dockerfile healthcheck ``test`` as argv, /app mapped to the repository root
    and compose's ``$$`` escape undone."""
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    kind, *rest = test
    rest = [part.replace("$$", "$").replace("/app/", f"{ROOT}/") for part in rest]
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", rest[0]]
    assert kind == "CMD", f"unknown healthcheck form {kind!r}"
    return local_argv(rest)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM, wait; SIGKILL if it does not stop in time. Returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"pid {proc.pid} ignored SIGTERM for {timeout}s") from None


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Web:
    """The ``web`` service's command running on a loopback port."""

    proc: subprocess.Popen
    port: int
    env: dict[str, str]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_web(compose: Mapping, tmp: Path, db_url: str, **overrides: str) -> Web:
    """Start the compose ``web`` command (gunicorn) bound to 127.0.0.1:<free port>; returns
    once /api/health answers. The caller stops it with :func:`stop` in a finally block."""
    svc = service(compose, "web")
    port = free_port()
    env = service_env(svc, tmp, db_url, WEB_HOST="127.0.0.1", WEB_PORT=str(port),
                      WEB_WORKERS="1", WEB_THREADS="8", **overrides)
    if "HEALTHCHECK_URL" in env:  # same path, the test's port
        env["HEALTHCHECK_URL"] = env["HEALTHCHECK_URL"].replace(":8080/", f":{port}/")
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / f"web-{port}.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(local_argv(command_of(svc)), cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    web = Web(proc=proc, port=port, env=env, log=log)
    try:
        eventually(lambda: proc.poll() is not None or _listening(port), timeout=20)
        assert proc.poll() is None, f"gunicorn exited {proc.returncode}:\n{web.output()}"
    except BaseException:
        stop(proc)
        raise
    return web


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture
def web_service(compose, tmp_path: Path, db_url: str) -> Iterator[Web]:
    web = start_web(compose, tmp_path, db_url)
    try:
        yield web
    finally:
        rc = stop(web.proc)
        assert rc == 0, f"gunicorn exited {rc} on SIGTERM:\n{web.output()}"


def _run(argv: list[str], env: Mapping[str, str], timeout: float = 60
         ) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=dict(env), capture_output=True, text=True,
                          timeout=timeout, check=False)


def _count(db_url: str, table: str) -> int:
    with psycopg.connect(db_url, connect_timeout=5) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# ------------------------------------------------------------------------------- migrate
def test_compose_migrate_command_applies_schema_then_reports_up_to_date(
        compose, tmp_path: Path, empty_database: str) -> None:
    svc = service(compose, "migrate")
    argv, env = local_argv(command_of(svc)), service_env(svc, tmp_path, empty_database)
    first = _run(argv, env)
    assert first.returncode == 0, first.stdout + first.stderr
    files = sorted(p.name for p in (ROOT / "schema").glob("[0-9][0-9][0-9]_*.sql"))
    assert [f"applied {name}" for name in files] == first.stdout.split("\n")[:len(files)]
    assert _count(empty_database, "schema_migrations") == len(files)
    second = _run(argv, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.strip() == "schema is up to date"


# ------------------------------------------------------------------------------- engine
def test_compose_engine_command_runs_sim_market_and_stops_cleanly_on_sigterm(
        compose, tmp_path: Path, db_url: str) -> None:
    svc = service(compose, "engine")
    env = service_env(svc, tmp_path, db_url, MARKET_SOURCE="sim", BROKER="paper",
                      SIM_START="2025-02-03", SIM_SPEED="5000")
    out_path = tmp_path / "engine.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(local_argv(command_of(svc)), cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        eventually(lambda: proc.poll() is not None or _count(db_url, "strategy_battle_log") > 0,
                   timeout=30, interval=0.1)
        assert proc.poll() is None, out_path.read_text()
    finally:
        rc = stop(proc, timeout=60)  # compose: stop_grace_period 60s
    output = out_path.read_text(encoding="utf-8", errors="replace")
    assert rc == 0, output
    assert "engine running:" in output and "market=sim, broker=paper" in output
    assert "clock starts 2025-02-03 09:15 IST" in output
    assert "signal SIGTERM: stopping" in output and "engine stopped" in output
    assert "[final state]" in output and "Traceback" not in output
    assert _count(db_url, "strategy_battle_log") > 0
    assert (tmp_path / "logs" / "engine.log").stat().st_size > 0  # LOG_DIR honoured


# ------------------------------------------------------------------------------- web
def test_compose_web_command_serves_api_health_with_database_ok(web_service: Web) -> None:
    status, body = http_get(f"{web_service.url}/api/health")
    assert status == 200, body
    health = json.loads(body)
    assert health["database"] == "ok"
    assert set(health) >= {"status", "engine_heartbeat_age_s", "token_expires_at"}
    status, _ = http_get(f"{web_service.url}/api/auth/nginx-check")
    assert status == 401  # no session: what nginx's auth_request relies on
    assert "Booting worker" in web_service.output()


def test_compose_web_command_binds_where_nginx_and_the_healthcheck_connect(
        compose, tmp_path: Path, db_url: str) -> None:
    """With the compose environment as written, gunicorn must listen on the container's
    interface at the exposed port that nginx's upstream and HEALTHCHECK_URL use."""
    svc = service(compose, "web")
    env = service_env(svc, tmp_path, db_url)  # WEB_HOST/WEB_PORT only from compose
    printed = _run([*local_argv(command_of(svc)), "--print-config"], env)
    assert printed.returncode == 0, printed.stderr
    config = {k.strip(): v.strip() for k, _, v in
              (line.partition("=") for line in printed.stdout.splitlines())}
    bind = config["bind"]
    port = str(svc["expose"][0])
    assert bind == f"['0.0.0.0:{port}']", (
        f"gunicorn binds {bind}: nginx (another container) cannot reach web:{port}")
    assert f"server web:{port};" in (ROOT / "ops/nginx/dashboard.conf").read_text()
    assert env["HEALTHCHECK_URL"].startswith(f"http://127.0.0.1:{port}/")


def test_compose_web_healthcheck_command_passes_against_running_gunicorn(
        compose, web_service: Web) -> None:
    argv = healthcheck_argv(service(compose, "web")["healthcheck"]["test"])
    assert web_service.env["HEALTHCHECK_URL"] == f"{web_service.url}/api/health"
    ok = _run(argv, web_service.env, timeout=20)
    assert ok.returncode == 0, ok.stderr
    down = _run(argv, {**web_service.env, "HEALTHCHECK_URL": f"http://127.0.0.1:{free_port()}/"},
                timeout=20)
    assert down.returncode == 1 and down.stderr.startswith("unhealthy: "), down.stderr


def test_dockerfile_healthcheck_probes_database_for_engine_and_refresher(
        compose, tmp_path: Path, db_url: str) -> None:
    """engine and token-refresher define no healthcheck: the image's HEALTHCHECK applies."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.strip().startswith("CMD [") and
                "healthcheck" in x)
    argv = healthcheck_argv(["CMD", *json.loads(line.strip()[len("CMD "):])])
    for name in ("engine", "token-refresher"):
        svc = service(compose, name)
        assert "healthcheck" not in svc, name
        env = service_env(svc, tmp_path, db_url)
        assert "HEALTHCHECK_URL" not in env
        ok = _run(argv, env, timeout=20)
        assert ok.returncode == 0, (name, ok.stderr)
    bad = _run(argv, {**env, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x"},
               timeout=20)
    assert bad.returncode == 1 and "OperationalError" in bad.stderr
    assert "postgres@" not in bad.stderr  # the DSN is never echoed


@pytest.mark.skipif(shutil.which("pg_isready") is None, reason="pg_isready not installed "
                    "(apt-get install -y postgresql-client)")
def test_compose_postgres_healthcheck_command_runs(compose, db_url: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(db_url)
    argv = healthcheck_argv(service(compose, "postgres")["healthcheck"]["test"])
    env = {**os.environ, "POSTGRES_USER": parts.get("user", "postgres"),
           "POSTGRES_DB": parts["dbname"], "PGPORT": str(parts.get("port", 5432))}
    if parts.get("host") not in (None, "127.0.0.1", "localhost"):
        pytest.skip(f"test database is not on 127.0.0.1 ({parts.get('host')})")
    result = _run(argv, env, timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepting connections" in result.stdout


# ------------------------------------------------------------------------------- token-refresher
def _refresher_has(flag: str, env: Mapping[str, str]) -> bool:
    helped = _run([sys.executable, "-m", "engine", "token-refresher", "--help"], env)
    return helped.returncode == 0 and flag in helped.stdout


def test_compose_token_refresher_command_parses_and_has_help(
        compose, tmp_path: Path, db_url: str) -> None:
    svc = service(compose, "token-refresher")
    argv = local_argv(command_of(svc))
    env = service_env(svc, tmp_path, db_url)
    helped = _run([*argv, "--help"], env)
    assert helped.returncode == 0, helped.stdout + helped.stderr
    assert "--interval-sec" in helped.stdout
    assert argv[1:4] == ["-m", "engine", "token-refresher"]


def test_compose_token_refresher_one_cycle_in_paper_mode_exits_0(
        compose, tmp_path: Path, db_url: str) -> None:
    svc = service(compose, "token-refresher")
    env = service_env(svc, tmp_path, db_url, BROKER="paper")
    if not _refresher_has("--once", env):
        pytest.skip("`python -m engine token-refresher --once` is not implemented yet "
                    "(engine/commands/token_refresher.py)")
    result = _run([*local_argv(command_of(svc)), "--once"], env, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to refresh" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_compose_token_refresher_command_idles_in_paper_mode_until_sigterm(
        compose, tmp_path: Path, db_url: str) -> None:
    """The long-running form (no --once) must idle, not exit: restart unless-stopped would
    otherwise restart it in a loop."""
    svc = service(compose, "token-refresher")
    env = service_env(svc, tmp_path, db_url, BROKER="paper")
    out_path = tmp_path / "refresher.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(local_argv(command_of(svc)), cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        eventually(lambda: proc.poll() is not None or
                   "nothing to refresh" in out_path.read_text(errors="replace"), timeout=20)
        assert proc.poll() is None, f"exited {proc.returncode}:\n{out_path.read_text()}"
    finally:
        rc = stop(proc)
    assert rc == 0, out_path.read_text()


def test_compose_engine_follows_the_token_of_the_refresher_service(
        compose, tmp_path: Path, db_url: str) -> None:
    """Two renewers would revoke each other's Dhan token: with a token-refresher service in
    the stack, the engine's configuration must say the refresher is external."""
    from engine import config as engine_config

    assert command_of(service(compose, "token-refresher"))[3] == "token-refresher"
    cfg = engine_config.load(service_env(service(compose, "engine"), tmp_path, db_url))
    assert cfg.token_refresher_external is True
