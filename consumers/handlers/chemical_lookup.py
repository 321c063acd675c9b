"""ChemicalLookup: fetch a chemical's reference data from the chemical API and store it.

The HTTP call is `perform` (outside the transaction, behind the "chemical_api" breaker);
`apply` only stores its result. Errors are mapped by what a retry could change:

* no answer at all (refused, reset, DNS, timeout): `DependencyDownError("chemical_api", ...)`,
  which counts against the breaker so a dead API stops being hammered;
* 5xx, 429, or a body that is not a JSON object: `TransientError`, retried through the tiers;
* other 4xx (404 unknown chemical, 400 bad id): `PermanentError`, to the DLQ.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any, ClassVar
from urllib.parse import quote

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from common.errors import DependencyDownError, PermanentError, TransientError
from common.settings import Settings
from schemas.events import ChemicalLookupPayload, Event
from storage.models import chemical_lookups

DEPENDENCY = "chemical_api"
# The chemical id the breaker's probe looks up (an unknown id: a 404 is a healthy answer).
PROBE_ID = "QCHEM-HEALTH-PROBE"


class ChemicalLookupHandler:
    """GETs `/chemicals/{id}` and records the JSON in `chemical_lookups`."""

    event_type: ClassVar[str] = "ChemicalLookup"
    dependency: ClassVar[str | None] = DEPENDENCY

    def __init__(self, settings: Settings) -> None:
        self._base_url = settings.chemical_api_url.rstrip("/")
        self._timeout_s = settings.chemical_api_timeout_s

    def url_for(self, chemical_id: str) -> str:
        # safe="": an id containing "/" or "?" must stay one path segment.
        return f"{self._base_url}/chemicals/{quote(chemical_id, safe='')}"

    def perform(self, event: Event) -> dict[str, Any]:
        """The API's JSON object for the chemical; a handler error on failure."""
        payload: ChemicalLookupPayload = event.payload
        request = urllib.request.Request(
            self.url_for(payload.chemical_id),
            headers={"Accept": "application/json", "X-Event-ID": event.event_id},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:  # before URLError: it is a subclass
            exc.close()
            raise _classify_status(exc.code, payload.chemical_id) from exc
        except urllib.error.URLError as exc:
            # Failures while connecting (refused, DNS, connect timeout) arrive wrapped.
            raise DependencyDownError(DEPENDENCY, f"unreachable: {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            # Failures after connecting arrive bare: a read timeout (TimeoutError), a reset,
            # or a connection closed mid-response (RemoteDisconnected, IncompleteRead).
            raise DependencyDownError(DEPENDENCY, f"{type(exc).__name__}: {exc}") from exc
        try:
            data = json.loads(body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise TransientError(f"chemical API returned a non-JSON body: {exc}") from exc
        if not isinstance(data, dict):
            raise TransientError(f"chemical API returned {type(data).__name__}, not an object")
        return data

    def probe(self) -> None:
        """The API's health, for the circuit breaker: one look-up of a made-up id, the same
        path events take. Not GET /health: an API that answers /health while its look-ups
        fail with 500 (scenario 3) would close the breaker only for events to open it again.
        Any answer but 5xx or 429 (a 404 for the unknown id, say) means look-ups work."""
        request = urllib.request.Request(self.url_for(PROBE_ID), headers={"X-Qchem-Probe": "1"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                response.read()
                return
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code < 500 and exc.code != 429:
                return
            raise DependencyDownError(DEPENDENCY, f"probe answered HTTP {exc.code}") from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise DependencyDownError(DEPENDENCY, f"unreachable: {exc}") from exc

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        """Store the looked-up data; applying the same event again is a no-op."""
        payload: ChemicalLookupPayload = event.payload
        conn.execute(
            pg_insert(chemical_lookups)
            .values(chemical_id=payload.chemical_id, event_id=event.event_id, data=performed)
            # The row is this event's effect (event_id is unique): a second apply of the
            # same event must not fail the transaction it shares with other events.
            .on_conflict_do_nothing(index_elements=[chemical_lookups.c.event_id])
        )


def _classify_status(status: int, chemical_id: str) -> TransientError | PermanentError:
    if status == 429 or status >= 500:
        return TransientError(f"chemical API answered HTTP {status} for {chemical_id!r}")
    if 400 <= status < 500:
        return PermanentError(f"chemical API answered HTTP {status} for {chemical_id!r}")
    # A 3xx urllib could not follow, or something stranger: not ours to judge as final.
    return TransientError(f"chemical API answered unexpected HTTP {status} for {chemical_id!r}")
