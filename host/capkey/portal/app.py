"""The demo portal: "Accès à l'Espace Client Internet" of the bank's guide, on `AuthService`.

    app = create_app(service, PortalConfig(origin="http://127.0.0.1:8400",
                                           agent_url="http://127.0.0.1:8401"))

Pages (French, the guide's words), by module:

    login.py
    GET  /connexion?methode=cap|code|certificat   login, one tab per method
    POST /connexion/defi          identifiers -> a login challenge (CAP Respond, certificate)
    POST /connexion/cap           the code read off the CAP reader
    POST /connexion/code          identifiers + confidential code
    POST /connexion/certificat    signature of the LOGIN payload, made by the key via the agent
    GET|POST /code/changer        forced change at first login (R14) and voluntary change
    POST /deconnexion
    operations.py
    GET  /espace                  Espace Client: the sensitive operations of the guide
    GET|POST /operations/<slug>   an operation's form (forms.py) -> authorize() (R6)
    GET|POST /operations/<slug>/validation   step-up: CAP Sign/Respond or certificate (R7, R8)
    GET  /operations/<slug>/effectuee        the operation done
    admin.py
    GET|POST /administration/code            principal/admin resets a user's code (R15)
    login_help.py
    GET  /identifiant-oublie, /assistance, /securite   the login page's help links
    GET  /version-accessible?actif=1|0       the accessible version on or off (a cookie)

    /appareil/                    the simulated device's screen and keypad (capkey_dev.devview)

Routes open with `web.posted` or `web.authenticated`: the cookie, the CSRF token of every POST and
the rules session are checked there. Here, in front of them all: requests under another host name
are redirected to the origin, a POST whose Origin header names another site is refused, and every
answer carries the security headers. Failures are reported with one message whatever failed (R2).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..rules import AuthService
from . import admin, login, login_help, operations
from .session import Records, Throttle
from .web import PortalConfig, Site

__all__ = ["Portal", "PortalConfig", "Records", "create_app"]

STATIC = Path(__file__).with_name("static")


class _SameOrigin:
    """Refuses a POST whose Origin header names another origin (browsers send it on every
    cross-site POST); requests without Origin (non-browser clients) pass to the CSRF check."""

    def __init__(self, app: ASGIApp, origin: str):
        self.app = app
        self.origin = origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin")
            if origin is not None and origin.decode("latin-1") != self.origin:
                await Response("origine refusée", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Headers:
    """Security headers on every answer: a strict CSP (the agent is the only other place the
    page may talk to), no sniffing, no referrer to other sites (and the Origin of a form POST stays
    this origin, which "no-referrer" would turn into "null"), HTML never cached."""

    def __init__(self, app: ASGIApp, csp: str):
        self.app = app
        self.csp = csp.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        static = scope["path"].startswith(("/static/", "/appareil/static/"))

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                extra = [(b"content-security-policy", self.csp),
                         (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"same-origin"),
                         (b"cross-origin-opener-policy", b"same-origin")]
                if b"cache-control" not in names and not static:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = headers + [(k, v) for k, v in extra if k not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)



def create_app(service: AuthService, config: PortalConfig, *,
               records: Records | None = None) -> Portal:
    """The portal over `service`, whose verifiers (`capkey.rules.adapters`) must be configured
    with the same web origin as `config.origin` (LOGIN payloads carry it)."""
    records = records if records is not None else Records(config.record_ttl_seconds)
    host = urlsplit(config.origin).netloc

    routes: list[BaseRoute] = [
        *login.ROUTES,
        *operations.ROUTES,
        *admin.ROUTES,
        *login_help.ROUTES,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if config.device_view is not None:
        routes.append(Route("/appareil", lambda r: RedirectResponse("/appareil/", 307)))
        routes.append(Mount("/appareil", app=config.device_view))

    def wrong_host(request: Request) -> Response:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(config.origin + request.url.path + query, status_code=307)

    app = Starlette(routes=routes)
    # what the routes reach (`web.site_of`)
    app.state.site = Site(service, config, records, Throttle(config.login_forms_per_minute))
    app.state.records = records
    app.state.config = config

    csp = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           f"connect-src 'self'{' ' + _origin_of(config.agent_url) if config.agent_url else ''}; "
           "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; "
           "object-src 'none'")
    inner: ASGIApp = _Headers(_SameOrigin(app, config.origin), csp)

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"host", b"").decode("latin-1") != host:
                await wrong_host(Request(scope, receive))(scope, receive, send)
                return
        await inner(scope, receive, send)

    return Portal(asgi, app)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Portal:
    """The ASGI application: host check, security headers and origin check in front of the
    Starlette app (`app`, whose `state` holds the records and the configuration)."""

    def __init__(self, asgi: ASGIApp, app: Starlette):
        self._asgi = asgi
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        await self._asgi(scope, receive, send)
