"""The demo portal: "Accès à l'Espace Client Internet" of the bank's guide, on `AuthService`.

    app = create_app(service, PortalConfig(origin="http://127.0.0.1:8400",
                                           agent_url="http://127.0.0.1:8401",
                                           device_url=sim.url))

Pages (French, the guide's words):

    GET  /connexion?methode=cap|code|certificat   login, one tab per method
    POST /connexion/defi          identifiers -> a login challenge (CAP Respond, certificate)
    POST /connexion/cap           the code read off the CAP reader
    POST /connexion/code          identifiers + confidential code
    POST /connexion/certificat    signature of the LOGIN payload, made by the key via the agent
    GET|POST /code/changer        forced change at first login (R14) and voluntary change
    GET  /espace                  Espace Client: the sensitive operations of the guide
    GET|POST /operations/<slug>   an operation's form -> authorize() (R6)
    GET|POST /operations/<slug>/validation   step-up: CAP Sign/Respond or certificate (R7, R8)
    GET  /operations/<slug>/effectuee        the operation done
    GET|POST /administration/code            principal/admin resets a user's code (R15)
    POST /deconnexion
    /appareil/                    the simulated device's screen and keypad (capkey_dev.devview)

Browser state is one cookie: a random id with an HMAC tag (HttpOnly, SameSite=Strict), naming a
server-side record that holds the CSRF token, the rules session id and what is pending. Every POST
carries the CSRF token; a POST whose Origin header names another site is refused. Every page of the
Espace Client goes through the service, so its inactivity limit (R13) applies; the portal's own
records expire too. Failures are reported with one message whatever failed (R2).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..catalog.operations import SENSITIVE, OperationKind
from ..cert import payload as _payload
from ..emv import verifier as _cap
from ..rules import (
    AuthLevel,
    AuthService,
    Batch,
    CertEvidence,
    InvalidTransaction,
    LoginChallenge,
    LoginRequest,
    Method,
    OperationRef,
    Outcome,
    Payment,
    Role,
    Session,
    StepUpChallenge,
)
from ..rules.adapters import canonical_payload
from ..rules.codes import WeakCode, check_policy
from .render import Markup, esc, join, render, tag

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
COOKIE = "capkey_portal"
_MAX_FORM = 16 * 1024
_IDENT = re.compile(r"^[A-Za-z0-9_-]{1,12}$")
_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

#: One message for every failed authentication, whatever failed (R2).
FAILED = ("Authentification refusée. Vérifiez les informations saisies et recommencez ; "
          "après plusieurs échecs l'accès est bloqué.")
EXPIRED = "Votre session a expiré après une période d'inactivité. Reconnectez-vous."
SCA_NEEDED = ("Une authentification forte est nécessaire lors de votre premier accès puis une fois "
              "tous les 90 jours : connectez-vous avec le lecteur CAP ou votre certificat numérique.")

METHOD_TABS = (("cap", "Lecteur CAP"), ("code", "Code confidentiel"),
               ("certificat", "Certificat numérique"))
METHOD_NAMES = {Method.CAP: "lecteur CAP", Method.CODE: "code confidentiel",
                Method.CERT: "certificat numérique"}
ROLE_NAMES = {Role.PRINCIPAL: "Utilisateur principal", Role.ADMIN: "Administrateur",
              Role.USER: "Utilisateur"}
POLICY_MESSAGES = {
    "too_short": "Le nouveau code doit compter au moins 8 caractères.",
    "too_long": "Le nouveau code doit compter au plus 64 caractères.",
    "bad_characters": "Le nouveau code contient des caractères non autorisés ou des espaces en "
                      "début ou fin.",
    "trivial": "Le nouveau code est trop simple (suite, répétition ou mot courant).",
    "same_as_old": "Le nouveau code doit être différent de l'ancien.",
}


# ---------------------------------------------------------------------------------------------
# Configuration


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
        _payload.check_origin(self.origin)  # the canonical form a LOGIN payload carries
        if self.agent_url is not None and not self.agent_url.startswith(("http://", "https://")):
            raise ValueError("agent_url must be an http(s) URL")
        if len(self.secret) < 16:
            raise ValueError("secret must be at least 16 bytes")

    @property
    def secure(self) -> bool:
        return self.origin.startswith("https://")


# ---------------------------------------------------------------------------------------------
# Server-side records behind the cookie


@dataclass
class PendingLogin:
    method: str  # "cap" | "certificat"
    subscription: str
    user: str
    challenge: LoginChallenge
    payload: bytes | None = None  # certificate: the LOGIN payload to sign


@dataclass
class PendingOperation:
    slug: str
    operation: str
    summary: list[tuple[str, str]]
    transaction: Payment | Batch | None = None
    operation_id: str | None = None
    step_up: StepUpChallenge | None = None
    error: str = ""


@dataclass
class WebSession:
    id: str
    csrf: str
    touched: float
    auth: Session | None = None
    login: PendingLogin | None = None
    operation: PendingOperation | None = None
    done: dict[str, Any] | None = None
    history: list[str] = field(default_factory=list)
    notice: str = ""
    error: str = ""
    form: dict[str, str] = field(default_factory=dict)


class Records:
    """The portal's server-side records, by id, expiring after `ttl` seconds without use."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic,
                 limit: int = 10_000):
        self._ttl = ttl
        self._clock = clock
        self._limit = limit
        self._items: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def new(self) -> WebSession:
        now = self._clock()
        web = WebSession(secrets.token_urlsafe(24), secrets.token_urlsafe(24), now)
        with self._lock:
            for key in [k for k, v in self._items.items() if now - v.touched > self._ttl]:
                del self._items[key]
            if len(self._items) >= self._limit:  # the least recently used go first
                for key, _ in sorted(self._items.items(), key=lambda kv: kv[1].touched)[
                        : len(self._items) - self._limit + 1]:
                    del self._items[key]
            self._items[web.id] = web
        return web

    def get(self, sid: str) -> WebSession | None:
        now = self._clock()
        with self._lock:
            web = self._items.get(sid)
            if web is None:
                return None
            if now - web.touched > self._ttl:
                del self._items[sid]
                return None
            web.touched = now
            return web

    def drop(self, sid: str) -> None:
        with self._lock:
            self._items.pop(sid, None)

    def __len__(self) -> int:
        return len(self._items)


# ---------------------------------------------------------------------------------------------
# The sensitive operations of the guide


OPERATIONS = {k.slug: k for k in SENSITIVE}

RIGHTS = {"consultation": "Consultation des comptes", "saisie": "Saisie des virements",
          "signature": "Signature des remises"}

DEMO_BATCH = ("FR76 3000 6000 0112 3456 7890 189 ; 1 250,00\n"
              "DE89 3704 0044 0532 0130 00 ; 310,50\n"
              "FR76 3000 6000 0112 3456 7890 189 ; 89,90")


class FormError(ValueError):
    """A field the person typed is not acceptable (the message is shown as is)."""


def parse_amount(text: str) -> int:
    """'1 250,50' / '1250.5' / '12' (euros) -> minor units."""
    t = text.replace("\u00a0", "").replace(" ", "").replace("€", "").strip()
    m = re.fullmatch(r"(\d{1,10})(?:[.,](\d{1,2}))?", t)
    if not m:
        raise FormError("Montant invalide : par exemple 125,00.")
    minor = int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))
    if minor <= 0:
        raise FormError("Le montant doit être positif.")
    return minor


def _iban(text: str) -> str:
    value = text.replace(" ", "").upper()
    try:
        return _payload.check_iban(value)
    except _payload.PayloadError:
        raise FormError("IBAN invalide : vérifiez-le (clé de contrôle).") from None


def _payee_name(text: str) -> str:
    name = " ".join(text.split())
    try:
        return _payload.check_payee_name(name)
    except _payload.PayloadError:
        raise FormError("Nom du bénéficiaire : lettres non accentuées, chiffres et / - ? : ( ) . , "
                        "' + (70 caractères au plus).") from None


def _amount_text(minor: int, currency: str) -> str:
    return f"{_payload.format_amount(minor, currency)} {currency}"


def build_operation(kind: OperationKind, form: dict[str, str], currency: str,
                    subscription: str) -> PendingOperation:
    """The server's record of the operation the person asked for (raises FormError)."""
    op_id = lambda prefix: f"{prefix}-{secrets.token_hex(4).upper()}"  # noqa: E731
    if kind.slug == "habilitations":
        user = form.get("utilisateur", "").strip()
        if not _IDENT.match(user):
            raise FormError("Numéro Utilisateur invalide.")
        right = form.get("droit", "")
        if right not in RIGHTS:
            raise FormError("Choisissez un droit.")
        return PendingOperation(kind.slug, kind.name, [
            ("Utilisateur", f"{subscription}/{user}"), ("Droit accordé", RIGHTS[right])],
            operation_id=op_id("HAB"))
    if kind.slug == "destinataires":
        name, iban = _payee_name(form.get("nom", "")), _iban(form.get("iban", ""))
        return PendingOperation(kind.slug, kind.name, [
            ("Nouveau destinataire", name), ("IBAN", _payload.format_iban(iban))],
            operation_id=op_id("BEN"))
    if kind.slug == "chequiers":
        count = form.get("nombre", "")
        if count not in {"1", "2", "3"}:
            raise FormError("Choisissez de 1 à 3 chéquiers.")
        return PendingOperation(kind.slug, kind.name, [
            ("Chéquiers commandés", count), ("Envoi", "à l'adresse de l'abonnement")],
            operation_id=op_id("CHQ"))
    if kind.slug == "virement-instantane":
        amount = parse_amount(form.get("montant", ""))
        iban, name = _iban(form.get("iban", "")), _payee_name(form.get("nom", ""))
        try:
            payment = Payment(amount, currency, iban, name)
        except InvalidTransaction:
            raise FormError("Virement invalide.") from None
        return PendingOperation(kind.slug, kind.name, [
            ("Montant", _amount_text(amount, currency)), ("Bénéficiaire", name),
            ("IBAN du bénéficiaire", _payload.format_iban(iban))],
            transaction=payment)
    if kind.slug == "remises":
        payments = []
        for n, line in enumerate(form.get("ordres", "").splitlines(), 1):
            if not line.strip():
                continue
            iban_text, sep, amount_text = line.partition(";")
            if not sep:
                raise FormError(f"Ordre {n} : « IBAN ; montant » attendu.")
            payments.append(Payment(parse_amount(amount_text), currency, _iban(iban_text),
                                    "ORDRE " + str(n)))
        if not 1 <= len(payments) <= 24:
            raise FormError("Une remise compte de 1 à 24 ordres.")
        batch = Batch.from_payments(payments)
        return PendingOperation(kind.slug, kind.name, [
            ("Nombre d'ordres", str(batch.count)),
            ("Montant total", _amount_text(batch.total_minor, currency)),
            ("Bénéficiaires", ", ".join(_payload.format_iban(p) for p in sorted(set(batch.payees))))],
            transaction=batch)
    raise FormError("Opération inconnue.")


def operation_fields(kind: OperationKind, form: dict[str, str]) -> Markup:
    """The form of an operation, refilled with what the person typed."""

    def field_(label: str, name: str, value: str = "", **attrs: Any) -> Markup:
        return join([tag("label", label, for_=name),
                     Markup(f'<input id="{esc(name)}" name="{esc(name)}" value="{esc(value)}"'
                            + "".join(f' {k.replace("_", "-")}="{esc(v)}"'
                                      for k, v in attrs.items()) + " required>")])

    def select(label: str, name: str, options: dict[str, str]) -> Markup:
        chosen = form.get(name, "")
        opts = join(tag("option", text, value=value, selected=value == chosen)
                    for value, text in options.items())
        return join([tag("label", label, for_=name), tag("select", opts, id=name, name=name)])

    if kind.slug == "habilitations":
        return join([field_("Numéro Utilisateur concerné", "utilisateur",
                            form.get("utilisateur", "0002"), maxlength="12"),
                     select("Droit à accorder", "droit", RIGHTS)])
    if kind.slug == "destinataires":
        return join([field_("Nom du destinataire", "nom", form.get("nom", "ATELIER DU PORT"),
                            maxlength="70"),
                     field_("IBAN", "iban", form.get("iban", "FR76 3000 6000 0112 3456 7890 189"),
                            maxlength="42", spellcheck="false")])
    if kind.slug == "chequiers":
        return select("Nombre de chéquiers", "nombre", {"1": "1", "2": "2", "3": "3"})
    if kind.slug == "virement-instantane":
        return join([field_("Montant (EUR)", "montant", form.get("montant", "125,00"),
                            inputmode="decimal", maxlength="16"),
                     field_("IBAN du bénéficiaire", "iban",
                            form.get("iban", "FR76 3000 6000 0112 3456 7890 189"),
                            maxlength="42", spellcheck="false"),
                     field_("Nom du bénéficiaire", "nom", form.get("nom", "ATELIER DU PORT"),
                            maxlength="70")])
    if kind.slug == "remises":
        return join([tag("label", "Ordres de la remise : un par ligne, « IBAN ; montant »",
                         for_="ordres"),
                     tag("textarea", form.get("ordres", DEMO_BATCH), id="ordres", name="ordres",
                         rows="5", spellcheck="false")])
    return Markup("")


# ---------------------------------------------------------------------------------------------
# Helpers


def _group(digits: str) -> str:
    return " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))


def _local_time(when: datetime | None) -> str:
    if when is None:
        return "-"
    return when.astimezone(UTC).strftime("%H:%M:%S UTC")


def _duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    if minutes and not rest:
        return f"{minutes} minute{'s' if minutes > 1 else ''}"
    return f"{seconds} secondes"


def _b64decode(value: str, limit: int) -> bytes | None:
    value = value.strip()
    if not value or len(value) > limit * 4 // 3 + 4 or not _B64.match(value):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def signed_payload(form: dict[str, str]) -> bytes | None:
    """The payload bytes the browser had signed, if it sent them back (the verifier compares them
    with the bank's own record; absent: it verifies over the record)."""
    return _b64decode(form.get("payload", ""), _payload.MAX_PAYLOAD) if form.get("payload") else None


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


# ---------------------------------------------------------------------------------------------
# The application


def create_app(service: AuthService, config: PortalConfig, *,
               records: Records | None = None) -> Portal:
    """The portal over `service`, whose verifiers (`capkey.rules.adapters`) must be configured
    with the same web origin as `config.origin` (LOGIN payloads carry it)."""
    records = records if records is not None else Records(config.record_ttl_seconds)
    host = urlsplit(config.origin).netloc

    # -- cookie and CSRF ----------------------------------------------------------------------

    def _tag(sid: str) -> str:
        return hmac.new(config.secret, sid.encode(), hashlib.sha256).hexdigest()[:32]

    def web_of(request: Request) -> WebSession | None:
        raw = request.cookies.get(COOKIE, "")
        sid, _, mac = raw.partition(".")
        if not sid or not hmac.compare_digest(mac.encode(), _tag(sid).encode()):
            return None
        return records.get(sid)

    def set_cookie(response: Response, web: WebSession) -> Response:
        response.set_cookie(COOKIE, f"{web.id}.{_tag(web.id)}", httponly=True, samesite="strict",
                            secure=config.secure, path="/")
        return response

    def page(web: WebSession, title: str, body: Markup, *, device: bool = False,
             status: int = 200) -> Response:
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
        aside = render("device_aside.html") if device and config.device_view is not None else Markup("")
        html = render("base.html", title=title, nav=nav, notice=notice, body=body, aside=aside)
        return set_cookie(HTMLResponse(html, status_code=status), web)

    def redirect(web: WebSession, url: str) -> Response:
        return set_cookie(RedirectResponse(url, status_code=303), web)

    def posted(handler: Callable[[Request, WebSession, dict[str, str]], Awaitable[Response]]
               ) -> Callable[[Request], Awaitable[Response]]:
        """A POST route: the handler gets the caller's record and form; a malformed form or a
        wrong CSRF token gets 403 before it runs."""

        async def route(request: Request) -> Response:
            web = session_of(request)
            form = await form_of(request, web)
            if form is None:
                return forbidden(web)
            return await handler(request, web, form)

        return route

    async def form_of(request: Request, web: WebSession) -> dict[str, str] | None:
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

    def forbidden(web: WebSession) -> Response:
        web.notice = "Formulaire expiré ou invalide : recommencez."
        return redirect(web, "/connexion" if web.auth is None else "/espace")

    def session_of(request: Request) -> WebSession:
        return web_of(request) or records.new()

    def login_fresh(old: WebSession, auth: Session) -> WebSession:
        """A new record (and cookie) at login: nothing set before authentication carries over."""
        records.drop(old.id)
        web = records.new()
        web.auth = auth
        return web

    def expire(web: WebSession, message: str = EXPIRED) -> Response:
        records.drop(web.id)
        fresh = records.new()
        fresh.notice = message
        return redirect(fresh, "/connexion")

    async def call(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await run_in_threadpool(fn, *args, **kw)

    def credentials(auth: Session) -> tuple[bool, bool]:
        """Whether the user has an active CAP card / certificate (which step-up tabs to show)."""
        state = service.directory.user_state(auth.subscription, auth.user_no)
        return (any(active for *_, active in state.cards),
                any(active for *_, active in state.certificates))

    # -- login --------------------------------------------------------------------------------

    async def home(request: Request) -> Response:
        web = session_of(request)
        return redirect(web, "/espace" if web.auth is not None else "/connexion")

    def tabs(active: str, base: str, available: tuple[tuple[str, str], ...]) -> Markup:
        return join(tag("a", label, href=f"{base}?methode={key}", class_="tab active"
                        if key == active else "tab", id=f"tab-{key}",
                        aria_current="page" if key == active else None)
                    for key, label in available)

    def login_methods() -> tuple[tuple[str, str], ...]:
        return tuple((k, v) for k, v in METHOD_TABS
                     if k != "certificat" or config.agent_url is not None)

    async def login_page(request: Request) -> Response:
        web = session_of(request)
        if web.auth is not None:
            return redirect(web, "/espace")
        method = request.query_params.get("methode", "cap")
        if method not in dict(login_methods()):
            method = "cap"
        pending = web.login
        if request.query_params.get("autre") == "1" or (
                pending is not None and (pending.method != method
                                         or pending.challenge.expires_at <= service.clock.now())):
            web.login = pending = None
        error = tag("p", web.error, class_="error", role="alert") if web.error else Markup("")
        web.error = ""
        sub, user = web.form.get("identifiant", ""), web.form.get("utilisateur", "")
        if pending is not None and method == "cap":
            panel = render("login_cap.html", subscription=pending.subscription, user=pending.user,
                           csrf=web.csrf, challenge_grouped=_group(pending.challenge.cap_challenge),
                           expires=_local_time(pending.challenge.expires_at))
        elif pending is not None and method == "certificat":
            assert pending.payload is not None
            signer = render("signer.html", agent=config.agent_url, form="form-cert",
                            payload=base64.b64encode(pending.payload).decode(),
                            lines="\n".join(_payload.parse(pending.payload).display_lines()))
            panel = render("login_cert.html", subscription=pending.subscription,
                           user=pending.user, csrf=web.csrf, signer=signer,
                           expires=_local_time(pending.challenge.expires_at))
        elif method == "code":
            third = Markup('<li><label for="code">Saisissez votre code confidentiel</label>'
                           '<input type="password" id="code" name="code" required maxlength="64" '
                           'autocomplete="current-password"></li>')
            panel = join([render("login_ids.html", action="/connexion/code", method=method,
                                 csrf=web.csrf, subscription=sub, user=user, third=third),
                          Markup('<p class="small" id="code-nb">NB : dans le cas où vous avez '
                                 'oublié votre code confidentiel, l\'Utilisateur principal ou '
                                 'l\'Administrateur de votre abonnement peut vous générer un '
                                 'nouveau code confidentiel. À la première connexion, il vous '
                                 'sera demandé de modifier ce code confidentiel.</p>')])
        else:
            third = Markup(
                '<li>Tapez le code généré par le lecteur CAP : après « Valider », la page vous '
                'donne le code défi à entrer dans le lecteur.</li>' if method == "cap" else
                '<li>Branchez votre clé USB sur votre ordinateur, puis « Valider » : une fenêtre '
                'vous proposera de sélectionner votre certificat.</li>')
            panel = render("login_ids.html", action=f"/connexion/defi?methode={method}",
                           method=method, csrf=web.csrf, subscription=sub, user=user,
                           third=third)
        body = render("login.html", tabs=tabs(method, "/connexion", login_methods()),
                      method=method, panel=join([error, panel]))
        return page(web, "Connexion", body, device=method != "code")

    def fail(web: WebSession, method: str, message: str = FAILED) -> Response:
        web.login = None
        web.error = message
        return redirect(web, f"/connexion?methode={method}")

    async def login_outcome(web: WebSession, method: str, result: Any) -> Response:
        outcome = result.outcome
        if outcome in (Outcome.OK, Outcome.CODE_CHANGE_REQUIRED) and result.session is not None:
            fresh = login_fresh(web, result.session)
            if outcome is Outcome.CODE_CHANGE_REQUIRED:
                return redirect(fresh, "/code/changer")
            return redirect(fresh, "/espace")
        if outcome is Outcome.SCA_REQUIRED:
            return fail(web, "cap", SCA_NEEDED)
        return fail(web, method)  # AUTH_FAILED, INVALID_REQUEST, anything else: one message

    @posted
    async def login_challenge(request: Request, web: WebSession, form: dict[str, str]) -> Response:
        method = request.query_params.get("methode", "")
        if method not in ("cap", "certificat"):
            return forbidden(web)
        if method == "certificat" and config.agent_url is None:
            return forbidden(web)
        sub, user = form.get("identifiant", "").strip(), form.get("utilisateur", "").strip()
        web.form = {"identifiant": sub, "utilisateur": user}
        challenge = await call(service.issue_login_challenge, sub, user)
        if challenge is None:
            web.error = "Identifiant client et numéro Utilisateur : lettres et chiffres, 12 au plus."
            return redirect(web, f"/connexion?methode={method}")
        pending = PendingLogin(method, sub, user, challenge)
        if method == "certificat":
            try:
                pending.payload = bytes(canonical_payload(
                    challenge.nonce, None, sub, user, config.origin).to_bytes())
            except _payload.PayloadError:
                web.error = "Identifiant client ou numéro Utilisateur mal formé."
                return redirect(web, f"/connexion?methode={method}")
        web.login = pending
        return redirect(web, f"/connexion?methode={method}")

    @posted
    async def login_cap(request: Request, web: WebSession, form: dict[str, str]) -> Response:
        pending, web.login = web.login, None
        if pending is None or pending.method != "cap":
            return fail(web, "cap", "Le code défi a expiré : recommencez.")
        code = form.get("cap_code", "").replace(" ", "")
        result = await call(service.login, LoginRequest(
            pending.subscription, pending.user, cap_code=code,
            challenge_id=pending.challenge.id))
        return await login_outcome(web, "cap", result)

    @posted
    async def login_code(request: Request, web: WebSession, form: dict[str, str]) -> Response:
        sub, user = form.get("identifiant", "").strip(), form.get("utilisateur", "").strip()
        web.form = {"identifiant": sub, "utilisateur": user}
        result = await call(service.login, LoginRequest(sub, user, code=form.get("code", "")))
        return await login_outcome(web, "code", result)

    @posted
    async def login_cert(request: Request, web: WebSession, form: dict[str, str]) -> Response:
        pending, web.login = web.login, None
        if pending is None or pending.method != "certificat":
            return fail(web, "certificat", "Le défi a expiré : recommencez.")
        signature = _b64decode(form.get("signature", ""), 1024)
        certificate = _b64decode(form.get("certificate", ""), 16384)
        if signature is None or certificate is None:
            return fail(web, "certificat")
        result = await call(service.login, LoginRequest(
            pending.subscription, pending.user,
            cert=CertEvidence(certificate, signature, signed_payload(form)),
            challenge_id=pending.challenge.id, client_claims={"middleware": "capkey-agent"}))
        return await login_outcome(web, "certificat", result)

    @posted
    async def logout(request: Request, web: WebSession, form: dict[str, str]) -> Response:
        if web.auth is not None:  # the bank's session ends now, not at the inactivity limit
            await call(service.logout, web.auth)
        return expire(web, "Vous êtes déconnecté.")

    # -- authenticated pages -------------------------------------------------------------------

    async def gate(request: Request, operation: str = "VIEW_ACCOUNTS"
                   ) -> tuple[WebSession, Response | None]:
        """The record of a signed-in person whose rules session is still open: every page of the
        Espace Client asks the service (an ordinary operation), which applies the inactivity
        limit (R13) and the forced code change (R14), and keeps the session alive."""
        web = session_of(request)
        if web.auth is None:
            web.notice = web.notice or "Connectez-vous pour accéder à votre Espace Client."
            return web, redirect(web, "/connexion")
        outcome = await call(service.authorize, web.auth, operation)
        return web, outcome_redirect(web, outcome)

    def outcome_redirect(web: WebSession, outcome: Outcome) -> Response | None:
        if outcome is Outcome.SESSION_EXPIRED:
            return expire(web)
        if outcome is Outcome.CODE_CHANGE_REQUIRED:
            web.notice = "Modifiez d'abord votre code confidentiel."
            return redirect(web, "/code/changer")
        return None

    async def espace(request: Request) -> Response:
        web, early = await gate(request)
        if early:
            return early
        auth = web.auth
        assert auth is not None
        ops = join(tag("li", tag("a", k.title, href=f"/operations/{k.slug}", id=f"op-{k.slug}"))
                   for k in OPERATIONS.values())
        admin = (render("admin_box.html") if auth.role in (Role.PRINCIPAL, Role.ADMIN)
                 else Markup(""))
        history = (tag("ul", join(tag("li", h) for h in web.history)) if web.history
                   else tag("p", "Aucune opération sensible dans cette session.", class_="small"))
        strong = auth.auth_level is AuthLevel.SCA
        body = render("espace.html", subscription=auth.subscription, user=auth.user_no,
                      role=ROLE_NAMES.get(auth.role, auth.role), method=METHOD_NAMES[auth.method],
                      level="authentification forte" if strong else "authentification simple",
                      level_class="strong" if strong else "simple", operations=ops, admin=admin,
                      history=history, idle=_duration(service.config.inactivity_seconds),
                      sca_at=auth.sca_at.astimezone(UTC).strftime("%d/%m/%Y %H:%M UTC")
                      if auth.sca_at else "aucune")
        return page(web, "Espace Client", body)

    async def change_code_page(request: Request) -> Response:
        web, early = await gate(request, "CHANGE_CODE")
        if early:
            return early
        assert web.auth is not None
        error = Markup("")
        if request.method == "POST":
            form = await form_of(request, web)
            if form is None:
                return forbidden(web)
            old, new, again = form.get("actuel", ""), form.get("nouveau", ""), form.get(
                "confirmation", "")
            message = ""
            if new != again:
                message = "Les deux saisies du nouveau code sont différentes."
            else:
                try:
                    check_policy(new, old=old)
                except WeakCode as exc:
                    message = POLICY_MESSAGES.get(exc.reason, "Nouveau code refusé.")
                except TypeError:
                    message = "Nouveau code refusé."
            if not message:
                outcome = await call(service.change_code, web.auth, old, new)
                if outcome is Outcome.OK:
                    web.auth = dataclasses.replace(web.auth, must_change=False)
                    web.notice = "Votre code confidentiel a été modifié."
                    return redirect(web, "/espace")
                if outcome is Outcome.SESSION_EXPIRED:
                    return expire(web)
                message = ("Nouveau code refusé." if outcome is Outcome.INVALID_REQUEST
                           else FAILED)
            error = tag("p", message, class_="error", role="alert")
        reason = ("À la première connexion, il vous est demandé de modifier ce code confidentiel."
                  if web.auth.must_change else "Choisissez un nouveau code confidentiel.")
        body = render("change_code.html", reason=reason, error=error, csrf=web.csrf)
        return page(web, "Code confidentiel", body)

    # -- sensitive operations -----------------------------------------------------------------

    def kind_of(request: Request) -> OperationKind | None:
        return OPERATIONS.get(request.path_params["slug"])

    async def operation_page(request: Request) -> Response:
        web, early = await gate(request)
        if early:
            return early
        auth = web.auth
        assert auth is not None
        kind = kind_of(request)
        if kind is None:
            return redirect(web, "/espace")
        form: dict[str, str] = {}
        error = Markup("")
        if request.method == "POST":
            posted = await form_of(request, web)
            if posted is None:
                return forbidden(web)
            form = posted
            try:
                pending = build_operation(kind, form, config.currency, auth.subscription)
            except (FormError, InvalidTransaction) as exc:
                error = tag("p", str(exc) if isinstance(exc, FormError) else "Saisie invalide.",
                            class_="error", role="alert")
            else:
                outcome = await call(service.authorize, auth, pending.operation,
                                     transaction=pending.transaction,
                                     operation_id=pending.operation_id)
                if (r := outcome_redirect(web, outcome)) is not None:
                    return r
                if outcome is Outcome.OK:
                    return finish(web, pending, "déjà autorisée")
                if outcome is Outcome.STEP_UP_REQUIRED:
                    web.operation = pending
                    return redirect(web, f"/operations/{kind.slug}/validation")
                error = tag("p", "Opération refusée.", class_="error", role="alert")
        body = render("operation.html", title=kind.title, slug=kind.slug, csrf=web.csrf,
                      fields=operation_fields(kind, form), error=error)
        return page(web, kind.title, body)

    def finish(web: WebSession, pending: PendingOperation, how: str) -> Response:
        web.operation = None
        when = datetime.now(UTC)
        kind = OPERATIONS[pending.slug]
        web.history.append(f"{_local_time(when)} — {kind.title} : "
                           + ", ".join(f"{k} {v}" for k, v in pending.summary))
        web.done = {"slug": pending.slug, "summary": pending.summary, "how": how, "when": when}
        return redirect(web, f"/operations/{pending.slug}/effectuee")

    def cap_steps(auth: Session, pending: PendingOperation, ch: StepUpChallenge) -> Markup:
        challenge = ch.cap_challenge or ""
        first = ("Après affichage du message « Choisir la fonction », appuyez sur la touche "
                 "<kbd>SIGN</kbd>.")
        steps: list[Markup] = [Markup("<li>Insérez la carte dans le lecteur CAP.</li>"),
                               Markup(f"<li>{first}</li>")]
        if ch.cap_mode == "sign":
            assert ch.amount_minor is not None and ch.currency is not None
            steps.append(Markup("<li>Choisissez « Signature » (touche <kbd>2</kbd>).</li>"))
            record = pending.transaction
            split = ""
            if isinstance(record, Payment | Batch) and ch.nonce is not None:
                split = _cap.transaction_challenge(canonical_payload(
                    ch.nonce, record, auth.subscription, auth.user_no, config.origin))
            if split == challenge and isinstance(record, Payment):
                # docs/cap.md §5.4: the last 4 digits come from the person's own record of the
                # payee (invoice, list of payees), not from this page.
                steps.append(Markup(
                    f"<li>Code défi : tapez le code de contrôle <strong class=\"challenge\" "
                    f"id=\"stepup-control\">{esc(challenge[:4])}</strong> puis les "
                    f"<strong>4 derniers chiffres de l'IBAN du bénéficiaire</strong>, relevés sur "
                    f"votre propre document (facture, liste de bénéficiaires), puis "
                    f"<kbd>OK</kbd>.</li>"))
            elif split == challenge and isinstance(record, Batch):
                steps.append(Markup(
                    f"<li>Code défi : tapez le code de contrôle <strong class=\"challenge\" "
                    f"id=\"stepup-control\">{esc(challenge[:4])}</strong> puis le nombre "
                    f"d'ordres de la remise sur 4 chiffres (<strong>{esc(challenge[4:])}</strong>), "
                    f"puis <kbd>OK</kbd>.</li>"))
            else:
                steps.append(Markup(
                    f"<li>Tapez le code défi <strong class=\"challenge\" id=\"stepup-challenge\">"
                    f"{esc(_group(challenge))}</strong> puis <kbd>OK</kbd>.</li>"))
            amount = _payload.format_amount(ch.amount_minor, ch.currency)
            steps.append(Markup(
                f"<li>Tapez le montant <strong class=\"amount\" id=\"stepup-amount\">"
                f"{esc(amount)}</strong> {esc(ch.currency)} (les chiffres sans la virgule : "
                f"<kbd>{esc(str(ch.amount_minor))}</kbd>) puis <kbd>OK</kbd>.</li>"))
        else:
            steps.append(Markup("<li>Choisissez « Réponse » (touche <kbd>1</kbd>).</li>"))
            steps.append(Markup(
                f"<li>Tapez le code défi <strong class=\"challenge\" id=\"stepup-challenge\">"
                f"{esc(_group(challenge))}</strong> puis <kbd>OK</kbd>.</li>"))
        steps.append(Markup("<li>Entrez le code PIN de la carte puis <kbd>OK</kbd>, et recopiez "
                            "ci-dessous le code affiché par le lecteur.</li>"))
        return join(steps)

    def signing_payload(auth: Session, pending: PendingOperation, ch: StepUpChallenge) -> bytes:
        """The canonical payload the key signs for this operation: the bank's own record (the
        same builder its signature verifier uses)."""
        assert ch.nonce is not None
        record = (pending.transaction if pending.transaction is not None
                  else OperationRef(pending.operation, pending.operation_id or ""))
        return bytes(canonical_payload(ch.nonce, record, auth.subscription, auth.user_no,
                                       config.origin).to_bytes())

    async def step_up_page(request: Request) -> Response:
        web, early = await gate(request)
        if early:
            return early
        auth = web.auth
        assert auth is not None
        kind = kind_of(request)
        pending = web.operation
        if kind is None or pending is None or pending.slug != kind.slug:
            return redirect(web, "/espace")
        has_cap, has_cert = await call(credentials, auth)
        available = tuple((k, v) for k, v in (("cap", "Lecteur CAP"),
                                              ("certificat", "Certificat numérique"))
                          if (k == "cap" and has_cap)
                          or (k == "certificat" and has_cert and config.agent_url))
        if not available:
            web.operation = None
            web.notice = ("Aucun moyen d'authentification forte n'est rattaché à votre accès : "
                          "contactez votre banque.")
            return redirect(web, "/espace")
        method = request.query_params.get("methode", available[0][0])
        if method not in dict(available):
            method = available[0][0]
        ch = pending.step_up
        if ch is None or ch.expires_at is None or ch.expires_at <= service.clock.now():
            ch = await call(service.begin_step_up, auth, pending.operation,
                            transaction=pending.transaction, operation_id=pending.operation_id)
            if (r := outcome_redirect(web, ch.outcome)) is not None:
                return r
            if ch.outcome is not Outcome.OK:
                web.operation = None
                web.notice = "Opération refusée."
                return redirect(web, "/espace")
            pending.step_up = ch
        slug = kind.slug
        if method == "cap":
            panel = render("step_up_cap.html", slug=slug, csrf=web.csrf,
                           steps=cap_steps(auth, pending, ch))
        else:
            data = signing_payload(auth, pending, ch)
            signer = render("signer.html", agent=config.agent_url, form="form-stepup-cert",
                            payload=base64.b64encode(data).decode(),
                            lines="\n".join(_payload.parse(data).display_lines()))
            panel = render("step_up_cert.html", slug=slug, csrf=web.csrf, signer=signer)
        error = (tag("p", pending.error, class_="error", role="alert") if pending.error
                 else Markup(""))
        pending.error = ""
        summary = join(join([tag("dt", k), tag("dd", v)]) for k, v in pending.summary)
        body = render("step_up.html", title=kind.title, summary=summary, error=error,
                      tabs=tabs(method, f"/operations/{slug}/validation", available),
                      method=method, panel=panel, expires=_local_time(ch.expires_at))
        return page(web, "Authentification renforcée", body, device=True)

    async def step_up_submit(request: Request) -> Response:
        web, early = await gate(request)
        if early:
            return early
        auth = web.auth
        assert auth is not None
        form = await form_of(request, web)
        if form is None:
            return forbidden(web)
        kind = kind_of(request)
        pending = web.operation
        if kind is None or pending is None or pending.slug != kind.slug:
            return redirect(web, "/espace")
        ch, pending.step_up = pending.step_up, None  # consumed by any attempt (R9)
        method = form.get("methode", "")
        back = f"/operations/{kind.slug}/validation?methode={method}"
        if ch is None or ch.id is None:
            pending.error = "Le défi a expiré : un nouveau défi vous est proposé."
            return redirect(web, back)
        evidence: dict[str, Any] = {}
        if method == "cap":
            evidence["cap_code"] = form.get("cap_code", "").replace(" ", "")
        elif method == "certificat":
            signature = _b64decode(form.get("signature", ""), 1024)
            certificate = _b64decode(form.get("certificate", ""), 16384)
            if signature is None or certificate is None:
                pending.error = FAILED
                return redirect(web, back)
            evidence["cert"] = CertEvidence(certificate, signature, signed_payload(form))
        else:
            return forbidden(web)
        outcome = await call(service.complete_step_up, auth, ch.id,
                             transaction=pending.transaction, operation_id=pending.operation_id,
                             **evidence)
        if (r := outcome_redirect(web, outcome)) is not None:
            return r
        if outcome is not Outcome.OK:
            pending.error = FAILED
            return redirect(web, back)
        outcome = await call(service.authorize, auth, pending.operation,
                             transaction=pending.transaction, operation_id=pending.operation_id)
        if (r := outcome_redirect(web, outcome)) is not None:
            return r
        if outcome is not Outcome.OK:
            pending.error = "Opération refusée."
            return redirect(web, back)
        return finish(web, pending, "lecteur CAP" if method == "cap" else "certificat numérique")

    async def done_page(request: Request) -> Response:
        web, early = await gate(request)
        if early:
            return early
        kind = kind_of(request)
        done = web.done
        if kind is None or done is None or done["slug"] != kind.slug:
            return redirect(web, "/espace")
        summary = join(join([tag("dt", k), tag("dd", v)]) for k, v in done["summary"])
        body = render("done.html", title=kind.title, summary=summary, method=done["how"],
                      when=done["when"].strftime("%d/%m/%Y à %H:%M:%S UTC"))
        return page(web, "Opération effectuée", body)

    # -- administration (R15) ------------------------------------------------------------------

    async def reset_page(request: Request) -> Response:
        web, early = await gate(request)
        if early:
            return early
        auth = web.auth
        assert auth is not None
        if auth.role not in (Role.PRINCIPAL, Role.ADMIN):
            web.notice = ("Action réservée à l'Utilisateur principal ou à un Administrateur de "
                          "l'abonnement.")
            return redirect(web, "/espace")
        result = Markup("")
        if request.method == "POST":
            form = await form_of(request, web)
            if form is None:
                return forbidden(web)
            target = form.get("utilisateur", "").strip()
            if target == auth.user_no:
                answer = None
                result = tag("p", "Pour votre propre code, utilisez « Modifier mon code ».",
                             class_="error", role="alert")
            else:
                answer = await call(service.reset_code, auth, auth.subscription, target)
            if answer is not None:
                if (r := outcome_redirect(web, answer.outcome)) is not None:
                    return r
                if answer.outcome is Outcome.OK and answer.code:
                    result = Markup(
                        f'<div class="one-time" id="one-time-code" role="status"><p>Nouveau code '
                        f'confidentiel de l\'utilisateur <strong>{esc(target)}</strong> (affiché '
                        f'une seule fois, à lui remettre) :</p><p class="code">{esc(answer.code)}'
                        f'</p><p class="small">Il devra le modifier à sa première connexion.</p>'
                        f'</div>')
                else:
                    message = {
                        Outcome.SCA_REQUIRED: "Cette action demande une session ouverte par "
                                              "authentification forte (lecteur CAP ou "
                                              "certificat).",
                        Outcome.FORBIDDEN: "Action réservée à l'Utilisateur principal ou à un "
                                           "Administrateur de l'abonnement.",
                    }.get(answer.outcome, "Aucun utilisateur actif de ce numéro dans votre "
                                          "abonnement.")
                    result = tag("p", message, class_="error", role="alert")
        body = render("reset_code.html", role=ROLE_NAMES.get(auth.role, ""),
                      subscription=auth.subscription, result=result, csrf=web.csrf)
        return page(web, "Nouveau code confidentiel", body)

    # -- assembly ------------------------------------------------------------------------------

    routes = [
        Route("/", home),
        Route("/connexion", login_page),
        Route("/connexion/defi", login_challenge, methods=["POST"]),
        Route("/connexion/cap", login_cap, methods=["POST"]),
        Route("/connexion/code", login_code, methods=["POST"]),
        Route("/connexion/certificat", login_cert, methods=["POST"]),
        Route("/deconnexion", logout, methods=["POST"]),
        Route("/espace", espace),
        Route("/code/changer", change_code_page, methods=["GET", "POST"]),
        Route("/operations/{slug}", operation_page, methods=["GET", "POST"]),
        Route("/operations/{slug}/validation", step_up_page),
        Route("/operations/{slug}/validation", step_up_submit, methods=["POST"]),
        Route("/operations/{slug}/effectuee", done_page),
        Route("/administration/code", reset_page, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if config.device_view is not None:
        routes.append(Route("/appareil", lambda r: RedirectResponse("/appareil/", 307)))
        routes.append(Mount("/appareil", app=config.device_view))

    def wrong_host(request: Request) -> Response:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(config.origin + request.url.path + query, status_code=307)

    app = Starlette(routes=routes)
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
