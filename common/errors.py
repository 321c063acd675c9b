"""The errors a handler raises on purpose, and that the retry policy classifies.

They live in the leaf package because both sides of the failure path need them: the handlers
(consumers/handlers/) raise them, the policy (retry_topics/policy.py) and the breakers
(consumers/breakers.py) read them. Anything else a handler raises is classified by
retry_topics/policy.py (timeouts and connection resets are transient, the rest permanent).
"""

from __future__ import annotations


class HandlerError(Exception):
    """Base of the errors a handler raises on purpose."""


class TransientError(HandlerError):
    """Might work later (timeout, lock timeout, 5xx): goes through the retry tiers."""


class PermanentError(HandlerError):
    """Will never work (4xx, a business rule): straight to the DLQ, no retry."""


class DependencyDownError(HandlerError):
    """The dependency is unreachable; counts against its circuit breaker."""

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(f"{dependency}: {message}")
        self.dependency = dependency
