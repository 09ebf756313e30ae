"""``python -m engine settings list|get|set|reset|history``."""

from __future__ import annotations

import argparse
import getpass
import sys

from engine.settings import SettingError, Settings, knob
from engine.store.pool import get_pool


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("settings", help="list, read and change runtime settings",
                       description="Runtime settings (bot_settings). Changes are audited in "
                       "settings_audit and reach every running process at once.")
    s = p.add_subparsers(dest="action", metavar="<action>", required=True)
    s.add_parser("list", help="every knob: value, default, allowed values").set_defaults(handler=_list)
    g = s.add_parser("get", help="the effective value of one knob")
    g.add_argument("key")
    g.set_defaults(handler=_get)
    st = s.add_parser("set", help="override a knob (validated, audited)")
    st.add_argument("key")
    st.add_argument("value")
    st.add_argument("--by", default=None, help="who is changing it (default: $USER@cli)")
    st.set_defaults(handler=_set)
    r = s.add_parser("reset", help="remove the override; the code default applies")
    r.add_argument("key")
    r.add_argument("--by", default=None, help="who is changing it (default: $USER@cli)")
    r.set_defaults(handler=_reset)
    h = s.add_parser("history", help="the audit trail of changes")
    h.add_argument("key", nargs="?")
    h.add_argument("--limit", type=int, default=50)
    h.set_defaults(handler=_history)


def _who(args: argparse.Namespace) -> str:
    """``--by`` as given (an empty or blank one is refused, like any other bad input), or
    ``$USER@cli`` when it is left out."""
    if args.by is None:
        return f"{getpass.getuser()}@cli"
    if not args.by.strip():
        raise ValueError("--by must name who is changing the setting (or leave it out)")
    return args.by.strip()


def _settings() -> Settings:
    return Settings(get_pool())


def _list(_args: argparse.Namespace) -> int:
    views = _settings().list()
    print(f"{'key':<28} {'value':<10} {'default':<10} {'by':<16} allowed")
    for v in views:
        mark = "*" if v.overridden else " "
        print(f"{v.key:<28} {str(v.value) + mark:<10} {v.default!s:<10} {(v.updated_by or '-'):<16} "
              f"{v.allowed}")
    print("\n* = overridden in bot_settings")
    return 0


def _guard(fn):
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (SettingError, ValueError) as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 2
    return wrapper


@_guard
def _get(args: argparse.Namespace) -> int:
    k = knob(args.key)
    print(k.render(_settings().get(args.key)))
    return 0


@_guard
def _set(args: argparse.Namespace) -> int:
    change = _settings().set(args.key, args.value, updated_by=_who(args))
    print(f"{change.key}: {change.old_value or '(default)'} -> {change.new_value}")
    return 0


@_guard
def _reset(args: argparse.Namespace) -> int:
    change = _settings().reset(args.key, updated_by=_who(args))
    print(f"{change.key}: {change.old_value or '(default)'} -> (default)")
    return 0


@_guard
def _history(args: argparse.Namespace) -> int:
    for row in _settings().history(args.key, args.limit):
        print(f"{row['updated_at']:%Y-%m-%d %H:%M:%S} {row['key']:<28} "
              f"{row['old_value'] or '(default)'} -> {row['new_value'] or '(default)'} "
              f"by {row['updated_by']}")
    return 0
