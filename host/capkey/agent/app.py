"""HTTP API of the local signing agent (Starlette). Bound to 127.0.0.1 only.

    GET  /v1/certificates   -> {"certificates": [{"slot", "certificate" (base64 DER),
                                "fingerprint" (hex SHA-256), "subject", "not_after"}]}
    POST /v1/sign           {"payload": base64 canonical payload}
                            -> {"slot", "signature" (base64 r||s, 64 bytes),
                                "certificate" (base64 DER of the slot the person chose)}
    POST /v1/cancel         -> {} : cancels the signature the device is waiting for
    GET  /v1/status         -> {"agent": "capkey"} : the agent runs (the portal's « TURBO SIGN »
                               check; the device is not touched)

Requests are served only when:
- the Host header names the agent itself (127.0.0.1/localhost and its port): a DNS-rebinding
  page cannot reach it under another name;
- the Origin header is in the allow-list (exact match): other web pages get 403, and CORS
  headers are sent only to allowed origins (with Private Network Access consent on preflight);
- for a LOGIN payload, the payload's origin equals the Origin of the request, so an allowed site
  cannot have the person sign a login to another site.

Errors: {"error": code} with code in bad_request, forbidden, busy, denied (ANNULER on the device),
timeout, pin_blocked, no_device, device_error. Nothing here carries a PIN, and the agent's answers
are not evidence for the bank: it verifies the signature itself (rules.md R17).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..cert.payload import LoginPayload, PayloadError, SignedPayload
from ..link.errors import (
    Cancelled,
    DeviceTimeout,
    LinkError,
    PinBlocked,
    ProtocolError,
    TransportError,
)
from ..link.key import KeyClient

logger = logging.getLogger(__name__)

__all__ = ["AgentConfig", "create_app"]

_MAX_BODY = 4096
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class AgentConfig:
    """`allowed_origins`: exact web origins (scheme://host[:port]) that may use the agent.
    `port`: the port the agent listens on (for the Host check). `open_key`: returns a context
    manager yielding a KeyClient for the plugged device (opened per request)."""

    allowed_origins: frozenset[str]
    port: int
    open_key: Callable[[], AbstractContextManager[KeyClient]]
    _busy: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _cancel: list[threading.Event] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        origins = frozenset(self.allowed_origins)
        if not origins:
            raise ValueError("the agent needs at least one allowed origin")
        for origin in origins:
            if origin == "*" or origin.endswith("/") or "://" not in origin:
                raise ValueError(f"allowed origin must be an exact origin, not {origin!r}")
        object.__setattr__(self, "allowed_origins", origins)


def _error(code: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code}, status_code=status, headers=headers)


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _describe(slot: int, cert) -> dict:
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "slot": slot,
        "certificate": _b64(der),
        "fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def _device_error(exc: Exception) -> JSONResponse:
    if isinstance(exc, Cancelled):
        return _error("denied", 409)
    if isinstance(exc, PinBlocked):
        return _error("pin_blocked", 409)
    if isinstance(exc, ProtocolError):
        if exc.code in (LinkError.ERR.DENIED, LinkError.ERR.CANCELLED):
            return _error("denied", 409)
        if exc.code is LinkError.ERR.TIMEOUT:
            return _error("timeout", 409)
        if exc.code is LinkError.ERR.BUSY:
            return _error("busy", 409)
        return _error("device_error", 502)
    if isinstance(exc, DeviceTimeout):
        return _error("timeout", 504)
    return _error("no_device", 503)


def create_app(config: AgentConfig) -> Starlette:
    allowed_hosts = {f"{h}:{config.port}" for h in _LOCAL_HOSTS}

    def gate(request: Request) -> str | Response:
        """The request's Origin if it may be served, else the refusal."""
        if request.headers.get("host", "") not in allowed_hosts:
            return _error("forbidden", 403)
        origin = request.headers.get("origin")
        if origin is None or origin not in config.allowed_origins:
            return _error("forbidden", 403)
        return origin

    async def preflight(request: Request) -> Response:
        origin = gate(request)
        if isinstance(origin, Response):
            return origin
        headers = {
            **_cors(origin),
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "600",
        }
        if request.headers.get("access-control-request-private-network") == "true":
            headers["Access-Control-Allow-Private-Network"] = "true"
        return Response(status_code=204, headers=headers)

    async def certificates(request: Request) -> Response:
        origin = gate(request)
        if isinstance(origin, Response):
            return origin

        def read() -> list[dict]:
            with config.open_key() as key:
                return [_describe(slot, cert) for slot, cert in sorted(key.certificates().items())]

        return await _exclusive(read, origin, lambda found: {"certificates": found})

    async def sign(request: Request) -> Response:
        origin = gate(request)
        if isinstance(origin, Response):
            return origin
        body = await request.body()
        try:
            if len(body) > _MAX_BODY:
                raise ValueError("body too long")
            message = json.loads(body)
            if not isinstance(message, dict) or set(message) != {"payload"}:
                raise ValueError("expected exactly {'payload': base64}")
            payload = SignedPayload(base64.b64decode(message["payload"], validate=True))
        except (ValueError, TypeError, binascii.Error, PayloadError):
            return _error("bad_request", 400, _cors(origin))
        if isinstance(payload.fields, LoginPayload) and payload.fields.origin != origin:
            logger.warning(
                "refused: login payload for %s asked by %s", payload.fields.origin, origin
            )
            return _error("forbidden", 403, _cors(origin))
        cancel = threading.Event()

        def run() -> tuple[int, bytes, bytes | None]:
            config._cancel[:] = [cancel]
            try:
                with config.open_key() as key:
                    slot, signature = key.sign(payload, cancel=cancel)
                    cert = key.certificate(slot)
            finally:
                config._cancel[:] = []
            der = cert.public_bytes(serialization.Encoding.DER) if cert is not None else None
            return slot, signature, der

        return await _exclusive(
            run,
            origin,
            lambda r: {
                "slot": r[0],
                "signature": _b64(r[1]),
                "certificate": _b64(r[2]) if r[2] is not None else None,
            },
        )

    async def cancel(request: Request) -> Response:
        origin = gate(request)
        if isinstance(origin, Response):
            return origin
        for event in list(config._cancel):
            event.set()
        return JSONResponse({}, headers=_cors(origin))

    async def status(request: Request) -> Response:
        origin = gate(request)
        if isinstance(origin, Response):
            return origin
        return JSONResponse({"agent": "capkey"}, headers=_cors(origin))

    async def _exclusive(work, origin: str, render) -> Response:
        """One device conversation at a time; a second request is answered busy at once."""
        if not config._busy.acquire(blocking=False):
            return _error("busy", 409, _cors(origin))
        try:
            result = await run_in_threadpool(work)
        except (ProtocolError, DeviceTimeout, TransportError, OSError) as exc:
            logger.info("device call failed: %r", exc)
            response = _device_error(exc)
            response.headers.update(_cors(origin))
            return response
        finally:
            config._busy.release()
        return JSONResponse(render(result), headers=_cors(origin))

    routes = [
        Route("/v1/certificates", certificates, methods=["GET"]),
        Route("/v1/sign", sign, methods=["POST"]),
        Route("/v1/cancel", cancel, methods=["POST"]),
        Route("/v1/status", status, methods=["GET"]),
    ]
    routes += [Route(r.path, preflight, methods=["OPTIONS"]) for r in list(routes)]
    return Starlette(routes=routes)


def device_opener(url: str) -> Callable[[], AbstractContextManager[KeyClient]]:
    """`open_key` for a device URL: opens the device for each request."""
    from ..link.device import Device

    @contextlib.contextmanager
    def open_key():
        with Device.open(url) as device:
            yield KeyClient(device)

    return open_key


def parse_origins(values: Iterable[str]) -> frozenset[str]:
    """Origins from the command line: validated as canonical web origins (lower case, no path,
    no default port), the same form a LOGIN payload carries."""
    from ..cert.payload import check_origin

    out = set()
    for value in values:
        try:
            out.add(check_origin(value))
        except PayloadError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
    return frozenset(out)
