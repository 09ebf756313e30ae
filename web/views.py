"""Server-rendered pages. Each page is a template plus a small JS module under static/js."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for

from web.api import session_token
from web.security import safe_next

bp = Blueprint("views", __name__)

PAGES = (
    ("overview", "/", "Overview"),
    ("positions", "/positions", "Positions"),
    ("trades", "/trades", "Trades"),
    ("strategies", "/strategies", "Strategies"),
    ("market", "/market", "Market"),
    ("chain", "/chain", "Chain"),
    ("risk", "/risk", "Risk"),
    ("backtests", "/backtests", "Backtests"),
    ("events", "/events", "Events"),
    ("settings", "/settings", "Settings"),
    ("logs", "/logs", "Logs"),
)


def _page(name: str, title: str) -> Any:
    if session_token() is None:
        return redirect(url_for("views.login", next=request.path))
    return render_template(f"{name}.html", page=name, title=title, pages=PAGES)


def _register(name: str, path: str, title: str) -> None:
    bp.add_url_rule(path, name, lambda: _page(name, title))


for _name, _path, _title in PAGES:
    _register(_name, _path, _title)


@bp.get("/login")
def login() -> Any:
    nxt = safe_next(request.args.get("next"))
    if session_token() is not None:
        return redirect(nxt)
    return render_template("login.html", page="login", title="Log in", pages=(), next=nxt)
