"""A TCP proxy a test can cut: the application loses its database, nobody else does.

Stopping PostgreSQL itself is what the fault suite does; this is for tests that need the
application alone to see the database go away (connections reset, new ones refused) while
the test keeps its own connection to check the outcome, and other tests on the machine are
not disturbed. Real sockets, real driver errors: only the network path is cut.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress

from devtools.ports import free_port


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._cut = threading.Event()
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TcpProxy:
        self._listener = socket.create_server((self.host, self.port), backlog=128)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until `restore`."""
        self._cut.set()
        with self._lock:
            for sock in list(self._sockets):
                with suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                    sock.close()
            self._sockets.clear()

    def restore(self) -> None:
        self._cut.clear()

    def stop(self) -> None:
        self._stopped.set()
        self.cut()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                client.close()  # the client sees its connection closed at once
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with suppress(OSError):
                sock.close()
            with self._lock:
                self._sockets.discard(sock)
