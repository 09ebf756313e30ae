
"""docker-compose.yml, Dockerfile, .dockerignore, .env.docker.example and deploy.mk agree."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PYTHON_SERVICES = ("migrate", "engine", "web", "token-refresher")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_services_all_present_on_one_network(compose) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "engine", "web", "token-refresher",
                             "nginx", "certbot"}
    assert compose["networks"] == {"trading-net": {"driver": "bridge"}}
    assert set(compose["volumes"]) == {"postgres_data", "bot_logs", "certbot_certs",
                                       "certbot_www"}
    for name, svc in services.items():
        assert svc["networks"] == ["trading-net"], name
        assert svc["environment"]["TZ"] == "Asia/Kolkata", name


def test_compose_postgres_healthcheck_volume_and_no_ports(compose) -> None:
    pg = compose["services"]["postgres"]
    assert pg["image"] == "postgres:16-alpine"
    assert "postgres_data:/var/lib/postgresql/data" in pg["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert pg["restart"] == "unless-stopped"


def test_compose_only_nginx_publishes_ports(compose) -> None:
    published = {n for n, s in compose["services"].items() if s.get("ports")}
    assert published == {"nginx"}
    assert sorted(compose["services"]["nginx"]["ports"]) == ["443:443", "80:80"]


def test_compose_python_services_share_image_env_and_migrate_gate(compose) -> None:
    services = compose["services"]
    for name in PYTHON_SERVICES:
        svc = services[name]
        assert svc["build"] == "." and svc["image"] == "nifty-engine:latest", name
        assert svc["env_file"] == ".env", name
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
    for name in ("engine", "web", "token-refresher"):
        gate = services[name]["depends_on"]["migrate"]
        assert gate == {"condition": "service_completed_successfully"}, name
        assert services[name]["restart"] == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"  # one-shot: would loop otherwise
    assert "migrate" not in services["migrate"]["depends_on"]
    assert services["migrate"]["command"] == ["python", "-m", "engine", "migrate"]
    assert services["engine"]["command"] == ["python", "-m", "engine", "run"]
    assert services["token-refresher"]["command"][-2:] == ["--interval-sec", "300"]
    assert services["web"]["command"] == ["gunicorn", "-c", "web/gunicorn.conf.py",
                                          "web:create_app()"]
    assert "bot_logs:/app/logs" in services["engine"]["volumes"]
    # the dashboard's Logs page reads the engine's log: same volume, read-only, where
    # ENGINE_LOG_DIR points
    assert "bot_logs:/app/engine-logs:ro" in services["web"]["volumes"]
    assert services["web"]["environment"]["ENGINE_LOG_DIR"] == "/app/engine-logs"


def test_compose_web_healthcheck_targets_api_health(compose) -> None:
    web = compose["services"]["web"]
    assert web["environment"]["HEALTHCHECK_URL"] == "http://127.0.0.1:8080/api/health"
    assert web["healthcheck"]["test"] == ["CMD", "python", "/app/ops/healthcheck.py"]
    assert (ROOT / "ops" / "healthcheck.py").is_file()


def test_compose_nginx_and_certbot_share_certificate_volumes(compose) -> None:
    nginx, certbot = compose["services"]["nginx"], compose["services"]["certbot"]
    assert nginx["image"] == "nginx:alpine" and nginx["restart"] == "unless-stopped"
    assert "./ops/nginx/dashboard.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    assert "certbot_certs:/etc/letsencrypt:ro" in nginx["volumes"]
    assert "certbot_www:/var/www/certbot:ro" in nginx["volumes"]
    assert "./web/static:/usr/share/nginx/html/static:ro" in nginx["volumes"]
    assert certbot["image"] == "certbot/certbot"
    assert certbot["profiles"] == ["certbot"]
    assert set(certbot["volumes"]) == {"certbot_certs:/etc/letsencrypt",
                                       "certbot_www:/var/www/certbot"}


def test_env_example_documents_every_variable_without_secrets() -> None:
    text = (ROOT / ".env.docker.example").read_text(encoding="utf-8")
    keys = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.M))
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "DATABASE_URL",
                "DHAN_CLIENT_ID", "DHAN_ACCESS_TOKEN", "DHAN_PIN", "DHAN_TOTP_SECRET",
                "TELEGRAM_ENABLED", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "CLIQ_ENABLED",
                "CLIQ_WEBHOOK_URL", "DASHBOARD_TOTP_SECRET", "DASHBOARD_SECRET_KEY", "DOMAIN",
                "CERTBOT_EMAIL"):
        assert key in keys, key
    assert "@postgres:5432/" in keys["DATABASE_URL"]
    for key in ("POSTGRES_PASSWORD", "DHAN_ACCESS_TOKEN", "DASHBOARD_SECRET_KEY",
                "DHAN_TOTP_SECRET", "TELEGRAM_BOT_TOKEN"):
        assert re.search(r"change|replace|REPLACE", keys[key]), f"{key} looks like a real value"


def test_dockerfile_non_root_healthcheck_and_pinned_deps() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert re.search(r"^USER app$", text, flags=re.M)
    assert "HEALTHCHECK" in text and "pyproject.toml" in text
    assert "pip install --no-deps ." in text
    assert not re.search(r"(TOKEN|PASSWORD|SECRET)=", text)
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for pattern in (".env", ".env.*", "!.env.docker.example", "var/", ".venv", ".git",
                    "*.sqlite3", "logs/"):
        assert pattern in ignore, pattern


def test_deploy_mk_targets_have_help_and_parse() -> None:
    text = (ROOT / "ops" / "deploy.mk").read_text(encoding="utf-8")
    helped = set(re.findall(r"^([a-z-]+):.*## ", text, flags=re.M))
    assert helped == {"docker-setup", "docker-deploy", "docker-deploy-code", "docker-status",
                      "docker-logs", "docker-restart", "docker-ssh", "docker-migrate-data",
                      "ssl-init"}
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    make = subprocess.run(["make", "-n", "-f", "ops/deploy.mk", "docker-status"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert make.returncode == 0, make.stderr
    assert "ops/docker_deploy.sh status" in make.stdout


def test_deploy_rsync_excludes_secrets_and_state() -> None:
    text = (ROOT / "ops" / "docker_deploy.sh").read_text(encoding="utf-8")
    for pattern in (".env", ".env.deploy", "var/", "logs/", ".venv/", ".git/", "*.sqlite3"):
        assert f"--exclude '{pattern}'" in text, pattern
