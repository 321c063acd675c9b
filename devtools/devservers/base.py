"""What the development servers share: a port kept across restarts, and `with`."""

from __future__ import annotations

from typing import Self


class DevServer:
    """A server on `host:port` that a test stops and starts again (an outage, a recovery) on
    the same address; `with server:` starts it and stops it."""

    host: str
    _port: int

    @property
    def port(self) -> int:
        """The listening port; chosen by the first `start()` when constructed with 0."""
        return self._port

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
