"""Process-level helpers: the escalation exit and signal handlers.

Re-exported by `engine.actors.supervisor`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import pykka
import pykka.debug

__all__ = ["EXIT_CODE", "default_exit_process", "install_signal_handlers"]

logger = logging.getLogger(__name__)

EXIT_CODE = 70  # EX_SOFTWARE: the container / systemd restarts the process


def default_exit_process(code: int) -> None:
    """Log thread tracebacks, stop every actor and ``os._exit(code)`` from a new thread.

    It runs off the calling (actor) thread, because stopping all actors from inside one
    of them would wait on itself. A hard deadline exits even if an actor will not stop.
    """

    def _run() -> None:
        try:
            pykka.debug.log_thread_tracebacks()
            pykka.ActorRegistry.stop_all(block=True, timeout=10)
        except Exception:
            logger.exception("error while stopping actors before exit")
        finally:
            os._exit(code)

    deadline = threading.Timer(30.0, os._exit, args=(code,))
    deadline.daemon = True
    deadline.start()
    threading.Thread(target=_run, name="engine-exit", daemon=True).start()


def install_signal_handlers(stop_callback: Callable[[], None]) -> dict[int, Any]:
    """Wire SIGTERM to ``stop_callback`` and SIGUSR1 to thread-traceback logging.

    Must be called from the main thread. Returns the previous handlers so a caller
    (or a test) can restore them with ``signal.signal``.
    """
    fired = threading.Event()

    def _on_term(signum: int, frame: Any) -> None:
        if fired.is_set():
            logger.warning("second SIGTERM ignored: shutdown already in progress")
            return
        fired.set()
        logger.warning("SIGTERM received: stopping the engine")
        stop_callback()

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _on_term),
        signal.SIGUSR1: signal.signal(signal.SIGUSR1, pykka.debug.log_thread_tracebacks),
    }
    return previous
