"""`capkey serve`: the authentication service over HTTP, for a bank backend that is not Python.

    from capkey.server import create_app, Limits
    app = create_app(service)          # an ASGI app: run it under uvicorn

JSON over HTTP, described by docs/openapi.json (OpenAPI 3.1); callers authenticated by API keys
with scopes (`keys`); refusals as RFC 9457 problem details (`problems`); an Idempotency-Key
on state-changing POSTs; JSON logs and Prometheus metrics (`observe`). docs/service.md is the
guide.
"""

from __future__ import annotations

from .app import Limits, create_app
from .keys import ApiKeyError, ApiKeys, Caller, Scope, create_key, revoke_key

__all__ = ["ApiKeyError", "ApiKeys", "Caller", "Limits", "Scope", "create_app", "create_key",
           "revoke_key"]
