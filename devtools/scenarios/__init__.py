"""The design document's five production scenarios, reproduced: `python -m devtools scenario NAME`.

Each scenario runs the real application against the real broker and database with a real
fault (locked rows, a stopped SMTP server, an exhausted pool, malformed records, an API
answering 500), checks the result the document promises, and prints the document's dashboard
for that run. Sizes default to the document's; tests pass smaller ones where the promise
stays meaningful.

    chemical-cascade     1,000 status changes; lock timeouts and a slow API -> 100 % success
    email-outage         SMTP down for a maintenance window -> zero lost, none twice
    db-pool-exhaustion   a burst while reports hold the pool -> recovers by itself
    malformed            invalid records -> INVALID in the DLQ, bytes intact, never retried
    dependency-failure   chemical API 500s -> breaker, DLQ after 3 retries, replay works
"""

from __future__ import annotations

import json
from collections.abc import Callable

from common.settings import Settings
from devtools.scenarios import (
    chemical_cascade,
    db_pool_exhaustion,
    dependency_failure,
    email_outage,
    malformed,
)
from devtools.scenarios.dashboard import Outcome, render

# Logs of the application at this level and above are printed (to stderr) during a run. Not
# WARNING: every retried and held event is a warning line - hundreds in the email outage -
# which would bury the dashboard. Errors (an INVALID event with its payload) stay visible.
LOG_LEVEL = "ERROR"

Scenario = Callable[[Settings], Outcome]

SCENARIOS: dict[str, Scenario] = {
    chemical_cascade.NAME: chemical_cascade.run,
    email_outage.NAME: email_outage.run,
    db_pool_exhaustion.NAME: db_pool_exhaustion.run,
    malformed.NAME: malformed.run,
    dependency_failure.NAME: dependency_failure.run,
}
NAMES: tuple[str, ...] = tuple(SCENARIOS)


def selected(name: str) -> list[str]:
    """The scenarios `name` stands for ("all": every one, in the document's order)."""
    if name == "all":
        return list(NAMES)
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(NAMES)} or all")
    return [name]


def run_and_print(
    name: str, settings: Settings, *, as_json: bool, echo: Callable[[str], None]
) -> bool:
    """Run the scenario(s) of `name`, print each dashboard as it is done (or JSON at the end);
    True when every promise held."""
    from ops.logging import configure

    configure(LOG_LEVEL, "console", settings.log_redact_fields)
    outcomes = []
    for scenario in selected(name):
        outcome = SCENARIOS[scenario](settings)
        outcomes.append(outcome)
        if not as_json:
            echo(render(outcome))
    if as_json:
        data = [o.as_json() for o in outcomes]
        echo(json.dumps(data if name == "all" else data[0], indent=2, default=str))
    return all(o.passed for o in outcomes)


__all__ = ["NAMES", "SCENARIOS", "Outcome", "render", "run_and_print", "selected"]
