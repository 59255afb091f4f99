"""What every route of the portal shares: its configuration, the cookie that names the browser's
record (`session.Records`), the CSRF check of every POST, the page frame, and the two wrappers
that open the routes, `posted` (a form, signed in or not) and `authenticated` (a page of the
Espace Client).

Browser state is one cookie: a random id with an HMAC tag (HttpOnly, SameSite=Strict), naming a
server-side record that holds the CSRF token, the rules session id and what is pending. A visitor
gets a record only when posting a login form: before, the id is a nonce stamped with its time,
and the CSRF token of the pages an HMAC of it, so that page views keep nothing on the server.
Every POST carries the CSRF token; login forms are rate-limited per client address. Every page of the Espace Client goes through the service, so its
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
from .session import Records, Throttle, WebSession

COOKIE = "capkey_portal"
# The browser's preferences, each in a cookie of its own that holds nothing else: the accessible
# version ("1"), and the remembered Identifiant client (« Mémoriser mon identifiant », off by
# default, cleared by unticking it).
ACCESSIBLE_COOKIE = "capkey_version_accessible"
REMEMBER_COOKIE = "capkey_identifiant"
_YEAR = 365 * 24 * 3600
_MAX_FORM = 16 * 1024
_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
IDENT = re.compile(r"^[A-Za-z0-9_-]{1,12}$")  # an Identifiant client, as the rules take it

#: One message for every failed authentication, whatever failed (R2).
FAILED = ("Authentification refusée. Vérifiez les informations saisies et recommencez ; "
          "après plusieurs échecs l'accès est bloqué.")
EXPIRED = "Votre session a expiré après une période d'inactivité. Reconnectez-vous."
TOO_MANY = "Trop de tentatives de connexion depuis votre adresse : réessayez dans une minute."

Form = dict[str, str]
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class PortalConfig:
    """`origin`: the portal's web origin as the browser sees it (LOGIN payloads carry it; requests
    under another host name are redirected to it). `agent_url`: the local signing agent ("TURBO
    SIGN"), None to hide the certificate method. `device_view`: an ASGI app that shows a device
    under /appareil/ (the demo's view of its simulator, capkey_dev.devview), or None; whoever
    builds it closes it. `secret`: the cookie HMAC key. `login_forms_per_minute`: login forms
    a client address may post (at once, and again each minute). `assistance_phone` and
    `assistance_email`: what the help pages give."""

    origin: str
    agent_url: str | None = None
    device_view: ASGIApp | None = field(default=None, compare=False)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    record_ttl_seconds: int = 1800
    login_forms_per_minute: int = 30
    currency: str = "EUR"
    # the bank's assistance, as the guide gives it (« Assistance », « Identifiant oublié ? »)
    assistance_phone: str = "0 800 052 018"
    assistance_email: str = "client@assistance.credit-cooperatif.coop"

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
    configuration, the records and the login forms' rate limit; and the answers, which all carry
    the record's cookie."""

    def __init__(self, service: AuthService, config: PortalConfig, records: Records,
                 throttle: Throttle):
        self.service = service
        self.config = config
        self.records = records
        self.throttle = throttle

    def _tag(self, sid: str, purpose: bytes = b"cookie") -> str:
        return hmac.new(self.config.secret, purpose + b"\0" + sid.encode(),
                        hashlib.sha256).hexdigest()[:32]

    def session_of(self, request: Request) -> WebSession:
        """The caller's record; for a visitor who has none, one kept nowhere (`Records.keep`),
        under the cookie's nonce while it is younger than the records' lifetime, else a new one
        (no cookie, a forged or an old one)."""
        sid, _, mac = request.cookies.get(COOKIE, "").partition(".")
        now = self.records.now()
        if sid and hmac.compare_digest(mac.encode(), self._tag(sid).encode()):
            web = self.records.get(sid)
            if web is not None:
                return self._preferences(web, request)
            issued, stamped, _ = sid.partition("~")
            if not (stamped and issued.isdigit() and 0 <= now - int(issued) <= self.records.ttl):
                sid = ""
        if not sid:
            sid = f"{int(now)}~{secrets.token_urlsafe(18)}"
        return self._preferences(WebSession(sid, self._tag(sid, b"csrf"), now), request)

    @staticmethod
    def _preferences(web: WebSession, request: Request) -> WebSession:
        web.accessible = request.cookies.get(ACCESSIBLE_COOKIE) == "1"
        remembered = request.cookies.get(REMEMBER_COOKIE, "")
        web.remembered = remembered if IDENT.match(remembered) else ""
        return web

    def preference(self, response: Response, name: str, value: str | None) -> Response:
        """Sets (or, for None, clears) one of the preference cookies on `response`."""
        if value is None:
            response.delete_cookie(name, path="/", httponly=True, samesite="strict",
                                   secure=self.config.secure)
        else:
            response.set_cookie(name, value, max_age=_YEAR, httponly=True, samesite="strict",
                                secure=self.config.secure, path="/")
        return response

    def _with_cookie(self, response: Response, web: WebSession) -> Response:
        response.set_cookie(COOKIE, f"{web.id}.{self._tag(web.id)}", httponly=True,
                            samesite="strict", secure=self.config.secure, path="/")
        return response

    def page(self, web: WebSession, title: str, body: Markup, *, device: bool = False,
             status: int = 200) -> Response:
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
        aside = (render("device_aside.html", query="?version=accessible" if web.accessible
                        else "") if device and self.config.device_view is not None
                 else Markup(""))
        html = render("base.html", title=title, nav=nav, notice=notice, body=body, aside=aside,
                      body_class="accessible" if web.accessible else "standard",
                      version_value="0" if web.accessible else "1",
                      version_label=("Version standard" if web.accessible
                                     else "Version accessible"),
                      version_pressed="true" if web.accessible else "false")
        return self._with_cookie(HTMLResponse(html, status_code=status), web)

    def redirect(self, web: WebSession, url: str) -> Response:
        return self._with_cookie(RedirectResponse(url, status_code=303), web)

    def forbidden(self, web: WebSession) -> Response:
        web.notice = "Formulaire expiré ou invalide : recommencez."
        return self.redirect(web, "/connexion" if web.auth is None else "/espace")

    def too_many(self, web: WebSession) -> Response:
        web.notice = TOO_MANY
        response = self.page(web, "Connexion", tag("p", tag("a", "Retour à la connexion",
                                                            href="/connexion")), status=429)
        response.headers["retry-after"] = "60"
        return response

    def login_fresh(self, old: WebSession, auth: Session) -> WebSession:
        """A new record (and cookie) at login: nothing set before authentication carries over."""
        self.records.drop(old.id)
        return self.records.new(auth)

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
    form or a wrong CSRF token is turned away before it runs. A form posted before login counts
    against its client address's rate limit, and gives the visitor a record if it has none."""

    async def route(request: Request) -> Response:
        site = site_of(request)
        web = site.session_of(request)
        if web.auth is None:
            if not site.throttle.allow(request.client.host if request.client else ""):
                return site.too_many(web)
            site.records.keep(web)
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
                if web.id in site.records:  # a visitor without a record gets none for a notice
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
