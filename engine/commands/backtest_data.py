"""``python -m engine backtest download|import``: the NSE F&O bhavcopies the replay reads.

    python -m engine backtest download --date 2026-06-03 --inspect-header
    python -m engine backtest download --start 2026-01-01 --end today
    python -m engine backtest download --status
    python -m engine backtest import ../shared/data

Exit codes: 0 done; 1 some sessions failed (retries exhausted, malformed file) or the
archive refused (403); 2 bad input (dates, paths, a refused import file, no database).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from datetime import date, datetime

from engine.timeutil import IST

__all__ = ["add_data_cli"]


def _day(text: str) -> date:
    if text.strip().lower() == "today":
        return datetime.now(IST).date()
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected YYYY-MM-DD or 'today'") from None


def add_data_cli(s: argparse._SubParsersAction) -> None:
    """Add ``download`` and ``import`` to the ``backtest`` sub-commands."""
    d = s.add_parser(
        "download", help="download NSE F&O bhavcopies into bhavcopy_ohlc (or --status)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Download the NSE F&O bhavcopy of each session (UDiFF from 2024-01-01, the "
        "legacy fo*bhav file before) from NSE_ARCHIVE_BASE (default "
        "https://nsearchives.nseindia.com) and load its NIFTY/BANKNIFTY index options and "
        "futures into bhavcopy_ohlc. Only calendar sessions are asked for (Budget weekend "
        "sessions included, Muhurat days only with --include-muhurat); days already present "
        "are skipped, so an interrupted run resumes; a 404 on a session is recorded as not "
        "published and asked again after a day.", 88),
        epilog="examples:\n"
        "  python -m engine backtest download --date 2026-06-03 --inspect-header\n"
        "  python -m engine backtest download --start 2026-01-01 --end today\n"
        "  python -m engine backtest download --status")
    d.add_argument("--date", type=_day, metavar="YYYY-MM-DD", help="one session")
    d.add_argument("--start", type=_day, metavar="YYYY-MM-DD", help="first session of a range")
    d.add_argument("--end", type=_day, metavar="YYYY-MM-DD|today",
                   help="last session of a range (default today)")
    d.add_argument("--inspect-header", action="store_true",
                   help="with --date: fetch the file and print its header, format and row "
                   "counts per instrument type and underlying; writes nothing")
    d.add_argument("--status", action="store_true",
                   help="per month: sessions present / missing / not published, rows per day, "
                   "first and last date (narrow with --start/--end)")
    d.add_argument("--include-muhurat", action="store_true",
                   help="also fetch Muhurat (Diwali evening) sessions, holidays otherwise")
    d.add_argument("--pause", type=float, default=1.0, metavar="SEC",
                   help="seconds between two requests (default 1.0)")
    d.add_argument("--retries", type=int, default=3, metavar="N",
                   help="retries on a 5xx answer or a timeout, with back-off (default 3)")
    d.add_argument("--backoff", type=float, default=2.0, metavar="SEC",
                   help="first back-off, doubled each retry (default 2.0)")
    d.add_argument("--timeout", type=float, default=30.0, metavar="SEC",
                   help="per-request timeout (default 30)")
    d.add_argument("--base", default=None, metavar="URL",
                   help="archive base URL (default NSE_ARCHIVE_BASE)")
    d.set_defaults(handler=_download)

    i = s.add_parser(
        "import", help="load local bhavcopy files or folders into bhavcopy_ohlc",
        description="Load NSE F&O bhavcopies from disk (zip or csv; UDiFF either header "
        "variant, or legacy fo*bhav). A folder is searched recursively for files named like "
        "a bhavcopy. One transaction per file: a malformed file is refused with its file, "
        "line and column and nothing of it is written; re-importing a file changes nothing.",
        epilog="example: python -m engine backtest import ../shared/data")
    i.add_argument("paths", nargs="+", metavar="PATH", help="bhavcopy files or folders")
    i.set_defaults(handler=_import)


def _pool():
    from engine.store.pool import get_pool

    try:
        pool = get_pool()
        with pool.connection(timeout=5) as conn:
            ok = conn.execute("SELECT to_regclass('bhavcopy_downloads') IS NOT NULL AS ok"
                              ).fetchone()["ok"]
    except Exception as exc:
        print(f"refused: the database is not reachable ({exc})", file=sys.stderr)
        return None
    if not ok:
        print("refused: the schema is not up to date (no bhavcopy_downloads): run "
              "`python -m engine migrate`", file=sys.stderr)
        return None
    return pool


def _client(args: argparse.Namespace):
    from engine.backtest.nse_archive import ArchiveClient
    from engine.config import ConfigError, load

    if args.base:
        base = args.base
    else:
        try:
            base = load().nse_archive_base
        except ConfigError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return None
    if args.pause < 0 or args.retries < 0 or args.backoff < 0 or args.timeout <= 0:
        print("refused: --pause, --retries and --backoff must be >= 0 and --timeout > 0",
              file=sys.stderr)
        return None
    return ArchiveClient(base, pause=args.pause, retries=args.retries, backoff=args.backoff,
                         timeout=args.timeout)


def _download(args: argparse.Namespace) -> int:
    modes = [m for m, on in (("--inspect-header", args.inspect_header), ("--status", args.status))
             if on]
    if len(modes) > 1:
        print("refused: give one of --inspect-header, --status", file=sys.stderr)
        return 2
    if args.date and (args.start or args.end):
        print("refused: give --date or --start/--end, not both", file=sys.stderr)
        return 2
    if args.inspect_header:
        if not args.date:
            print("refused: --inspect-header needs --date YYYY-MM-DD", file=sys.stderr)
            return 2
        return _inspect(args)
    if args.status:
        return _status(args)
    if not (args.date or args.start):
        print("refused: give --date, --start [--end], --status or --inspect-header "
              "(see --help)", file=sys.stderr)
        return 2
    start = args.date or args.start
    end = args.date or args.end or datetime.now(IST).date()
    today = datetime.now(IST).date()
    if start > today:
        print(f"refused: {start} is in the future", file=sys.stderr)
        return 2
    if start > end:
        print(f"refused: --start {start} is after --end {end}", file=sys.stderr)
        return 2
    end = min(end, today)
    client = _client(args)
    if client is None:
        return 2
    pool = _pool()
    if pool is None:
        return 2
    from engine.backtest.nse_archive import ArchiveForbidden, download_range

    try:
        summary = download_range(pool, start, end, client, include_muhurat=args.include_muhurat)
    except ArchiveForbidden as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print("\n".join(summary.lines()))
    return 1 if summary.errors else 0


def _inspect(args: argparse.Namespace) -> int:
    from engine.backtest.bhavcopy import BhavcopyError
    from engine.backtest.nse_archive import inspect_day

    client = _client(args)
    if client is None:
        return 2
    try:
        url, s = inspect_day(client, args.date)
    except LookupError as exc:
        print(f"not fetched: {exc}", file=sys.stderr)
        return 1
    except BhavcopyError as exc:
        print(f"malformed: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"url:     {url}")
    print(f"format:  {s.format}  ({len(s.header)} columns, trade date "
          f"{', '.join(map(str, s.trade_dates))})")
    print(f"header:  {','.join(s.header)}")
    print(f"rows:    {s.total_rows:,} (NIFTY/BANKNIFTY index options and futures kept on "
          f"import: {s.kept_rows:,})")
    print("by instrument type: " + ", ".join(f"{k} {v:,}" for k, v in s.by_type.items()))
    print("by type and underlying:")
    for (tp, sym), n in s.by_underlying.items():
        if tp in ("IDO", "IDF", "OPTIDX", "FUTIDX"):
            print(f"  {tp:<7} {sym:<12} {n:>7,}")
    others = sum(n for (tp, _), n in s.by_underlying.items()
                 if tp not in ("IDO", "IDF", "OPTIDX", "FUTIDX"))
    names = {sym for (tp, sym) in s.by_underlying if tp not in ("IDO", "IDF", "OPTIDX", "FUTIDX")}
    if others:
        print(f"  stock contracts: {others:,} rows over {len(names)} underlyings")
    print("nothing written")
    return 0


def _status(args: argparse.Namespace) -> int:
    from engine.backtest.nse_archive import download_status, status_lines

    if args.start and args.end and args.start > args.end:
        print(f"refused: --start {args.start} is after --end {args.end}", file=sys.stderr)
        return 2
    pool = _pool()
    if pool is None:
        return 2
    months = download_status(pool, start=args.start, end=args.end,
                             today=datetime.now(IST).date())
    print("\n".join(status_lines(months)))
    return 0


def _import(args: argparse.Namespace) -> int:
    from engine.backtest.ingest import bhavcopy_files, import_paths

    try:
        files = bhavcopy_files(args.paths)
    except FileNotFoundError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    if not files:
        print(f"refused: no bhavcopy files in {', '.join(args.paths)} (expected names like "
              "BhavCopy_NSE_FO_0_0_0_YYYYMMDD_F_0000.csv.zip or foDDMONYYYYbhav.csv)",
              file=sys.stderr)
        return 2
    pool = _pool()
    if pool is None:
        return 2
    summary = import_paths(pool, files)
    print("\n".join(summary.lines()))
    return 2 if summary.errors else 0
