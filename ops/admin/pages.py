"""The /admin page: server-rendered HTML over the same service as the API.

Everything reads with plain links and GET forms, so the page works without JavaScript; the
mutating forms (approve, reject, replay) POST the token in a password field - a small inline
script only copies the token and name typed once at the top into every form of the tab
(sessionStorage: gone with the tab, never a cookie). After a mutation the browser is sent on
(303) to the record or the job, whose page refreshes itself while the job runs.
"""

from __future__ import annotations

from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy.engine import Engine
from werkzeug.routing import Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from common.settings import Settings
from ops import dlq_jobs, dlq_service
from ops.admin import health as admin_health
from ops.admin.config import AdminSettings
from ops.dlq_query import STATUSES, Query
from schemas.safe_text import escape_controls


class AdminHost(Protocol):
    """What the pages need of the WSGI application (ops/admin/server.py's AdminApp), which
    builds them: a protocol, so that the two modules do not import each other."""

    settings: Settings
    admin: AdminSettings
    engine: Engine

    def bearer(self, request: Request) -> str | None: ...

    def authorize(self, request: Request, *, mutating: bool, given: str | None = None) -> None: ...

    def actor(self, request: Request, name: str | None = None) -> str: ...

    def start_replay(self, replay: Any, actor: str) -> dict[str, Any]: ...


RULES = [
    Rule("/", endpoint="page_root", methods=["GET"]),
    Rule("/admin", endpoint="page_index", methods=["GET"]),
    Rule("/admin/records", endpoint="page_records", methods=["GET"]),
    Rule("/admin/records/<ref>", endpoint="page_record", methods=["GET"]),
    Rule("/admin/records/<ref>/approve", endpoint="page_approve", methods=["POST"]),
    Rule("/admin/records/<ref>/reject", endpoint="page_reject", methods=["POST"]),
    Rule("/admin/replay/preview", endpoint="page_preview", methods=["GET"]),
    Rule("/admin/replay", endpoint="page_replay", methods=["POST"]),
    Rule("/admin/jobs/<job>", endpoint="page_job", methods=["GET"]),
]
FORM_FIELDS = ("type", "error_class", "since", "until", "target", "max_replays", "rate")


def _shown(value: object) -> object:
    """Every `{{ value }}` of a page: terminal and bidirectional controls escaped as in the
    CLI (schemas/safe_text.py) - HTML escaping alone lets a forged error text with U+202E
    show reordered where an operator approves or rejects it. Layout (newlines) is kept.
    Markup (a macro's output) is left alone: its own expressions went through here."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return escape_controls(value, keep_layout=True)
    return value


_env = Environment(
    loader=PackageLoader("ops.admin", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    finalize=_shown,
    trim_blocks=True,
    lstrip_blocks=True,
)


class Pages:
    def __init__(self, app: AdminHost) -> None:
        self.app = app

    def render(self, name: str, nonce: str, status: int = 200, **context: Any) -> Response:
        admin = self.app.admin
        html = _env.get_template(name).render(
            nonce=nonce,
            mutations_enabled=admin.token is not None,
            critical_types=self.app.settings.critical_types,
            event_types=self.app.settings.event_types,
            **context,
        )
        return Response(html, status=status, mimetype="text/html")

    def error(self, status: int, message: str, nonce: str) -> Response:
        return self.render("error.html", nonce, status=status, status_code=status, message=message)

    # -- reads -----------------------------------------------------------------------------

    def page_root(self, request: Request, nonce: str) -> Response:
        return redirect("/admin", 302)

    def page_index(self, request: Request, nonce: str) -> Response:
        app = self.app
        app.authorize(request, mutating=False)
        s, engine = app.settings, app.engine
        critical = tuple(t for t in s.event_types if t in s.critical_types)
        queue = (
            dlq_service.records(s, engine, Query(critical, status="pending"), 50)
            if critical
            else {"records": [], "next_cursor": None}
        )
        return self.render(
            "index.html",
            nonce,
            health=admin_health.health(s, app.admin.instances),
            summary=dlq_service.summary(s, engine, s.event_types),
            queue=queue,
            jobs=dlq_service.jobs(engine, 10),
            done=request.args.get("done"),
        )

    def page_records(self, request: Request, nonce: str) -> Response:
        self.app.authorize(request, mutating=False)
        params = {k: v for k, v in request.args.to_dict(flat=False).items() if any(v)}
        query, size = dlq_service.parse_query(self.app.settings, params)
        page = dlq_service.records(self.app.settings, self.app.engine, query, size)
        args = {k: v[-1] for k, v in params.items() if k != "cursor"}
        return self.render("records.html", nonce, page=page, args=args, statuses=STATUSES)

    def page_record(self, request: Request, nonce: str, ref: str) -> Response:
        self.app.authorize(request, mutating=False)
        record = dlq_service.record(self.app.settings, self.app.engine, ref)
        return self.render("record.html", nonce, record=record, done=request.args.get("done"))

    def page_preview(self, request: Request, nonce: str) -> Response:
        """A dry run that records nothing: what a replay with this form would send."""
        self.app.authorize(request, mutating=False)
        replay = dlq_service.replay_request(self.app.settings, _replay_body(request.args))
        chosen = dlq_jobs.plan(self.app.settings, self.app.engine, replay)
        return self.render(
            "preview.html",
            nonce,
            plan=chosen,
            refs=[dlq_jobs.ref_of(r) for r in chosen.to_send[:200]],
            form={k: request.args.get(k, "") for k in FORM_FIELDS},
            include_replayed=bool(request.args.get("include_replayed")),
        )

    def page_job(self, request: Request, nonce: str, job: str) -> Response:
        self.app.authorize(request, mutating=False)
        return self.render("job.html", nonce, job=dlq_service.job(self.app.engine, job))

    # -- mutations (token in the form) -----------------------------------------------------

    def _mutating(self, request: Request) -> str:
        """Check the form's token; the actor is the form's name (audited)."""
        form = request.form
        self.app.authorize(
            request, mutating=True, given=form.get("token") or self.app.bearer(request)
        )
        return "page:" + (self.app.actor(request, form.get("actor", "")).removeprefix("api:"))

    def page_approve(self, request: Request, nonce: str, ref: str) -> Response:
        actor = self._mutating(request)
        form = request.form
        result = dlq_service.approve(
            self.app.settings,
            self.app.engine,
            ref,
            actor=actor,
            reason=form.get("reason"),
            target=form.get("target") or "main",
        )
        return redirect(f"/admin/records/{ref}?done={result['state']}", 303)

    def page_reject(self, request: Request, nonce: str, ref: str) -> Response:
        actor = self._mutating(request)
        dlq_service.reject(
            self.app.settings, self.app.engine, ref, actor=actor, reason=request.form.get("reason")
        )
        return redirect(f"/admin/records/{ref}?done=rejected", 303)

    def page_replay(self, request: Request, nonce: str) -> Response:
        actor = self._mutating(request)
        replay = dlq_service.replay_request(self.app.settings, _replay_body(request.form))
        result = self.app.start_replay(replay, actor)
        return redirect(f"/admin/jobs/{result['job']}", 303)


def _replay_body(form: Any) -> dict[str, Any]:
    """The replay form's text fields as the API's JSON body."""
    body: dict[str, Any] = {
        k: form.get(k)
        for k in ("type", "error_class", "since", "until", "target", "rate")
        if form.get(k)
    }
    for name in ("max_replays", "limit"):
        if form.get(name):
            text = form.get(name)
            body[name] = int(text) if text.isdigit() else text
    if form.get("include_replayed"):
        body["include_replayed"] = True
    return body
