"""Secret redaction: the one place that decides what of a text is a secret.

Two layers, applied to every log line (console and file), to the dashboard's log tail, to
console trade lines and to broker error messages:

1. **Values.** Every secret the process holds is registered (``register_secret``): the
   configured ones (Dhan PIN, TOTP seed and token, chat tokens, dashboard keys; see
   ``engine.config.load``) and those learned at run time (the current Dhan access token).
   Each occurrence of a registered value is replaced, longest first, whatever surrounds it.
2. **Shapes.** Secrets the process does not know: JWTs, Telegram bot tokens
   (``123456:AA...``, also inside ``/bot<token>/`` URLs), ``Bearer`` credentials,
   ``key=value`` and ``"key": "value"`` pairs whose key names a secret (``pin``, ``token``,
   ``DASHBOARD_SECRET_KEY``, ``accessToken``, ``api_key``, ...), and a credential-looking
   word after such a key (``token abcd1234...``).

A key is a secret key when one of its segments (split at ``_``, ``-``, ``.`` and camelCase
humps) is a secret word, so ``pinned``, ``spinning``, ``tokens`` or ``client_id`` are not;
an unquoted ``key: value`` is redacted only when the value looks like a credential (has a
digit), so ``engine.actors.token: token actor idle`` stays readable.
"""

from __future__ import annotations

import itertools
import re
import threading

__all__ = ["MASK", "redact", "register_secret", "registered_count"]

MASK = "***"
MIN_SECRET_LEN = 4

_SECRET_WORDS = frozenset({
    "token", "pin", "secret", "password", "passwd", "pwd", "otp", "totp", "apikey",
    "zapikey", "authorization", "credential", "credentials", "seed", "jwt",
})
_PAIRED = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key")})

_lock = threading.Lock()
_values: tuple[str, ...] = ()  # longest first


def register_secret(value: str | None) -> None:
    """Redact this exact value wherever it appears from now on (values under 4 characters are
    ignored: they would mask ordinary text and protect nothing)."""
    global _values
    if not value:
        return
    value = value.strip()
    if len(value) < MIN_SECRET_LEN or set(value) <= {"*"}:
        return
    with _lock:
        if value not in _values:
            _values = tuple(sorted((*_values, value), key=len, reverse=True))


def registered_count() -> int:
    return len(_values)


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(key: str) -> bool:
    """True when ``key`` names a secret (see the module docstring)."""
    parts = [p.lower() for p in re.split(r"[_.\-]+", _CAMEL.sub("_", key)) if p]
    if any(p in _SECRET_WORDS for p in parts):
        return True
    return any(pair in _PAIRED for pair in itertools.pairwise(parts))


_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_TELEGRAM = re.compile(r"(?:(?<=/bot)|(?<![A-Za-z0-9]))\d{5,12}:[A-Za-z0-9_-]{30,}")
_BEARER = re.compile(r"(?i)\b(bearer|basic|zoho-oauthtoken)(\s+)([A-Za-z0-9._~+/=-]{8,})")
_KEY = r"[A-Za-z][A-Za-z0-9_.\-]*"
_VALUE = r"(?:\"[^\"]*\"|'[^']*'|[^\s,;&}\]\)\"']+)"
# key=value, "key": value, 'key': value  (value quoted or bare)
_ASSIGN = re.compile(rf"(?P<q>[\"']?)(?P<key>{_KEY})(?P=q)(?P<sep>\s*=\s*|(?<=[\"'])\s*:\s*)(?P<value>{_VALUE})")
# unquoted key: value   -- only a credential-looking value; never a dotted logger name
_COLON = re.compile(rf"(?<![\w\"'.])(?P<key>[A-Za-z][A-Za-z0-9_\-]*):(?P<sp>\s*)(?P<value>{_VALUE})")
# key <credential>      -- a long mixed word after a secret key
_SPACED = re.compile(rf"(?<![\w\"'])(?P<key>{_KEY})(?P<sp>\s+)(?P<value>[A-Za-z0-9._~+/=-]{{16,}})")


def _masked_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return f"{value[0]}{MASK}{value[0]}"
    return MASK


def _assign(m: re.Match[str]) -> str:
    if not is_secret_key(m.group("key")) or m.group("value").strip("\"'") == MASK:
        return m.group(0)
    return f"{m.group('q')}{m.group('key')}{m.group('q')}{m.group('sep')}{_masked_value(m.group('value'))}"


def _looks_like_credential(value: str) -> bool:
    return any(c.isdigit() for c in value) and value != MASK


def _colon(m: re.Match[str]) -> str:
    value = m.group("value")
    quoted = value[:1] in ("'", '"')
    if not is_secret_key(m.group("key")) or not (quoted or _looks_like_credential(value)):
        return m.group(0)
    if value.strip("\"'") == MASK:
        return m.group(0)
    return f"{m.group('key')}:{m.group('sp')}{_masked_value(value)}"


def _spaced(m: re.Match[str]) -> str:
    value = m.group("value")
    if not is_secret_key(m.group("key")) or not (
            any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return m.group(0)
    return f"{m.group('key')}{m.group('sp')}{MASK}"


def redact(text: str) -> str:
    """``text`` with every registered secret value and every secret-shaped part masked."""
    if not text:
        return text
    text = _JWT.sub(MASK, text)
    text = _TELEGRAM.sub(MASK, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _ASSIGN.sub(_assign, text)
    text = _COLON.sub(_colon, text)
    text = _SPACED.sub(_spaced, text)
    for value in _values:  # last: a shape masked first can never hide a value from this pass
        if value in text:
            text = text.replace(value, MASK)
    return text
