"""Administration: the Utilisateur principal or an Administrateur gives a user of the subscription
a new confidential code (R15), shown once."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..rules import Outcome, Role, Session
from .render import Markup, alert, esc, render
from .session import WebSession
from .web import Form, Site, authenticated, call

ROLE_NAMES = {Role.PRINCIPAL: "Utilisateur principal", Role.ADMIN: "Administrateur",
              Role.USER: "Utilisateur"}
#: The roles that may reset a code (the service checks it again).
MANAGERS = (Role.PRINCIPAL, Role.ADMIN)
RESERVED = "Action réservée à l'Utilisateur principal ou à un Administrateur de l'abonnement."


@authenticated()
async def reset_page(site: Site, request: Request, web: WebSession, auth: Session,
                     form: Form | None) -> Response:
    if auth.role not in MANAGERS:
        web.notice = RESERVED
        return site.redirect(web, "/espace")
    result = Markup("")
    if form is not None:
        target = form.get("utilisateur", "").strip()
        if target == auth.user_no:
            result = alert("Pour votre propre code, utilisez « Modifier mon code ».")
        else:
            answer = await call(site.service.reset_code, auth, auth.subscription, target)
            if (r := site.outcome_redirect(web, answer.outcome)) is not None:
                return r
            if answer.outcome is Outcome.OK and answer.code:
                result = Markup(
                    f'<div class="one-time" id="one-time-code" role="status"><p>Nouveau code '
                    f'confidentiel de l\'utilisateur <strong>{esc(target)}</strong> (affiché '
                    f'une seule fois, à lui remettre) :</p><p class="code">{esc(answer.code)}'
                    f'</p><p class="small">Il devra le modifier à sa première connexion.</p>'
                    f'</div>')
            else:
                result = alert({
                    Outcome.SCA_REQUIRED: "Cette action demande une session ouverte par "
                                          "authentification forte (lecteur CAP ou certificat).",
                    Outcome.FORBIDDEN: RESERVED,
                }.get(answer.outcome, "Aucun utilisateur actif de ce numéro dans votre "
                                      "abonnement."))
    body = render("reset_code.html", role=ROLE_NAMES.get(auth.role, ""),
                  subscription=auth.subscription, result=result, csrf=web.csrf)
    return site.page(web, "Nouveau code confidentiel", body)


ROUTES = [Route("/administration/code", reset_page, methods=["GET", "POST"])]
