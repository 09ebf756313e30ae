"""Headless Chromium on the Market and Chain pages over a seeded database: IV samples the
engine's own recording code produced from the simulated market (compute_surface ->
with_chain -> record_iv_snapshot, as the scanner does) over the end of 03 Feb and the morning
of 04 Feb 2025, the futures spread samples of the same instants, an open double calendar, and
a simulated engine clock at 04 Feb 2025 10:15:30 IST. The chain renders with the ATM row
highlighted, PCR and max pain shown and the position's strikes marked; the smile, term
structure, ATM IV history, realized-vs-implied and z-score charts draw; no console errors.
Screenshots go to the test's tmp dir and /tmp/shots/{market,chain}.png."""

from __future__ import annotations

import re
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

import pyotp
from psycopg.types.json import Jsonb

from engine.market.chain_record import with_chain
from engine.market.simulator import SimulatedMarket
from engine.market.snapshot_store import record_iv_snapshot
from engine.market.surface import compute_surface
from engine.store.tx import transaction
from engine.timeutil import IST, now_ist
from tests.web.test_browser import browser, expect, pytestmark, watched  # noqa: F401

SHOTS = Path("/tmp/shots")
ENGINE_TIME = datetime(2025, 2, 4, 10, 15, 30, tzinfo=IST)
SAMPLES = ([datetime(2025, 2, 3, 15, 20, tzinfo=IST) + timedelta(minutes=i) for i in range(10)]
           + [datetime(2025, 2, 4, 9, 45, tzinfo=IST) + timedelta(minutes=i) for i in range(31)])


def seed_market(pool) -> dict:
    """Record the samples as the scanner would; return the newest snapshot's key facts."""
    market = SimulatedMarket(7, SAMPLES[0])
    snap = None
    for at in SAMPLES:
        snap = market.snapshot_at(at)
        surface = with_chain(compute_surface(snap), snap)
        with transaction(pool) as conn:
            record_iv_snapshot(conn, surface)
            near, far = snap.near_future, snap.far_future
            conn.execute("INSERT INTO calendar_spread_history (sampled_at, near_expiry, far_expiry,"
                         " near_price, far_price, spread) VALUES (%s, %s, %s, %s, %s, %s)",
                         (at, near.expiry, far.expiry, round(near.ltp, 2), round(far.ltp, 2),
                          round(far.ltp - near.ltp, 2)))
    assert snap is not None
    near_exp, far_exp = snap.chains[0].expiry, snap.chains[1].expiry
    atm = snap.atm_strike(near_exp)
    legs = [{"security_id": str(9000 + i), "side": side, "quantity": 75, "kind": "OPT",
             "option_type": right, "expiry": exp.isoformat(), "strike": str(int(atm + off)),
             "entry_price": "100.00", "entry_charges": "10.00"}
            for i, (side, right, exp, off) in enumerate((
                ("SELL", "CE", near_exp, 200), ("SELL", "PE", near_exp, -200),
                ("BUY", "CE", far_exp, 200), ("BUY", "PE", far_exp, -200)))]
    with pool.connection() as conn:
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " entry_price, quantity, payload) VALUES ('DC-0204-1', 'DC', 'paper', %s,"
                     " %s, 0, 75, %s)", (ENGINE_TIME.date(), ENGINE_TIME - timedelta(minutes=20),
                                         Jsonb({"legs": legs, "direction": "SHORT_NEAR"})))
        conn.execute("INSERT INTO runtime_state (key, value, updated_at) VALUES"
                     " ('engine_heartbeat', %s, now()) ON CONFLICT (key) DO UPDATE SET"
                     " value = EXCLUDED.value, updated_at = now()",
                     (Jsonb({"ts": now_ist().isoformat(timespec="seconds"), "pid": 1,
                             "engine_time": ENGINE_TIME.isoformat(timespec="seconds"),
                             "clock": "simulated"}),))
    return {"atm": atm, "near": near_exp, "spot": snap.spot}


def _shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / f"{name}.png")


def test_browser_chain_and_market_pages(watched, expect, live_server, pool, totp_secret,  # noqa: F811
                                        tmp_path):
    t0 = time.perf_counter()
    facts = seed_market(pool)
    seeded = time.perf_counter() - t0
    page = watched.page
    page.set_viewport_size({"width": 1440, "height": 900})
    # log in as a user would (TOTP), landing on the chain
    page.goto(live_server.url + "/chain")
    page.wait_for_url("**/login?next=/chain")
    page.fill("#code", pyotp.TOTP(totp_secret).now())
    page.wait_for_url(live_server.url + "/chain")

    # --- Chain: ATM row highlighted, PCR and max pain, the position's strikes marked
    atm_row = page.locator("#chain tr.atm")
    expect(atm_row).to_have_count(1)
    assert float(atm_row.get_attribute("data-strike")) == facts["atm"]
    expect(atm_row.locator("td.strike")).to_contain_text("ATM")
    expect(page.locator("#pcr")).to_have_text(re.compile(r"^\d+\.\d\d$"))
    expect(page.locator("#max-pain")).to_have_text(re.compile(r"^\d{2},\d{3}$"))  # 26,300
    expect(page.locator("#chain tr[data-strike] td.strike .mark.pain")).to_have_count(1)
    ce_leg = page.locator(f"#chain tr[data-strike='{int(facts['atm']) + 200}'] td.ce-ltp .mark.pos-leg")
    expect(ce_leg).to_have_text("S 75")
    assert "NIFTY" in ce_leg.get_attribute("title") and "CE" in ce_leg.get_attribute("title")
    expect(page.locator(f"#chain tr[data-strike='{int(facts['atm']) - 200}'] td.pe-ltp .mark.pos-leg")
           ).to_have_text("S 75")
    ltp = page.locator("#chain tr.atm td.ce-ltp").text_content()
    assert ltp.startswith("₹"), ltp
    assert "04 Feb 2025" in page.text_content("#chain-at")
    assert "03 Feb 2025" in page.text_content("#chain-note")  # OI change against 03 Feb
    assert page.locator("#expiries button").count() >= 3
    _shot(page, tmp_path, "chain")
    # another expiry: the far legs are marked there (BUY)
    page.locator("#expiries button").nth(1).click()
    expect(page.locator("#chain td.ce-ltp .mark.pos-leg")).to_have_text("B 75")

    # --- Market: every chart drawn from the stored payloads
    page.goto(live_server.url + "/market")
    for chart in ("#smile", "#term", "#history", "#realized", "#spread", "#zscore"):
        expect(page.locator(f"{chart}[data-drawn]")).to_have_count(1)
    assert page.get_attribute("#smile", "data-drawn") == "4"  # near CE/PE, far CE/PE
    assert page.locator("#smile canvas").count() >= 1
    expect(page.locator("#from")).to_have_value("2025-01-28")  # 7 days before the ENGINE's today
    expect(page.locator("#to")).to_have_value("2025-02-04")
    assert "04 Feb 2025" in page.text_content("#snap-at")
    assert "%" in page.text_content("#snap")
    expect(page.locator("#z-now")).to_have_text(re.compile(r"^-?\d+\.\d\d$"))
    _shot(page, tmp_path, "market")
    assert watched.violations() == []
    assert watched.console == [], watched.console
    assert seeded < 8, f"seeding took {seeded:.1f} s"
