"""Connexion: login by CAP reader, confidential code or certificate (one tab each), logout, and the
change of the confidential code (forced at first login, R14, or chosen)."""

from __future__ import annotations

import base64
import dataclasses

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..rules import (
    LoginRequest,
    LoginResult,
    Outcome,
    PayloadError,
    Session,
    WeakCode,
    check_policy,
    display_lines,
    signing_payload,
)
from .render import Markup, alert, esc, group_digits, join, render, tabs, utc_time
from .session import PendingLogin, WebSession
from .web import (
    FAILED,
    IDENT,
    REMEMBER_COOKIE,
    Form,
    PortalConfig,
    Site,
    authenticated,
    call,
    cert_evidence,
    posted,
    site_of,
)

SCA_NEEDED = ("Une authentification forte est nécessaire lors de votre premier accès puis une "
              "fois tous les 90 jours : connectez-vous avec le lecteur CAP ou votre certificat "
              "numérique.")

METHOD_TABS = (("cap", "Lecteur CAP"), ("code", "Code confidentiel"),
               ("certificat", "Certificat numérique"))
POLICY_MESSAGES = {
    "too_short": "Le nouveau code doit compter au moins 8 caractères.",
    "too_long": "Le nouveau code doit compter au plus 64 caractères.",
    "bad_characters": "Le nouveau code contient des caractères non autorisés ou des espaces en "
                      "début ou fin.",
    "trivial": "Le nouveau code est trop simple (suite, répétition ou mot courant).",
    "same_as_old": "Le nouveau code doit être différent de l'ancien.",
}


def _methods(config: PortalConfig) -> tuple[tuple[str, str], ...]:
    """The login tabs: the certificate needs the signing agent."""
    return tuple((k, v) for k, v in METHOD_TABS
                 if k != "certificat" or config.agent_url is not None)


async def home(request: Request) -> Response:
    site = site_of(request)
    web = site.session_of(request)
    return site.redirect(web, "/espace" if web.auth is not None else "/connexion")


async def login_page(request: Request) -> Response:
    site = site_of(request)
    config = site.config
    web = site.session_of(request)
    if web.auth is not None:
        return site.redirect(web, "/espace")
    method = request.query_params.get("methode", "cap")
    if method not in dict(_methods(config)):
        method = "cap"
    pending = web.login
    if request.query_params.get("autre") == "1" or (
            pending is not None and (pending.method != method
                                     or pending.challenge.expires_at <= site.service.clock.now())):
        web.login = pending = None
    error = alert(web.error)
    web.error = ""
    sub = web.form.get("identifiant", "") or web.remembered
    user = web.form.get("utilisateur", "")
    remember = Markup(" checked" if web.remembered else "")
    if pending is not None and method == "cap":
        # the guide's CODE key, or the bank's "Respond only" policy (rules.md, "Mode separation")
        challenge = esc(group_digits(pending.challenge.cap_challenge or ""))
        expires = esc(utc_time(pending.challenge.expires_at))
        if site.service.config.cap_login_respond_only:
            steps = render("cap_steps_respond.html", challenge_grouped=challenge)
            note = Markup(f"Le code défi vaut pour cette connexion seulement et expire à {expires}. "
                          "Le guide décrit la touche <kbd>CODE</kbd> ; votre banque demande ici "
                          "un code calculé sur son défi (mode Réponse), qui ne peut servir "
                          "qu'une fois et pour cette connexion.")
        else:
            steps = render("cap_steps_code.html")
            note = Markup("Le code ne sert qu'une fois. Votre lecteur peut aussi le calculer sur "
                          f'le code défi <strong class="challenge" id="cap-challenge">{challenge}'
                          "</strong> (touche <kbd>SIGN</kbd>, « Réponse ») : ce code défi vaut "
                          f"pour cette connexion seulement et expire à {expires}.")
        panel = render("login_cap.html", subscription=pending.subscription, user=pending.user,
                       csrf=web.csrf, steps=steps, note=note)
    elif pending is not None and method == "certificat":
        assert pending.payload is not None
        signer = render("signer.html", agent=config.agent_url, form="form-cert",
                        payload=base64.b64encode(pending.payload).decode(),
                        lines="\n".join(display_lines(pending.payload)))
        panel = render("login_cert.html", subscription=pending.subscription,
                       user=pending.user, csrf=web.csrf, signer=signer,
                       expires=utc_time(pending.challenge.expires_at))
    elif method == "code":
        third = Markup('<li><label for="code">Saisissez votre code confidentiel</label>'
                       '<input type="password" id="code" name="code" required maxlength="64" '
                       'autocomplete="current-password"></li>')
        panel = join([render("login_ids.html", action="/connexion/code", method=method,
                             csrf=web.csrf, subscription=sub, user=user, third=third,
                             remember=remember),
                      Markup('<p class="small" id="code-nb">NB : dans le cas où vous avez '
                             'oublié votre code confidentiel, l\'Utilisateur principal ou '
                             'l\'Administrateur de votre abonnement peut vous générer un '
                             'nouveau code confidentiel. À la première connexion, il vous '
                             'sera demandé de modifier ce code confidentiel.</p>')])
    else:
        third = Markup(
            '<li>Tapez le code généré par le lecteur CAP : après « Valider », la page vous '
            'dit comment l\'obtenir.</li>' if method == "cap" else
            '<li>Branchez votre clé USB sur votre ordinateur, puis « Valider » : une fenêtre '
            'vous proposera de sélectionner votre certificat.</li>')
        panel = render("login_ids.html", action=f"/connexion/defi?methode={method}",
                       method=method, csrf=web.csrf, subscription=sub, user=user,
                       third=third, remember=remember)
        if method == "certificat":
            panel = join([render("turbo_sign.html", agent=config.agent_url), panel])
    body = render("login.html", tabs=tabs(method, "/connexion", _methods(config)),
                  method=method, panel=join([error, panel]))
    return site.page(web, "Connexion", body, device=method != "code")


def _remember(site: Site, response: Response, form: Form, sub: str) -> Response:
    """« Mémoriser mon identifiant »: ticked, the Identifiant client is kept in its own cookie
    (and nothing else); unticked, that cookie is cleared."""
    keep = form.get("memoriser") == "1" and IDENT.match(sub) is not None
    return site.preference(response, REMEMBER_COOKIE, sub if keep else None)


def _fail(site: Site, web: WebSession, method: str, message: str = FAILED) -> Response:
    web.login = None
    web.error = message
    return site.redirect(web, f"/connexion?methode={method}")


def _outcome(site: Site, web: WebSession, method: str, result: LoginResult) -> Response:
    outcome = result.outcome
    if outcome in (Outcome.OK, Outcome.CODE_CHANGE_REQUIRED) and result.session is not None:
        fresh = site.login_fresh(web, result.session)
        if outcome is Outcome.CODE_CHANGE_REQUIRED:
            return site.redirect(fresh, "/code/changer")
        return site.redirect(fresh, "/espace")
    if outcome is Outcome.SCA_REQUIRED:
        return _fail(site, web, "cap", SCA_NEEDED)
    return _fail(site, web, method)  # AUTH_FAILED, INVALID_REQUEST, anything else: one message


@posted
async def login_challenge(site: Site, request: Request, web: WebSession, form: Form
                          ) -> Response:
    """Identifiers -> a login challenge: for CAP, the page of the guide's CODE steps (the
    challenge serves a Respond code), or the LOGIN payload the key signs."""
    method = request.query_params.get("methode", "")
    if method not in ("cap", "certificat"):
        return site.forbidden(web)
    if method == "certificat" and site.config.agent_url is None:
        return site.forbidden(web)
    sub, user = form.get("identifiant", "").strip(), form.get("utilisateur", "").strip()
    web.form = {"identifiant": sub, "utilisateur": user}
    challenge = await call(site.service.issue_login_challenge, sub, user)
    if challenge is None:
        web.error = "Identifiant client et numéro Utilisateur : lettres et chiffres, 12 au plus."
        return _remember(site, site.redirect(web, f"/connexion?methode={method}"), form, sub)
    pending = PendingLogin(method, sub, user, challenge)
    if method == "certificat":
        try:
            pending.payload = signing_payload(challenge.nonce, None, sub, user,
                                              site.config.origin)
        except PayloadError:
            web.error = "Identifiant client ou numéro Utilisateur mal formé."
            return site.redirect(web, f"/connexion?methode={method}")
    web.login = pending
    return _remember(site, site.redirect(web, f"/connexion?methode={method}"), form, sub)


@posted
async def login_cap(site: Site, request: Request, web: WebSession, form: Form) -> Response:
    pending, web.login = web.login, None
    if pending is None or pending.method != "cap":
        return _fail(site, web, "cap", "Le code défi a expiré : recommencez.")
    code = form.get("cap_code", "").replace(" ", "")
    result = await call(site.service.login, LoginRequest(
        pending.subscription, pending.user, cap_code=code, challenge_id=pending.challenge.id))
    return _outcome(site, web, "cap", result)


@posted
async def login_code(site: Site, request: Request, web: WebSession, form: Form) -> Response:
    sub, user = form.get("identifiant", "").strip(), form.get("utilisateur", "").strip()
    web.form = {"identifiant": sub, "utilisateur": user}
    result = await call(site.service.login, LoginRequest(sub, user, code=form.get("code", "")))
    return _remember(site, _outcome(site, web, "code", result), form, sub)


@posted
async def login_cert(site: Site, request: Request, web: WebSession, form: Form) -> Response:
    pending, web.login = web.login, None
    if pending is None or pending.method != "certificat":
        return _fail(site, web, "certificat", "Le défi a expiré : recommencez.")
    evidence = cert_evidence(form)
    if evidence is None:
        return _fail(site, web, "certificat")
    result = await call(site.service.login, LoginRequest(
        pending.subscription, pending.user, cert=evidence, challenge_id=pending.challenge.id,
        client_claims={"middleware": "capkey-agent"}))
    return _outcome(site, web, "certificat", result)


@posted
async def logout(site: Site, request: Request, web: WebSession, form: Form) -> Response:
    if web.auth is not None:  # the bank's session ends now, not at the inactivity limit
        await call(site.service.logout, web.auth)
    return site.expire(web, "Vous êtes déconnecté.")


def _policy_message(old: str, new: str, again: str) -> str:
    """What is wrong with the new code before the service is asked ("" if nothing)."""
    if new != again:
        return "Les deux saisies du nouveau code sont différentes."
    try:
        check_policy(new, old=old)
    except WeakCode as exc:
        return POLICY_MESSAGES.get(exc.reason, "Nouveau code refusé.")
    except TypeError:
        return "Nouveau code refusé."
    return ""


@authenticated("CHANGE_CODE")  # the one operation a session that must change its code may do
async def change_code_page(site: Site, request: Request, web: WebSession, auth: Session,
                           form: Form | None) -> Response:
    error = Markup("")
    if form is not None:
        old, new = form.get("actuel", ""), form.get("nouveau", "")
        message = _policy_message(old, new, form.get("confirmation", ""))
        if not message:
            outcome = await call(site.service.change_code, auth, old, new)
            if outcome is Outcome.OK:
                web.auth = dataclasses.replace(auth, must_change=False)
                web.notice = "Votre code confidentiel a été modifié."
                return site.redirect(web, "/espace")
            if outcome is Outcome.SESSION_EXPIRED:
                return site.expire(web)
            message = "Nouveau code refusé." if outcome is Outcome.INVALID_REQUEST else FAILED
        error = alert(message)
    reason = ("À la première connexion, il vous est demandé de modifier ce code confidentiel."
              if auth.must_change else "Choisissez un nouveau code confidentiel.")
    body = render("change_code.html", reason=reason, error=error, csrf=web.csrf)
    return site.page(web, "Code confidentiel", body)


ROUTES = [
    Route("/", home),
    Route("/connexion", login_page),
    Route("/connexion/defi", login_challenge, methods=["POST"]),
    Route("/connexion/cap", login_cap, methods=["POST"]),
    Route("/connexion/code", login_code, methods=["POST"]),
    Route("/connexion/certificat", login_cert, methods=["POST"]),
    Route("/deconnexion", logout, methods=["POST"]),
    Route("/code/changer", change_code_page, methods=["GET", "POST"]),
]
