"""A TCP proxy that can turn into a black hole: the network failure that ends no wait by itself.

A refused or reset connection fails at once; a black-holed one (a partition, a peer that hung,
a firewall that drops packets) keeps its socket open and answers nothing. While `swallowing`,
the proxy keeps every connection open, accepts new ones and reads what either side sends, but
forwards none of it; `forward()` makes it a plain proxy again for the bytes that come after.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

_CHUNK = 65536


class BlackHoleProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._swallowing = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def swallow(self) -> None:
        self._swallowing.set()

    def forward(self) -> None:
        self._swallowing.clear()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _close_quietly(sock)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream, timeout=5)
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while chunk := source.recv(_CHUNK):
                if not self._swallowing.is_set():
                    sink.sendall(chunk)
        _close_quietly(sink)


def _close_quietly(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def black_hole_proxy(upstream_host: str, upstream_port: int) -> Iterator[BlackHoleProxy]:
    proxy = BlackHoleProxy(upstream_host, upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()
