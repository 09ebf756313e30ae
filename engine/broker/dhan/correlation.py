"""Deterministic Dhan ``correlationId`` values from a trade tag and leg.

Dhan documents ≤30 chars of ``[a-zA-Z0-9 _-]``; the sandbox was measured to refuse 26 chars
(reference §2), so ids here are at most 25 characters of ``[A-Za-z0-9_-]`` (no spaces, to
keep them URL-path safe for ``GET /orders/external/{id}``). The same inputs always give the
same id, so a restart between a submission and its answer can still find the order.
"""

from __future__ import annotations

import hashlib
import re

MAX_LEN = 25
_ALLOWED = re.compile(r"^[A-Za-z0-9_-]{1,25}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def is_valid_correlation_id(value: str) -> bool:
    """True when ``value`` is 1-25 characters of ``[A-Za-z0-9_-]``."""
    return bool(_ALLOWED.match(value))


def make_correlation_id(tag: str, leg: str | int, attempt: int = 0) -> str:
    """Build the correlationId of one order leg.

    ``attempt`` distinguishes a deliberate *new* order for the same leg (e.g. a re-entry after
    a rejection); a retry of the same submission must reuse the id of the same attempt.

    Args:
        tag: trade tag (any text; unsafe characters are replaced).
        leg: leg name or index within the trade.
        attempt: 0 for the first order of the leg.

    Returns:
        ``<tag>-<leg>[-<attempt>]`` when that fits, otherwise a readable prefix of the tag
        plus a 10-hex-digit blake2s digest of all three inputs.

    Raises:
        ValueError: empty tag or leg, or negative attempt.
    """
    if not str(tag).strip():
        raise ValueError("correlation id needs a non-empty trade tag")
    if str(leg) == "":
        raise ValueError("correlation id needs a non-empty leg")
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    plain = f"{tag}-{leg}" + (f"-{attempt}" if attempt else "")
    if is_valid_correlation_id(plain):
        return plain
    digest = hashlib.blake2s(f"{tag}\x1f{leg}\x1f{attempt}".encode(), digest_size=5).hexdigest()
    prefix = _UNSAFE.sub("_", str(tag)).strip("_")[: MAX_LEN - len(digest) - 1]
    return f"{prefix}-{digest}" if prefix else digest


def correlation_prefixes(tag: str) -> tuple[str, ...]:
    """Prefixes every correlation id derived from ``tag`` starts with: the plain
    ``<tag>-...`` form and the readable prefix of the digest form (a superset: ids of other
    tags sharing that prefix are included, which only ever makes more ids count as used)."""
    digest_prefix = _UNSAFE.sub("_", str(tag)).strip("_")[: MAX_LEN - 10 - 1]
    return tuple(dict.fromkeys(p for p in (str(tag), digest_prefix) if p))


def slice_correlation_id(correlation_id: str, index: int) -> str:
    """correlationId of slice ``index`` (0-based) of an order sliced at the freeze quantity.

    Deterministic in (``correlation_id``, ``index``): ``<correlation_id>-s<index>`` when that
    fits in 25 characters, else a readable prefix plus a digest (see
    :func:`make_correlation_id`), so a restart can still find every slice by its id.

    Raises:
        ValueError: negative index or an empty correlation id.
    """
    if index < 0:
        raise ValueError(f"slice index must be >= 0, got {index}")
    return make_correlation_id(correlation_id, f"s{index}")
