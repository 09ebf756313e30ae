"""The WebSocket client the dashboard tests use."""

from __future__ import annotations

import simple_websocket


class DashboardSocket(simple_websocket.Client):
    """``simple_websocket.Client`` (1.1.0) less one flaw of its handshake: it takes only the
    first event of the read that brought the 101, so a frame in the same read (the
    dashboard's ``hello``, sent at once; on a busy machine both come in one segment) stayed
    in wsproto's buffer until more data arrived, and ``receive`` timed out. The engine's own
    client of Dhan's order feed takes those frames the same way
    (``engine.broker.dhan.order_feed._FeedSocket``)."""

    def handshake(self) -> None:
        super().handshake()
        self.connected = self._handle_events()
