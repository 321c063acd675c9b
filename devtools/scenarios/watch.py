"""What a scenario's sampler sees of the running application: breakers, pool, held events."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY

from devtools.scenarios.dashboard import Timeline
from ops.app import App

HELD_REASONS = ("database_down", "dependency_down")
HELD_WHY = {"database_down": "database unavailable", "dependency_down": "breaker open"}


def counter(name: str, **labels: str) -> float:
    """A Prometheus sample of this process (the application's metrics are process-wide)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def held_total(event_types: Iterable[str], reason: str) -> float:
    """Events held in place so far in this process, for `reason`."""
    return sum(counter("qchem_events_held_total", event_type=t, reason=reason) for t in event_types)


@dataclass(slots=True)
class Watch:
    """What the sampler saw of the running application."""

    pool_size: int
    pool_max_in_use: int = 0
    pool_samples: int = 0
    pool_hot_samples: int = 0  # samples at 80 % or more of the pool (the QchemDbPoolHigh level)
    held: dict[str, float] = field(default_factory=dict)
    breaker_states: dict[str, list[str]] = field(default_factory=dict)

    def facts(self) -> dict[str, Any]:
        hot = round(self.pool_hot_samples / max(self.pool_samples, 1), 3)
        return {
            "pool": {"size": self.pool_size, "max_in_use": self.pool_max_in_use, "hot_share": hot},
            "held_in_place": {k: int(v) for k, v in self.held.items()},
            "breaker_states": self.breaker_states,
        }

    def sample(self, app: App, stop: threading.Event, timeline: Timeline, mark_pool: bool) -> None:
        """Every 20 ms until `stop`: breaker states (marked on change), pool use, events held
        in place; with `mark_pool`, "pool fully checked out" goes on the timeline too."""
        event_types = app.settings.event_types
        held_before = {r: held_total(event_types, r) for r in HELD_REASONS}
        while not stop.wait(0.02):
            for name, guard in app.breakers.all().items():
                states = self.breaker_states.setdefault(name, ["closed"])
                if guard.state != states[-1]:
                    states.append(guard.state)
                    timeline.mark(f"breaker {name} {guard.state}")
            pool = getattr(app.engine, "pool", None)
            checked_out = getattr(pool, "checkedout", None)
            if checked_out is not None:
                in_use = int(checked_out())
                self.pool_samples += 1
                self.pool_hot_samples += in_use >= 0.8 * self.pool_size
                if mark_pool and in_use >= self.pool_size > self.pool_max_in_use:
                    timeline.mark(
                        f"database pool fully checked out: {in_use}/{self.pool_size} in use"
                    )
                self.pool_max_in_use = max(self.pool_max_in_use, in_use)
            for reason in HELD_REASONS:
                now = held_total(event_types, reason) - held_before[reason]
                if now and not self.held.get(reason):
                    why = HELD_WHY[reason]
                    timeline.mark(f"first event held in place, no attempt used ({why})")
                self.held[reason] = now
