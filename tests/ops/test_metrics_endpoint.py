"""/metrics: Prometheus text exposition from the engine's saved snapshot and the database,
with no secret anywhere in it."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from psycopg.types.json import Jsonb

import web
from engine.ops.metrics import REGISTRY, record_broker_error, save_metrics
from engine.timeutil import IST

TOKEN = "eyJhbGciOiJIUzUxMiJ9.SECRET-PAYLOAD.SECRET-SIGNATURE"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*)?\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def _parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reader of the text format: every line a HELP, a TYPE or a sample."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            typed[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"sample before its TYPE: {line}"
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', m.group(3) or ""))
        out.setdefault(name, []).append((labels, float(m.group(5))))
    return out


@pytest.fixture
def app(pool, db_url, tmp_path):
    made = web.create_app({"POOL": pool, "DATABASE_URL": db_url,
                           "SECRET_KEY": "metrics-test-" + "k" * 32,
                           "DASHBOARD_TOTP_SECRET": "JBSWY3DPEHPK3PXP",
                           "CHAT_CHANNELS": ("telegram",), "VAR_DIR": str(tmp_path / "var"),
                           "LOG_DIR": str(tmp_path / "logs"), "START_BRIDGE": False,
                           "TESTING": True})
    yield made
    web.shutdown(made)


def _seed(pool) -> None:
    REGISTRY.reset()
    for seconds in (0.04, 0.3, 0.3, 7.0):
        REGISTRY.observe_scan(seconds)
    record_broker_error("DH-904")
    record_broker_error("DH-904")
    record_broker_error(None)
    REGISTRY.inc("actor_restarts_total", "scanner")
    REGISTRY.inc("broker_errors_total", f"token {TOKEN}")  # a label that is not a code
    save_metrics(pool)
    expires = datetime.now(IST) + timedelta(hours=3)
    with pool.connection() as conn:
        conn.execute("INSERT INTO runtime_state (key, value) VALUES ('dhan_token', %s)"
                     " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                     (Jsonb({"access_token": TOKEN, "expires_at": expires.isoformat(),
                             "source": "totp"}),))
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " payload) VALUES ('DC-1', 'DC', 'live', '2025-02-03', now(), %s)",
                     (Jsonb({"mtm": "-1250.50"}),))


def test_metrics_parse_as_prometheus_text_without_secrets(app, pool) -> None:
    _seed(pool)
    resp = app.test_client().get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain; version=0.0.4")
    text = resp.get_data(as_text=True)
    assert "SECRET" not in text and TOKEN not in text and "eyJ" not in text
    m = _parse(text)
    buckets = {lab["le"]: v for lab, v in m["nifty_engine_scan_cycle_seconds_bucket"]}
    assert buckets["0.05"] == 1 and buckets["0.5"] == 3 and buckets["10"] == 4
    assert buckets["+Inf"] == 4 and m["nifty_engine_scan_cycle_seconds_count"][0][1] == 4
    counts = list(buckets.values())
    assert counts == sorted(counts), "cumulative buckets"
    errors = {lab["code"]: v for lab, v in m["nifty_engine_broker_errors_total"]}
    assert errors == {"DH-904": 2, "transport": 1, "other": 1}
    assert m["nifty_engine_actor_restarts_total"] == [({"actor": "scanner"}, 1.0)]
    live = {lab["stage"]: v for lab, v in m["nifty_engine_open_positions"]}
    assert live == {"paper": 0, "shadow": 0, "live": 1}
    mtm = {lab["stage"]: v for lab, v in m["nifty_engine_mtm_rupees"]}
    assert mtm["live"] == -1250.5
    left = m["nifty_engine_token_expiry_seconds"][0][1]
    assert 3 * 3600 - 120 < left <= 3 * 3600
    REGISTRY.reset()


def test_metrics_need_the_bearer_token_when_one_is_set(app, pool) -> None:
    app.config["METRICS_TOKEN"] = "scrape-secret"
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert ok.status_code == 200 and "scrape-secret" not in ok.get_data(as_text=True)
    _parse(ok.get_data(as_text=True))


def test_metrics_loopback_only_without_a_token(app) -> None:
    far = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert far.status_code == 403 and b"METRICS_TOKEN" in far.data
