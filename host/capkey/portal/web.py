"""What every route of the portal shares: its configuration, the cookie that names the browser's
record (`session.Records`), the CSRF check of every POST, the page frame, and the two wrappers
that open the routes, `posted` (a form, signed in or not) and `authenticated` (a page of the
Espace Client).

Browser state is one cookie: a random id with an HMAC tag (HttpOnly, SameSite=Strict), naming a
server-side record that holds the CSRF token, the rules session id and what is pending. Every POST
carries the CSRF token. Every page of the Espace Client goes through the service, so its
inactivity limit (R13) applies; the portal's own records expire too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from ..rules import MAX_PAYLOAD, AuthService, CertEvidence, Outcome, Session, check_origin
from .render import Markup, esc, join, render, tag
from .session import Records, WebSession

COOKIE = "capkey_portal"
_MAX_FORM = 16 * 1024
_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

#: One message for every failed authentication, whatever failed (R2).
FAILED = ("Authentification refusée. Vérifiez les informations saisies et recommencez ; "
          "après plusieurs échecs l'accès est bloqué.")
EXPIRED = "Votre session a expiré après une période d'inactivité. Reconnectez-vous."

Form = dict[str, str]
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class PortalConfig:
    """`origin`: the portal's web origin as the browser sees it (LOGIN payloads carry it; requests
    under another host name are redirected to it). `agent_url`: the local signing agent ("TURBO
    SIGN"), None to hide the certificate method. `device_view`: an ASGI app that shows a device
    under /appareil/ (the demo's view of its simulator, capkey_dev.devview), or None; whoever
    builds it closes it. `secret`: the cookie HMAC key."""

    origin: str
    agent_url: str | None = None
    device_view: ASGIApp | None = field(default=None, compare=False)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    record_ttl_seconds: int = 1800
    currency: str = "EUR"

    def __post_init__(self) -> None:
        check_origin(self.origin)  # the canonical form a LOGIN payload carries
        if self.agent_url is not None and not self.agent_url.startswith(("http://", "https://")):
            raise ValueError("agent_url must be an http(s) URL")
        if len(self.secret) < 16:
            raise ValueError("secret must be at least 16 bytes")

    @property
    def secure(self) -> bool:
        return self.origin.startswith("https://")


class Site:
    """What every request shares (the Starlette app's ``state.site``): the rules service, the
    configuration and the records; and the answers, which all carry the record's cookie."""

    def __init__(self, service: AuthService, config: PortalConfig, records: Records):
        self.service = service
        self.config = config
        self.records = records

    def _tag(self, sid: str) -> str:
        return hmac.new(self.config.secret, sid.encode(), hashlib.sha256).hexdigest()[:32]

    def session_of(self, request: Request) -> WebSession:
        """The caller's record, or a new one (no cookie, a forged or an expired one)."""
        sid, _, mac = request.cookies.get(COOKIE, "").partition(".")
        if sid and hmac.compare_digest(mac.encode(), self._tag(sid).encode()):
            web = self.records.get(sid)
            if web is not None:
                return web
        return self.records.new()

    def _with_cookie(self, response: Response, web: WebSession) -> Response:
        response.set_cookie(COOKIE, f"{web.id}.{self._tag(web.id)}", httponly=True,
                            samesite="strict", secure=self.config.secure, path="/")
        return response

    def page(self, web: WebSession, title: str, body: Markup, *, device: bool = False
             ) -> Response:
        """`body` in the frame (`device`: with the device's view beside it, when there is one)."""
        notice = Markup("")
        if web.notice:
            notice = tag("p", web.notice, class_="notice", role="status")
            web.notice = ""
        nav = Markup("")
        if web.auth is not None:
            nav = join([tag("span", f"{web.auth.subscription} / {web.auth.user_no}"),
                        Markup(f'<form method="post" action="/deconnexion" class="inline">'
                               f'<input type="hidden" name="csrf" value="{esc(web.csrf)}">'
                               f'<button type="submit">Se déconnecter</button></form>')])
        aside = (render("device_aside.html") if device and self.config.device_view is not None
                 else Markup(""))
        html = render("base.html", title=title, nav=nav, notice=notice, body=body, aside=aside)
        return self._with_cookie(HTMLResponse(html), web)

    def redirect(self, web: WebSession, url: str) -> Response:
        return self._with_cookie(RedirectResponse(url, status_code=303), web)

    def forbidden(self, web: WebSession) -> Response:
        web.notice = "Formulaire expiré ou invalide : recommencez."
        return self.redirect(web, "/connexion" if web.auth is None else "/espace")

    def login_fresh(self, old: WebSession, auth: Session) -> WebSession:
        """A new record (and cookie) at login: nothing set before authentication carries over."""
        self.records.drop(old.id)
        web = self.records.new()
        web.auth = auth
        return web

    def expire(self, web: WebSession, message: str = EXPIRED) -> Response:
        self.records.drop(web.id)
        fresh = self.records.new()
        fresh.notice = message
        return self.redirect(fresh, "/connexion")

    def outcome_redirect(self, web: WebSession, outcome: Outcome) -> Response | None:
        """Where an outcome that is not about the operation itself sends the person, if it is one:
        the session expired (R13), or the code must be changed first (R14)."""
        if outcome is Outcome.SESSION_EXPIRED:
            return self.expire(web)
        if outcome is Outcome.CODE_CHANGE_REQUIRED:
            web.notice = "Modifiez d'abord votre code confidentiel."
            return self.redirect(web, "/code/changer")
        return None


def site_of(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


async def call(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """`fn` off the event loop: the service blocks on its database."""
    return await run_in_threadpool(fn, *args, **kw)


async def _form_of(request: Request, web: WebSession) -> Form | None:
    """The urlencoded form of a POST, or None if it is malformed or its CSRF token is wrong."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
            "application/x-www-form-urlencoded"):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        return None
    if any(len(v) != 1 for v in parsed.values()):
        return None
    form = {k: v[0] for k, v in parsed.items()}
    if not hmac.compare_digest(form.get("csrf", "").encode(), web.csrf.encode()):
        return None
    return form


def posted(handler: Callable[[Site, Request, WebSession, Form], Awaitable[Response]]
           ) -> Endpoint:
    """A POST route open to anyone: the handler gets the caller's record and form; a malformed
    form or a wrong CSRF token is turned away before it runs."""

    async def route(request: Request) -> Response:
        site = site_of(request)
        web = site.session_of(request)
        form = await _form_of(request, web)
        if form is None:
            return site.forbidden(web)
        return await handler(site, request, web, form)

    return route


AuthHandler = Callable[[Site, Request, WebSession, Session, Form | None], Awaitable[Response]]


def authenticated(operation: str = "VIEW_ACCOUNTS") -> Callable[[AuthHandler], Endpoint]:
    """A page of the Espace Client, for a signed-in person whose rules session is still open: the
    service is asked for `operation` first (an ordinary one), which applies the inactivity limit
    (R13) and the forced code change (R14) and keeps the session alive; otherwise the person goes
    to the login page. The handler gets the record, the rules session and, on a POST, the form
    (None on a GET), turned away like `posted`'s if malformed."""

    def wrap(handler: AuthHandler) -> Endpoint:
        async def route(request: Request) -> Response:
            site = site_of(request)
            web = site.session_of(request)
            auth = web.auth
            if auth is None:
                web.notice = web.notice or "Connectez-vous pour accéder à votre Espace Client."
                return site.redirect(web, "/connexion")
            outcome = await call(site.service.authorize, auth, operation)
            if (r := site.outcome_redirect(web, outcome)) is not None:
                return r
            form = None
            if request.method == "POST":
                form = await _form_of(request, web)
                if form is None:
                    return site.forbidden(web)
            return await handler(site, request, web, auth, form)

        return route

    return wrap


def _b64decode(value: str, limit: int) -> bytes | None:
    value = value.strip()
    if not value or len(value) > limit * 4 // 3 + 4 or not _B64.match(value):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def cert_evidence(form: Form) -> CertEvidence | None:
    """What the agent's signature form posts (None if malformed): the signature, the certificate,
    and the payload bytes the browser had signed if it sent them back (the verifier compares them
    with the bank's own record; absent, it verifies over the record)."""
    signature = _b64decode(form.get("signature", ""), 1024)
    certificate = _b64decode(form.get("certificate", ""), 16384)
    if signature is None or certificate is None:
        return None
    signed = _b64decode(form["payload"], MAX_PAYLOAD) if form.get("payload") else None
    return CertEvidence(certificate, signature, signed)
