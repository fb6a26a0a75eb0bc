"""Start a real uvicorn server on a free loopback port, in a thread, over any backend."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn

from llamalite.server.app import protocol_for


class LiveServer:
    """uvicorn serving `app` on 127.0.0.1:<free port> until stop()."""

    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2,
                                http=protocol_for(app))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def start(self, wait_ready: bool = True) -> "LiveServer":
        self.thread.start()
        end = time.time() + 60
        while time.time() < end:
            try:
                r = httpx.get(self.url + "/health", timeout=2)
                if r.status_code == 200 or not wait_ready:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
