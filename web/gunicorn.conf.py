"""gunicorn settings for the dashboard: ``gunicorn -c web/gunicorn.conf.py "web:create_app()"``.

gthread workers: every open WebSocket holds one thread, so WEB_THREADS must cover the peak
number of dashboard tabs plus HTTP headroom. No preload: each worker builds its own app
(pool, Hub, WebActor LISTEN thread) after the fork, because threads do not survive fork.
"""

import os

bind = f"{os.environ.get('WEB_HOST', '127.0.0.1')}:{os.environ.get('WEB_PORT', '8080')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "32"))
preload_app = False
wsgi_app = "web:create_app()"
timeout = 60            # with gthread this is only a worker heartbeat
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
proc_name = "nifty-web"


def worker_exit(server, worker):
    """Stop the WebActor and close the pool of the exiting worker."""
    try:
        from web import shutdown_all

        shutdown_all()
    except Exception:  # noqa: S110 - best effort at exit
        pass
