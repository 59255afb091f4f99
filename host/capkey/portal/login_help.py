"""The pages around the login form that the guide's login page links to: « Identifiant oublié ? »,
« Assistance », « Plus d'informations » (security information), and the « Version accessible »
switch (a preference cookie; docs/ui.md, "Portal")."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .render import render
from .web import ACCESSIBLE_COOKIE, site_of

_PAGES = {"/identifiant-oublie": ("identifiant_oublie.html", "Identifiant oublié ?"),
          "/assistance": ("assistance.html", "Assistance"),
          "/securite": ("securite.html", "Information Sécurité")}


async def info_page(request: Request) -> Response:
    site = site_of(request)
    web = site.session_of(request)
    template, title = _PAGES[request.url.path]
    config = site.config
    return site.page(web, title, render(template, phone=config.assistance_phone,
                                        email=config.assistance_email))


async def version(request: Request) -> Response:
    """?actif=1: the accessible version; 0: the standard one; back to the page it was asked on
    (this site's pages only)."""
    site = site_of(request)
    web = site.session_of(request)
    back = urlsplit(request.headers.get("referer", ""))
    target = "/connexion"
    if f"{back.scheme}://{back.netloc}" == site.config.origin and back.path.startswith("/") \
            and not back.path.startswith("//") and back.path != "/version-accessible":
        target = back.path + (f"?{back.query}" if back.query else "")
    on = request.query_params.get("actif") == "1"
    return site.preference(site.redirect(web, target), ACCESSIBLE_COOKIE, "1" if on else None)


ROUTES = [
    *(Route(path, info_page) for path in _PAGES),
    Route("/version-accessible", version),
]
