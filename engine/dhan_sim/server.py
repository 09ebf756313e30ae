"""HTTP front of the Dhan simulator (``ThreadingHTTPServer``) and its command line.

``python -m engine.dhan_sim --port 8765`` serves REST under ``/v2``, token minting under
``/app/generateAccessToken``, the instrument master under ``/api-data/*.csv`` and the admin
API under ``/__admin/`` (faults, tokens, spot, state); the order-update WebSocket
(:mod:`engine.dhan_sim.order_ws`) listens on a port of its own (``order_ws_url``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from engine.broker.dhan.errors import redact
from engine.dhan_sim import handlers as h
from engine.dhan_sim.engine_time import ENGINE_TIME_HEADER, EngineTimeMarket
from engine.dhan_sim.market import BuiltinMarket, MarketSource
from engine.dhan_sim.order_ws import OrderUpdateServer
from engine.dhan_sim.simulator import DhanSimulator
from engine.market.calendar import NseCalendar
from engine.timeutil import IST

logger = logging.getLogger(__name__)

PRE_FAULTS = ("latency", "status", "rate_limit")
POST_FAULTS = ("timeout", "drop", "drop_502")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimServer
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sim %s", redact(format % args))

    def _read(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return h.BAD_JSON

    def setup(self) -> None:
        super().setup()
        # small request/response pairs on a kept-alive connection must not wait for the
        # peer's delayed ACK (Nagle): ~40 ms per request otherwise
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, reply: h.Reply) -> None:
        """Status line, headers and body in one write."""
        if reply.raw is not None:
            data = reply.raw
        elif reply.body is not None:
            data = json.dumps(reply.body).encode()
        else:
            data = b""
        self.send_response(reply.status)
        if data:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def _handle(self) -> None:
        received = time.monotonic()
        parts = urlsplit(self.path)
        sim = self.server.sim
        req = h.Request(method=self.command, path=parts.path.rstrip("/") or "/",
                        query=dict(parse_qsl(parts.query)),
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=self._read(), client_ip=self.client_address[0])
        if parts.path == "/v2/trades/":
            req.path = "/v2/trades"
        if self.server.engine_time is not None:  # rehearsal: quote the engine's market now
            self.server.engine_time.follow(req.headers.get(ENGINE_TIME_HEADER))
        admin = req.path.startswith("/__admin/")
        pre = None if admin else sim.faults.take(req.method, req.path, PRE_FAULTS)
        if pre is not None and pre.kind == "latency":
            sim.stop_event.wait(float(pre.params.get("seconds", 0.5)))
            pre = None
        if pre is not None:
            reply = self._fault_reply(pre)
            sim.record(req, received, reply.status, fault=pre.kind)
            self._send(reply)
            return
        post = None if admin else sim.faults.take(req.method, req.path, POST_FAULTS)
        if post is not None and post.kind == "timeout" and post.params.get("before"):
            sim.stop_event.wait(float(post.params.get("seconds", 5)))
        reply = sim.handle(req, received)
        if post is not None:
            if post.kind == "timeout" and not post.params.get("before"):
                sim.stop_event.wait(float(post.params.get("seconds", 5)))
            elif post.kind == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            elif post.kind == "drop_502":
                self.close_connection = True
                reply = h.Reply(502)
        self._send(reply)

    @staticmethod
    def _fault_reply(fault: Any) -> h.Reply:
        if fault.kind == "rate_limit":
            return h.dh_error(429, "DH-904", "Rate_Limit", "Too many requests on server from "
                              "single user breaching rate limits. Try throttling API calls.")
        return h.Reply(int(fault.params.get("status", 500)), fault.params.get("body"))

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class SimServer(ThreadingHTTPServer):
    """The simulator's HTTP server; ``sim`` is the :class:`DhanSimulator` it serves."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # listen backlog: bursts of concurrent clients are not reset

    def __init__(self, address: tuple[str, int], sim: DhanSimulator,
                 engine_time: EngineTimeMarket | None = None, order_ws_port: int = 0) -> None:
        super().__init__(address, _Handler)
        self.sim = sim
        self.engine_time = engine_time
        self._thread: threading.Thread | None = None
        self.order_ws = OrderUpdateServer(sim, address[0], order_ws_port)

    @property
    def order_ws_url(self) -> str:
        """Order-update WebSocket (``DHAN_ORDER_FEED_URL``)."""
        return self.order_ws.url

    @property
    def url(self) -> str:
        """``http://host:port`` (also the auth base)."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_base(self) -> str:
        """REST base (``DHAN_API_BASE``)."""
        return f"{self.url}/v2"

    @property
    def instruments_url(self) -> str:
        """Detailed instrument master CSV (``DHAN_INSTRUMENTS_URL``)."""
        return f"{self.url}/api-data/api-scrip-master-detailed.csv"

    def start(self) -> SimServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="dhan-sim",
                                        daemon=True)
        self._thread.start()
        self.order_ws.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping fault handlers, close the socket."""
        self.sim.stop_event.set()
        self.order_ws.stop()
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def build_server(host: str = "127.0.0.1", port: int = 0, market: MarketSource | None = None,
                 engine_time: EngineTimeMarket | None = None, order_ws_port: int = 0,
                 **options: Any) -> SimServer:
    """Create (not start) a simulator server; ``options`` go to :class:`DhanSimulator`.

    With ``engine_time`` the simulator serves the engine's simulated market at the engine's
    clock (``X-Engine-Time`` on each request) and ``market`` is ignored. The order-update
    WebSocket listens on ``order_ws_port`` (0: any free port).
    """
    source = engine_time.source if engine_time is not None else (market or BuiltinMarket())
    return SimServer((host, port), DhanSimulator(source, **options), engine_time,
                     order_ws_port=order_ws_port)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m engine.dhan_sim [--host H] [--port P] [--env-file F]``."""
    parser = argparse.ArgumentParser(prog="dhan-sim", description="Local Dhan v2 simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--client-id", default="1000000001")
    parser.add_argument("--pin", default="123456")
    parser.add_argument("--totp-secret", default=None, help="base32 (random when omitted)")
    parser.add_argument("--spot", type=float, default=24000.0,
                        help="initial NIFTY spot of the builtin market")
    parser.add_argument("--market", choices=("engine", "builtin"), default="engine",
                        help="engine: the engine's simulated market (SIM_SEED) at the engine's "
                        "clock, for rehearsals (default); builtin: a static market at --spot")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the engine market (default SIM_SEED or 7)")
    parser.add_argument("--env-file", default=None,
                        help="write DHAN_* variables (simulator credentials) to this file")
    parser.add_argument("--order-ws-port", type=int, default=0,
                        help="port of the order-update WebSocket (default: any free port; "
                        "the log and the env file name it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    engine_time = None
    if args.market == "engine":
        seed = args.seed if args.seed is not None else int(os.environ.get("SIM_SEED", "7"))
        cal = NseCalendar()
        today = datetime.now(IST).date()
        day = today if cal.is_trading_day(today) else cal.next_trading_day(today)
        engine_time = EngineTimeMarket(seed, cal.session_open(day))
    server = build_server(args.host, args.port, BuiltinMarket(spot=args.spot),
                          engine_time=engine_time, order_ws_port=args.order_ws_port,
                          client_id=args.client_id, pin=args.pin,
                          totp_secret=args.totp_secret)
    if args.env_file:
        acct = server.sim.account
        rehearsal = (f"DHAN_SEND_ENGINE_TIME=true\nSIM_SEED={engine_time.seed}\n"
                     if engine_time is not None else "")
        Path(args.env_file).write_text(
            f"DHAN_CLIENT_ID={acct.client_id}\nDHAN_PIN={acct.pin}\n"
            f"DHAN_TOTP_SECRET={acct.totp_secret}\nDHAN_API_BASE={server.api_base}\n"
            f"DHAN_AUTH_BASE={server.url}\nDHAN_INSTRUMENTS_URL={server.instruments_url}\n"
            f"DHAN_ORDER_FEED_URL={server.order_ws_url}\n" + rehearsal)
        Path(args.env_file).chmod(0o600)
    logger.info("Dhan simulator on %s, order updates on %s (client id %s)%s", server.url,
                server.order_ws_url, args.client_id,
                f"; env written to {args.env_file}" if args.env_file else "")
    server.order_ws.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.sim.stop_event.set()
        server.order_ws.stop()
        server.server_close()
    return 0
