"""What the development servers share: a port kept across restarts, start/stop, and `with`."""

from __future__ import annotations

from typing import Generic, Self, TypeVar

L = TypeVar("L")


class DevServer(Generic[L]):
    """A server on `host:port` that a test stops and starts again (an outage, a recovery) on
    the same address; `with server:` starts it and stops it.

    A subclass opens its listener in `_listen` (of type L: whatever `_close` needs to shut it
    down again) and closes it in `_close`; start and stop are no-ops when already done."""

    host: str
    _port: int
    _listening: L | None = None  # what `_listen` opened; None while stopped

    @property
    def port(self) -> int:
        """The listening port; chosen by the first `start()` when constructed with 0."""
        return self._port

    @property
    def running(self) -> bool:
        return self._listening is not None

    def start(self) -> None:
        """Listen (again) on the same port; a no-op when already running."""
        if self._listening is None:
            self._listening = self._listen()

    def stop(self) -> None:
        """Close the port: new clients get ECONNREFUSED."""
        listening, self._listening = self._listening, None
        if listening is not None:
            self._close(listening)

    def _listen(self) -> L:
        raise NotImplementedError

    def _close(self, listening: L) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
