"""Topic and consumer-group names: the one place that knows the naming scheme.

    <prefix>.<type>                 main topic         qchem.chemical-status
    <prefix>.<type>.retry-<N>s      retry tier N s     qchem.chemical-status.retry-1s
    <prefix>.<type>.dlq             dead letters       qchem.chemical-status.dlq
    <prefix>-events.<type>          consumer group     qchem-events.chemical-status

<type> is the event type in kebab case. Tier delays are 2^i seconds for i = 0..retries-1
(ADR-001), so with the default 3 retries the tiers are retry-1s, retry-2s, retry-4s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from common.settings import Settings

Role = Literal["main", "retry", "dlq"]

_KEBAB = re.compile(r"(?<!^)(?=[A-Z])")


def kebab(event_type: str) -> str:
    return _KEBAB.sub("-", event_type).lower()


def tier_delays_ms(retries: int) -> list[int]:
    """Base delay of each retry tier: 2^attempt x 1000 ms (ADR-001)."""
    return [(2**i) * 1000 for i in range(retries)]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    role: Role
    event_type: str
    delay_ms: int = 0  # retry tiers only


@dataclass(frozen=True, slots=True)
class TopicNames:
    prefix: str
    event_type: str
    retries: int = 3

    @property
    def main(self) -> str:
        return f"{self.prefix}.{kebab(self.event_type)}"

    @property
    def dlq(self) -> str:
        return f"{self.main}.dlq"

    @property
    def group(self) -> str:
        return f"{self.prefix}-events.{kebab(self.event_type)}"

    def retry(self, delay_ms: int) -> str:
        return f"{self.main}.retry-{delay_ms // 1000}s"

    @property
    def retry_tiers(self) -> list[TopicSpec]:
        return [
            TopicSpec(self.retry(d), "retry", self.event_type, d)
            for d in tier_delays_ms(self.retries)
        ]

    def all(self) -> list[TopicSpec]:
        return [
            TopicSpec(self.main, "main", self.event_type),
            *self.retry_tiers,
            TopicSpec(self.dlq, "dlq", self.event_type),
        ]

    def consumed(self) -> list[str]:
        """What the type's listener subscribes to: the main topic and its retry tiers."""
        return [self.main, *(t.name for t in self.retry_tiers)]


def topic_names(settings: Settings, event_type: str) -> TopicNames:
    """The event type's topic and consumer-group names under these settings. Here, not a
    method of Settings: the settings live in the leaf package (common/), which must not
    import the layers above it."""
    return TopicNames(settings.topic_prefix, event_type, settings.retries_for(event_type))
