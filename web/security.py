"""Browser-facing protections of the dashboard, in one place.

* :func:`safe_next` — the only way a ``next`` (where to go after login) is honoured: one of the
  dashboard's own page paths, else ``/``. Nothing with a scheme, a host, a backslash, a control
  character or a leading ``//`` survives, so no browser normalisation (which drops tab/CR/LF
  and reads ``\\`` as ``/``) can turn it into an off-site URL.
* :func:`origin_allowed` — the WebSocket handshake's ``Origin`` must be the dashboard's own
  (the request's scheme://host[:port]; X-Forwarded-Proto/Host count only with WEB_TRUST_PROXY,
  through ProxyFix) or one of WEB_ALLOWED_ORIGINS. A handshake without ``Origin`` is allowed:
  browsers always send it on WebSocket requests, so its absence means a non-browser client,
  which still needs a live session cookie.
* :class:`SecurityHeaders` — CSP, framing, MIME sniffing, referrer, and ``no-store`` on
  everything that is not a static file; WSGI middleware installed by ``create_app``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from flask import Request
from werkzeug.wsgi import get_host

from engine.config import parse_origin

_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")   # C0, space, DEL, C1
_HOST = re.compile(r"[A-Za-z0-9_.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")

#: Cookies are SameSite=Strict and every response is same-origin only. Scripts, styles and
#: images come from /static (images also as data: URIs); the live feed is the page's own
#: /ws (named explicitly for browsers whose 'self' does not cover ws:/wss:).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'{ws}; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


# ---------------------------------------------------------------- redirect after login
def page_paths() -> frozenset[str]:
    """The dashboard's own pages (the only places a login may send the browser)."""
    from web.views import PAGES

    return frozenset(path for _name, path, _label in PAGES) | {"/docs"}


def safe_next(raw: object) -> str:
    """``raw`` when it is exactly one of :func:`page_paths`, else ``"/"``."""
    if not isinstance(raw, str) or not raw or len(raw) > 200:
        return "/"
    if "\\" in raw or _CONTROL.search(raw) or not raw.startswith("/") or raw.startswith("//"):
        return "/"
    try:
        parts = urlsplit(raw)
    except ValueError:
        return "/"
    if parts.scheme or parts.netloc or parts.query or parts.fragment:
        return "/"
    return parts.path if parts.path in page_paths() else "/"


# ---------------------------------------------------------------- WebSocket Origin
def own_origin(req: Request) -> str | None:
    """The origin the browser used to reach this app: scheme://Host of the request (ProxyFix
    has already applied X-Forwarded-Proto/Host when WEB_TRUST_PROXY is set)."""
    host = req.host
    if not _HOST.fullmatch(host or ""):
        return None
    return parse_origin(f"{req.scheme}://{host}")


def origin_allowed(req: Request, allowed: Iterable[str]) -> bool:
    """Whether a WebSocket handshake may go on (see the module docstring)."""
    raw = req.headers.get("Origin")
    if raw is None:
        return True
    origin = parse_origin(raw.strip())
    if origin is None:  # "null" (sandboxed frame, file:), or garbage
        return False
    return origin == own_origin(req) or origin in set(allowed)


# ---------------------------------------------------------------- response headers
def _csp(scheme: str, host: str) -> str:
    host = host if _HOST.fullmatch(host) else ""
    ws = f" {'wss' if scheme == 'https' else 'ws'}://{host}" if host else ""
    return CSP.format(ws=ws)


class SecurityHeaders:
    """WSGI middleware that puts the security headers on every response: the CSP for the
    request's scheme and Host, the fixed :data:`HEADERS`, and ``Cache-Control: no-store`` on
    everything outside ``static_prefix`` (static files keep their own caching). A header of
    the same name the response set itself is replaced.

    It sits inside ProxyFix (so a trusted proxy's X-Forwarded-Proto/Host are seen) and adds
    precomputed ``(name, value)`` tuples to the WSGI header list: a Flask ``after_request``
    hook setting them one by one through werkzeug's ``Headers`` cost more than the rest of a
    small API answer's Python work."""

    def __init__(self, app: Callable[..., Iterable[bytes]], static_prefix: str) -> None:
        self.app = app
        self.static_prefix = static_prefix.rstrip("/") + "/"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        static = environ.get("PATH_INFO", "").startswith(self.static_prefix)
        extra = _headers_for(environ.get("wsgi.url_scheme", "http"), get_host(environ), static)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [*(h for h in headers if h[0].lower() not in _OWN_NAMES), *extra]
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


_OWN_NAMES = frozenset(name.lower() for name in (*HEADERS, "Content-Security-Policy",
                                                 "Cache-Control"))


@lru_cache(maxsize=128)  # per (scheme, Host, static): a handful in practice; bounded against junk
def _headers_for(scheme: str, host: str, static: bool) -> tuple[tuple[str, str], ...]:
    items = [("Content-Security-Policy", _csp(scheme, host)), *HEADERS.items()]
    if not static:
        items.append(("Cache-Control", "no-store"))
    return tuple(items)
