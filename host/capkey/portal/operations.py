"""The Espace Client and its sensitive operations: an operation's form -> authorize() (R6); if a
step-up is needed, its page (CAP Sign or Respond, or the certificate: R7, R8) and its
validation; then the operation done."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..catalog.operations import SENSITIVE, OperationKind
from ..rules import (
    AuthLevel,
    Batch,
    InvalidTransaction,
    Method,
    OperationRef,
    Outcome,
    Payment,
    Session,
    StepUpChallenge,
    cap_sign_challenge,
    display_lines,
    format_amount,
    signing_payload,
)
from .admin import MANAGERS, ROLE_NAMES
from .forms import FormError, build_operation, operation_fields
from .login import METHOD_TABS
from .render import Markup, alert, esc, group_digits, join, render, tabs, tag, utc_time
from .session import PendingOperation, WebSession
from .web import FAILED, Form, Site, authenticated, call, cert_evidence

#: The menu of the Espace Client: the catalogue's sensitive operations, by the portal's address.
OPERATIONS = {k.slug: k for k in SENSITIVE}

METHOD_NAMES = {Method.CAP: "lecteur CAP", Method.CODE: "code confidentiel",
                Method.CERT: "certificat numérique"}
#: A step-up is a strong authentication: not by the confidential code.
STEP_UP_TABS = tuple((k, v) for k, v in METHOD_TABS if k != "code")


def _duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    if minutes and not rest:
        return f"{minutes} minute{'s' if minutes > 1 else ''}"
    return f"{seconds} secondes"


@authenticated()
async def espace(site: Site, request: Request, web: WebSession, auth: Session,
                 form: Form | None) -> Response:
    ops = join(tag("li", tag("a", k.title, href=f"/operations/{k.slug}", id=f"op-{k.slug}"))
               for k in OPERATIONS.values())
    admin = render("admin_box.html") if auth.role in MANAGERS else Markup("")
    history = (tag("ul", join(tag("li", h) for h in web.history)) if web.history
               else tag("p", "Aucune opération sensible dans cette session.", class_="small"))
    strong = auth.auth_level is AuthLevel.SCA
    body = render("espace.html", subscription=auth.subscription, user=auth.user_no,
                  role=ROLE_NAMES.get(auth.role, auth.role), method=METHOD_NAMES[auth.method],
                  level="authentification forte" if strong else "authentification simple",
                  level_class="strong" if strong else "simple", operations=ops, admin=admin,
                  history=history, idle=_duration(site.service.config.inactivity_seconds),
                  sca_at=auth.sca_at.astimezone(UTC).strftime("%d/%m/%Y %H:%M UTC")
                  if auth.sca_at else "aucune")
    return site.page(web, "Espace Client", body)


def _pending(request: Request, web: WebSession) -> tuple[OperationKind, PendingOperation] | None:
    """The operation of the address and the one the person has pending, if they are the same."""
    kind = OPERATIONS.get(request.path_params["slug"])
    pending = web.operation
    if kind is None or pending is None or pending.slug != kind.slug:
        return None
    return kind, pending


def _summary(pairs: list[tuple[str, str]]) -> Markup:
    return join(join([tag("dt", k), tag("dd", v)]) for k, v in pairs)


def _finish(site: Site, web: WebSession, pending: PendingOperation, how: str) -> Response:
    web.operation = None
    when = datetime.now(UTC)
    kind = OPERATIONS[pending.slug]
    web.history.append(f"{utc_time(when)} — {kind.title} : "
                       + ", ".join(f"{k} {v}" for k, v in pending.summary))
    web.done = {"slug": pending.slug, "summary": pending.summary, "how": how, "when": when}
    return site.redirect(web, f"/operations/{pending.slug}/effectuee")


@authenticated()
async def operation_page(site: Site, request: Request, web: WebSession, auth: Session,
                         form: Form | None) -> Response:
    kind = OPERATIONS.get(request.path_params["slug"])
    if kind is None:
        return site.redirect(web, "/espace")
    error = Markup("")
    if form is not None:
        try:
            pending = build_operation(kind, form, site.config.currency, auth.subscription)
        except (FormError, InvalidTransaction) as exc:
            error = alert(str(exc) if isinstance(exc, FormError) else "Saisie invalide.")
        else:
            outcome = await call(site.service.authorize, auth, pending.operation,
                                 transaction=pending.transaction,
                                 operation_id=pending.operation_id)
            if (r := site.outcome_redirect(web, outcome)) is not None:
                return r
            if outcome is Outcome.OK:
                return _finish(site, web, pending, "déjà autorisée")
            if outcome is Outcome.STEP_UP_REQUIRED:
                web.operation = pending
                return site.redirect(web, f"/operations/{kind.slug}/validation")
            error = alert("Opération refusée.")
    body = render("operation.html", title=kind.title, slug=kind.slug, csrf=web.csrf,
                  fields=operation_fields(kind, form or {}), error=error)
    return site.page(web, kind.title, body)


def _record(pending: PendingOperation) -> Payment | Batch | OperationRef:
    """What the step-up binds: the transaction (R7), else the operation and its id (R8)."""
    if pending.transaction is not None:
        return pending.transaction
    return OperationRef(pending.operation, pending.operation_id or "")


def _cap_steps(site: Site, auth: Session, pending: PendingOperation, ch: StepUpChallenge
               ) -> Markup:
    """What the person does on the CAP reader: Sign with the amount (R7), or Respond (R8)."""
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
            split = cap_sign_challenge(ch.nonce, record, auth.subscription, auth.user_no,
                                       site.config.origin)
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
                f"{esc(group_digits(challenge))}</strong> puis <kbd>OK</kbd>.</li>"))
        amount = format_amount(ch.amount_minor, ch.currency)
        steps.append(Markup(
            f"<li>Tapez le montant <strong class=\"amount\" id=\"stepup-amount\">"
            f"{esc(amount)}</strong> {esc(ch.currency)} (les chiffres sans la virgule : "
            f"<kbd>{esc(str(ch.amount_minor))}</kbd>) puis <kbd>OK</kbd>.</li>"))
    else:
        steps.append(Markup("<li>Choisissez « Réponse » (touche <kbd>1</kbd>).</li>"))
        steps.append(Markup(
            f"<li>Tapez le code défi <strong class=\"challenge\" id=\"stepup-challenge\">"
            f"{esc(group_digits(challenge))}</strong> puis <kbd>OK</kbd>.</li>"))
    steps.append(Markup("<li>Entrez le code PIN de la carte puis <kbd>OK</kbd>, et recopiez "
                        "ci-dessous le code affiché par le lecteur.</li>"))
    return join(steps)


def _credentials(site: Site, auth: Session) -> dict[str, bool]:
    """The step-up tabs the user can use: an active CAP card; an active certificate, and the
    signing agent to reach it."""
    state = site.service.directory.user_state(auth.subscription, auth.user_no)
    return {"cap": any(active for *_, active in state.cards),
            "certificat": any(active for *_, active in state.certificates)
            and site.config.agent_url is not None}


@authenticated()
async def step_up_page(site: Site, request: Request, web: WebSession, auth: Session,
                       form: Form | None) -> Response:
    found = _pending(request, web)
    if found is None:
        return site.redirect(web, "/espace")
    kind, pending = found
    config = site.config
    has = await call(_credentials, site, auth)
    available = tuple((k, v) for k, v in STEP_UP_TABS if has[k])
    if not available:
        web.operation = None
        web.notice = ("Aucun moyen d'authentification forte n'est rattaché à votre accès : "
                      "contactez votre banque.")
        return site.redirect(web, "/espace")
    method = request.query_params.get("methode", available[0][0])
    if method not in dict(available):
        method = available[0][0]
    ch = pending.step_up
    if ch is None or ch.expires_at is None or ch.expires_at <= site.service.clock.now():
        ch = await call(site.service.begin_step_up, auth, pending.operation,
                        transaction=pending.transaction, operation_id=pending.operation_id)
        if (r := site.outcome_redirect(web, ch.outcome)) is not None:
            return r
        if ch.outcome is not Outcome.OK:
            web.operation = None
            web.notice = "Opération refusée."
            return site.redirect(web, "/espace")
        pending.step_up = ch
    slug = kind.slug
    if method == "cap":
        panel = render("step_up_cap.html", slug=slug, csrf=web.csrf,
                       steps=_cap_steps(site, auth, pending, ch))
    else:
        assert ch.nonce is not None
        # the bank's own record, as its signature verifier rebuilds it
        data = signing_payload(ch.nonce, _record(pending), auth.subscription, auth.user_no,
                               config.origin)
        signer = render("signer.html", agent=config.agent_url, form="form-stepup-cert",
                        payload=base64.b64encode(data).decode(),
                        lines="\n".join(display_lines(data)))
        panel = render("step_up_cert.html", slug=slug, csrf=web.csrf, signer=signer)
    error = alert(pending.error)
    pending.error = ""
    body = render("step_up.html", title=kind.title, summary=_summary(pending.summary),
                  error=error, tabs=tabs(method, f"/operations/{slug}/validation", available),
                  method=method, panel=panel, expires=utc_time(ch.expires_at))
    return site.page(web, "Authentification renforcée", body, device=True)


@authenticated()
async def step_up_submit(site: Site, request: Request, web: WebSession, auth: Session,
                         form: Form | None) -> Response:
    assert form is not None  # a POST route
    found = _pending(request, web)
    if found is None:
        return site.redirect(web, "/espace")
    kind, pending = found
    ch, pending.step_up = pending.step_up, None  # consumed by any attempt (R9)
    method = form.get("methode", "")
    back = f"/operations/{kind.slug}/validation?methode={method}"
    if ch is None or ch.id is None:
        pending.error = "Le défi a expiré : un nouveau défi vous est proposé."
        return site.redirect(web, back)
    evidence: dict[str, object]
    if method == "cap":
        evidence = {"cap_code": form.get("cap_code", "").replace(" ", "")}
    elif method == "certificat":
        cert = cert_evidence(form)
        if cert is None:
            pending.error = FAILED
            return site.redirect(web, back)
        evidence = {"cert": cert}
    else:
        return site.forbidden(web)
    outcome = await call(site.service.complete_step_up, auth, ch.id,
                         transaction=pending.transaction, operation_id=pending.operation_id,
                         **evidence)
    if (r := site.outcome_redirect(web, outcome)) is not None:
        return r
    if outcome is not Outcome.OK:
        pending.error = FAILED
        return site.redirect(web, back)
    outcome = await call(site.service.authorize, auth, pending.operation,
                         transaction=pending.transaction, operation_id=pending.operation_id)
    if (r := site.outcome_redirect(web, outcome)) is not None:
        return r
    if outcome is not Outcome.OK:
        pending.error = "Opération refusée."
        return site.redirect(web, back)
    return _finish(site, web, pending, METHOD_NAMES[Method.CAP if method == "cap" else Method.CERT])


@authenticated()
async def done_page(site: Site, request: Request, web: WebSession, auth: Session,
                    form: Form | None) -> Response:
    kind = OPERATIONS.get(request.path_params["slug"])
    done = web.done
    if kind is None or done is None or done["slug"] != kind.slug:
        return site.redirect(web, "/espace")
    body = render("done.html", title=kind.title, summary=_summary(done["summary"]),
                  method=done["how"], when=done["when"].strftime("%d/%m/%Y à %H:%M:%S UTC"))
    return site.page(web, "Opération effectuée", body)


ROUTES = [
    Route("/espace", espace),
    Route("/operations/{slug}", operation_page, methods=["GET", "POST"]),
    Route("/operations/{slug}/validation", step_up_page),
    Route("/operations/{slug}/validation", step_up_submit, methods=["POST"]),
    Route("/operations/{slug}/effectuee", done_page),
]
