"""``python -m engine auth setup|logout-all|unlock``: dashboard login administration."""

from __future__ import annotations

import argparse
import hmac
import io
import sys
import time
from typing import Any

import pyotp

#: runtime_state key holding {"step": n}, the last TOTP time step accepted (dashboard login
#: and chat confirmations share it: a code works once, wherever it was used).
TOTP_STATE_KEY = "web_totp_last_step"


def accept_totp(conn: Any, secret: str, code: str, *, now: float | None = None) -> bool:
    """True when ``code`` is the operator's TOTP for the previous, current or next 30-second
    step AND that step is later than the last one accepted (runtime_state
    'web_totp_last_step'), which it then records. The conditional upsert is atomic: of two
    processes with the same or an older code, the second waits for the first's row lock,
    re-checks and refuses. The one TOTP check of the dashboard login and chat /confirm."""
    if not secret or not code:
        return False
    totp = pyotp.TOTP(secret)
    moment = time.time() if now is None else now
    steps = [int((moment + offset * totp.interval) // totp.interval) for offset in (-1, 0, 1)]
    matched = [step for step in steps if hmac.compare_digest(totp.at(step * totp.interval), code)]
    if not matched:
        return False
    step = max(matched)
    fresh = conn.execute(
        "INSERT INTO runtime_state AS s (key, value, updated_at)"
        " VALUES (%(key)s, jsonb_build_object('step', %(step)s::bigint), now())"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
        " WHERE (s.value->>'step')::bigint < %(step)s::bigint RETURNING key",
        {"key": TOTP_STATE_KEY, "step": step}).fetchone()
    return fresh is not None


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("auth", help="dashboard login: TOTP set-up, sessions, lock-out",
                       description="Administer dashboard authentication.")
    actions = p.add_subparsers(dest="auth_action", metavar="<action>", required=True)
    setup = actions.add_parser("setup", help="generate a TOTP secret and show its QR code")
    setup.add_argument("--issuer", default="NIFTY engine", help="name shown in the app")
    setup.add_argument("--account", default="dashboard", help="account label in the app")
    setup.add_argument("--no-qr", action="store_true", help="print only the secret and URI")
    setup.add_argument("--write-env", metavar="FILE", nargs="?", const=".env", default=None,
                       help="also store DASHBOARD_TOTP_SECRET in this env file (default .env, "
                       "created with mode 0600)")
    setup.set_defaults(handler=run_setup)
    logout = actions.add_parser("logout-all", help="end every dashboard session now")
    logout.set_defaults(handler=run_logout_all)
    unlock = actions.add_parser("unlock", help="clear failed-login lock-outs")
    unlock.set_defaults(handler=run_unlock)


def qr_text(uri: str) -> str:
    """The provisioning URI as a terminal QR code (ASCII)."""
    import qrcode

    qr = qrcode.QRCode(border=1)
    qr.add_data(uri)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def run_setup(args: argparse.Namespace) -> int:
    secret = pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=args.account, issuer_name=args.issuer)
    out = sys.stdout
    out.write("New dashboard TOTP secret (shown once; it is not stored anywhere by this "
              "command):\n\n")
    if not args.no_qr:
        out.write(qr_text(uri) + "\n")
    out.write(f"Provisioning URI: {uri}\n\n")
    out.write("1. Scan the QR code (or enter the secret) in an authenticator app "
              "(Aegis, Google Authenticator, 1Password, ...).\n")
    if args.write_env:
        from engine.dotenv import set_in_file

        set_in_file(args.write_env, "DASHBOARD_TOTP_SECRET", secret)
        out.write(f"2. DASHBOARD_TOTP_SECRET was written to {args.write_env} (mode 0600); "
                  "restart the web process (make run).\n\n")
    else:
        out.write("2. Put this line in your .env and restart the web process:\n\n")
        out.write(f"   DASHBOARD_TOTP_SECRET={secret}\n\n")
    out.write("3. Log in at the dashboard with the 6-digit code the app shows.\n")
    out.write("Anyone holding this secret can log in: keep .env private (chmod 600).\n")
    return 0


def _execute(sql: str, *, event: str | None = None) -> int:
    """Run ``sql``; with ``event``, announce it on engine_events in the same transaction."""
    import psycopg

    from engine.bus.events import publish_event
    from engine.store.server import database_url

    with psycopg.connect(database_url()) as conn:  # one transaction, committed on exit
        count = conn.execute(sql).rowcount
        if event is not None:
            publish_event(conn, event, {})
        return count


def run_logout_all(_args: argparse.Namespace) -> int:
    from engine.bus.events import SESSIONS_ENDED

    # the web workers drop the sessions they trusted without asking (WEB_SESSION_CACHE_S)
    ended = _execute("DELETE FROM web_sessions", event=SESSIONS_ENDED)
    print(f"ended {ended} session(s)")
    return 0


def run_unlock(_args: argparse.Namespace) -> int:
    print(f"cleared {_execute('DELETE FROM web_auth_throttle')} lock-out counter(s)")
    return 0
