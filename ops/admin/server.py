"""The admin HTTP server: JSON API under /api/v1/ and the page under /admin.

Werkzeug does the HTTP parsing and routing, waitress serves (as the metrics server does,
ops/http.py), Jinja2 renders the page with autoescaping on: every text shown comes from
record bytes some producer chose. Both halves call ops/dlq_service.py, the CLI's service.

Security (README, "Admin API and page"):
* bound to 127.0.0.1 unless ADMIN_HOST says otherwise; on loopback, a request must name a
  loopback Host (a page elsewhere cannot reach the API through DNS rebinding);
* a mutating call needs `Authorization: Bearer <ADMIN_TOKEN>` (the page's forms carry the
  token in a form field instead: a browser cannot send that header from a plain form, and a
  value the attacker cannot know is what matters); without ADMIN_TOKEN, mutations are 403;
* beyond loopback, reads need the token too (config refuses to start without one);
* no cookies at all, so there is nothing for a cross-site request to ride on;
* every mutation writes an audit row with the actor (`X-Admin-Actor` or the form's name);
* errors are one-line JSON (API) or a short page, never a traceback.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from common.settings import Settings
from ops import dlq_service
from ops.admin import health as admin_health
from ops.admin import pages
from ops.admin.config import AdminSettings
from ops.dlq import DlqProblem, DlqUsageError

log = structlog.get_logger(__name__)

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
ACTOR_MAX = 100

RULES = [
    Rule("/api/v1/health", endpoint="health", methods=["GET"]),
    Rule("/api/v1/dlq/summary", endpoint="summary", methods=["GET"]),
    Rule("/api/v1/dlq/records", endpoint="records", methods=["GET"]),
    Rule("/api/v1/dlq/records/<ref>", endpoint="record", methods=["GET"]),
    Rule("/api/v1/dlq/records/<ref>/approve", endpoint="approve", methods=["POST"]),
    Rule("/api/v1/dlq/records/<ref>/reject", endpoint="reject", methods=["POST"]),
    Rule("/api/v1/dlq/replay", endpoint="replay", methods=["POST"]),
    Rule("/api/v1/dlq/replays", endpoint="replays", methods=["GET"]),
    Rule("/api/v1/dlq/replays/<job>", endpoint="replay_job", methods=["GET"]),
    Rule("/api/v1/dlq/audit", endpoint="audit", methods=["GET"]),
    Rule("/api/v1/dlq/purge", endpoint="purge", methods=["POST"]),
    Rule("/api/v1/dlq/sync", endpoint="sync", methods=["POST"]),
    *pages.RULES,
]


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class AdminApp:
    """The WSGI application. `engine` is shared by the request threads and replay jobs."""

    def __init__(self, settings: Settings, admin: AdminSettings, engine: Engine) -> None:
        self.settings = settings
        self.admin = admin
        self.engine = engine
        self.url_map = Map([rule.empty() for rule in RULES], strict_slashes=False)
        self.pages = pages.Pages(self)
        self.lock = threading.Lock()

    # -- dispatch --------------------------------------------------------------------------

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self.admin.max_body_bytes  # chunked bodies too
        api = request.path.startswith("/api/")
        nonce = secrets.token_urlsafe(12)
        try:
            self._check_host(request)
            self._check_size(request)
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            if str(endpoint).startswith("page_"):
                response = getattr(self.pages, str(endpoint))(request, nonce=nonce, **args)
            else:
                response = getattr(self, f"on_{endpoint}")(request, **args)
        except Exception as exc:  # every failure becomes a one-line answer
            status, message, headers = self._describe(exc)
            if api:
                response = json_response({"error": message}, status)
            else:
                response = self.pages.error(status, message, nonce)
            for name, value in headers.items():
                response.headers[name] = value
        _secure(response, nonce)
        return response(environ, start_response)

    @staticmethod
    def _describe(exc: Exception) -> tuple[int, str, dict[str, str]]:
        if isinstance(exc, ApiError):
            return exc.status, str(exc), exc.headers
        if isinstance(exc, DlqUsageError):
            return 400, _one_line(str(exc)), {}
        if isinstance(exc, dlq_service.NotFound):
            return 404, _one_line(str(exc)), {}
        if isinstance(exc, dlq_service.Conflict):
            return 409, _one_line(str(exc)), {}
        if isinstance(exc, DlqProblem):
            return 503, _one_line(str(exc)), {}
        if isinstance(exc, RequestEntityTooLarge):
            return 400, "body too large", {}
        if isinstance(exc, HTTPException):
            code = exc.code or 500
            allowed = exc.valid_methods if hasattr(exc, "valid_methods") else None  # type: ignore[attr-defined]
            headers = {"Allow": ", ".join(allowed)} if allowed else {}
            return code, _one_line(exc.description or exc.name), headers
        log.exception("admin_request_failed")
        return 500, "internal error (logged by the admin process)", {}

    def _check_host(self, request: Request) -> None:
        if not self.admin.loopback:
            return
        host = urlsplit(f"//{request.host}").hostname or ""
        if host not in LOOPBACK_NAMES:
            raise ApiError(400, f"Host {host[:60]!r} is not a loopback name")

    def _check_size(self, request: Request) -> None:
        length = request.content_length
        if length is not None and length > self.admin.max_body_bytes:
            raise ApiError(400, f"body of {length} bytes: at most {self.admin.max_body_bytes}")

    # -- authorisation ---------------------------------------------------------------------

    def token_matches(self, given: str | None) -> bool:
        token = self.admin.token
        if token is None or not given:
            return False
        return hmac.compare_digest(given.encode(), token.get_secret_value().encode())

    def bearer(self, request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    def authorize(self, request: Request, *, mutating: bool, given: str | None = None) -> None:
        """403 when mutations are disabled (no ADMIN_TOKEN); 401 without the right token."""
        if mutating and self.admin.token is None:
            raise ApiError(
                403,
                "mutations are disabled: set ADMIN_TOKEN (16+ characters) and restart "
                "`qchem-events admin`",
            )
        if not mutating and self.admin.loopback:
            return
        if not self.token_matches(given if given is not None else self.bearer(request)):
            raise ApiError(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})

    def actor(self, request: Request, name: str | None = None) -> str:
        declared = (name if name is not None else request.headers.get("X-Admin-Actor", "")).strip()
        if len(declared) > ACTOR_MAX or any(not c.isprintable() for c in declared):
            raise ApiError(400, f"actor: at most {ACTOR_MAX} printable characters")
        return f"api:{declared}" if declared else "api"

    # -- API -------------------------------------------------------------------------------

    def _body(self, request: Request) -> dict[str, Any]:
        raw = request.get_data(cache=False)
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, "body: not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body: expected a JSON object")
        return body

    def _read(self, request: Request) -> None:
        self.authorize(request, mutating=False)

    def on_health(self, request: Request) -> Response:
        self._read(request)
        return json_response(admin_health.health(self.settings, self.admin.instances))

    def on_summary(self, request: Request) -> Response:
        self._read(request)
        params = request.args.to_dict(flat=False)
        unknown = set(params) - {"type"}
        if unknown:
            raise ApiError(400, f"unknown filter {sorted(unknown)[0]!r}; known: type")
        types = dlq_service.types_of(self.settings, request.args.get("type"))
        return json_response(dlq_service.summary(self.settings, self.engine, types))

    def on_records(self, request: Request) -> Response:
        self._read(request)
        query, size = dlq_service.parse_query(self.settings, request.args.to_dict(flat=False))
        return json_response(dlq_service.records(self.settings, self.engine, query, size))

    def on_record(self, request: Request, ref: str) -> Response:
        self._read(request)
        return json_response(dlq_service.record(self.settings, self.engine, ref))

    def on_replays(self, request: Request) -> Response:
        self._read(request)
        limit = dlq_service.parse_limit(request.args.get("limit"), 50, 500)
        return json_response({"replays": dlq_service.jobs(self.engine, limit)})

    def on_replay_job(self, request: Request, job: str) -> Response:
        self._read(request)
        return json_response(dlq_service.job(self.engine, job))

    def on_audit(self, request: Request) -> Response:
        self._read(request)
        ref = request.args.get("ref")
        if ref is not None:
            dlq_service.parse_ref(ref)
        limit = dlq_service.parse_limit(request.args.get("limit"), 200, 1000)
        return json_response({"audit": dlq_service.history(self.engine, ref, limit)})

    def on_replay(self, request: Request) -> Response:
        self.authorize(request, mutating=True)
        actor = self.actor(request)
        replay = dlq_service.replay_request(self.settings, self._body(request))
        result = self.start_replay(replay, actor)
        return json_response(result, 200 if replay.dry_run else 202)

    def start_replay(self, replay: Any, actor: str) -> dict[str, Any]:
        return dlq_service.replay(self.settings, self.engine, replay, actor=actor, background=True)

    def on_approve(self, request: Request, ref: str) -> Response:
        self.authorize(request, mutating=True)
        body = self._body(request)
        _only(body, {"reason", "target"})
        result = dlq_service.approve(
            self.settings,
            self.engine,
            ref,
            actor=self.actor(request),
            reason=_text(body, "reason"),
            target=_text(body, "target") or "main",
        )
        return json_response(result)

    def on_reject(self, request: Request, ref: str) -> Response:
        self.authorize(request, mutating=True)
        body = self._body(request)
        _only(body, {"reason"})
        result = dlq_service.reject(
            self.settings, self.engine, ref, actor=self.actor(request), reason=_text(body, "reason")
        )
        return json_response(result)

    def on_purge(self, request: Request) -> Response:
        self.authorize(request, mutating=True)
        actor = self.actor(request)
        body = self._body(request)
        event_type, filters, days, dry_run = dlq_service.purge_request(self.settings, body)
        result = dlq_service.purge(
            self.settings,
            self.engine,
            event_type,
            filters,
            older_than_days=days,
            dry_run=dry_run,
            actor=actor,
        )
        result.pop("text", None)
        return json_response(result)

    def on_sync(self, request: Request) -> Response:
        self.authorize(request, mutating=True)
        added = dlq_service.sync(self.settings, self.engine, self.settings.event_types)
        return json_response({"indexed": added})


def _only(body: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}")


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"{name}: expected a string")
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def _secure(response: Response, nonce: str) -> None:
    """No external anything; inline script only with this response's nonce."""
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
