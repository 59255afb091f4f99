"""The ASGI app of `capkey serve` (FastAPI over the rules service): routes, limits, problems.

Every route runs the rules in a worker thread under a time limit, answers OK with its JSON body
and any other outcome as the problem for that outcome (`problems.outcome_problem`), and keeps
the answer of a request that carried an ``Idempotency-Key`` so that a retry gets the same answer
instead of a second decision (docs/service.md).
"""


import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from .. import __version__
from ..rules import (
    AuthService,
    Batch,
    CertEvidence,
    DirectoryError,
    InvalidTransaction,
    LoginRequest,
    Outcome,
    Payment,
)
from ..store import SCHEMA_VERSION
from ..store.tx.service import IdempotentAnswer
from . import problems
from . import schemas as s
from .keys import ApiKeys, Caller, Scope
from .observe import Metrics, Observed, log_fields

log = logging.getLogger("capkey.server")

_IDEMPOTENCY_KEY = r"^[A-Za-z0-9_.:-]{8,128}$"
_PURGE_EVERY = 1000  # idempotent answers kept between purges of the expired ones


@dataclass(frozen=True)
class Limits:
    """`max_body_bytes`: the largest request body; `request_seconds`: the longest a request may
    wait for its answer (a 503 after it; the decision may still be made: retry with the same
    Idempotency-Key); `idempotency_hours`: how long answers are kept for retries;
    `threads`: the worker threads that run the rules."""

    max_body_bytes: int = 64 * 1024
    request_seconds: float = 10.0
    idempotency_hours: int = 24
    threads: int = 64


_PROBLEM: dict[str, Any] = {"model": s.ProblemOut, "content": {problems.PROBLEM_JSON: {
    "schema": {"$ref": "#/components/schemas/ProblemOut"}}}}
_COMMON: dict[int | str, dict[str, Any]] = {code: _PROBLEM | {"description": what} for code, what in (
    (401, "API key missing, unknown or revoked; or the rules refused (AUTH_FAILED, "
          "SESSION_EXPIRED)"),
    (403, "API key lacks the scope; or the rules answered SCA_REQUIRED, STEP_UP_REQUIRED, "
          "CODE_CHANGE_REQUIRED or FORBIDDEN"),
    (400, "The rules answered INVALID_REQUEST"),
    (413, "Request body too large"),
    (422, "Malformed request, or an Idempotency-Key reused for another request"),
    (503, "Took too long, or the database is unavailable"),
)}
_REPLAY_409: dict[int | str, dict[str, Any]] = {409: _PROBLEM | {"description": "An Idempotency-Key retry of a request whose "
                                               "one-time answer is not shown again"}}


class _BodyLimit:
    """Refuses bodies over `limit` bytes, by Content-Length or once they have streamed in (a
    body is read whole before the app sees it: the service's bodies are small)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _send_problem(send, problems.too_large(self.limit))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await _send_problem(send, problems.too_large(self.limit))
                return
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], then=receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()
    return receive


async def _send_problem(send: Send, problem: problems.Problem) -> None:
    body = json.dumps(problem.body()).encode()
    headers = [(b"content-type", problems.PROBLEM_JSON.encode()),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _problem_response(problem: problems.Problem) -> Response:
    return JSONResponse(problem.body(), problem.status, headers=problem.headers,
                        media_type=problems.PROBLEM_JSON)


def _payment(p: s.Payment | None) -> Payment | None:
    return None if p is None else Payment(p.amount_minor, p.currency, p.payee_iban, p.payee_name)


def _batch(b: s.Batch | None) -> Batch | None:
    return None if b is None else Batch(b.total_minor, b.currency, b.count, tuple(b.payees))


def _cert(c: s.Certificate | None) -> CertEvidence | None:
    if c is None:
        return None
    return CertEvidence(s.unb64(c.certificate), s.unb64(c.signature),
                        None if c.payload is None else s.unb64(c.payload),
                        tuple(s.unb64(x) for x in c.chain))


def _transaction(body: s.OperationIn) -> Payment | Batch | None:
    if body.payment is not None and body.batch is not None:
        raise InvalidTransaction("a payment or a batch, not both")
    return _payment(body.payment) or _batch(body.batch)


def _check(outcome: Outcome) -> s.OutcomeOut:
    if outcome is not Outcome.OK:
        raise problems.outcome_problem(outcome)
    return s.OutcomeOut()


def create_app(service: AuthService, *, limits: Limits | None = None,
               metrics: Metrics | None = None, api_keys: ApiKeys | None = None) -> FastAPI:
    """The service's ASGI app over `service` (and its store: API keys, idempotent answers)."""
    limits = limits or Limits()
    metrics = metrics or Metrics()
    keys = api_keys or ApiKeys(service.store)
    store = service.store
    limiter = anyio.CapacityLimiter(limits.threads)
    bearer = HTTPBearer(auto_error=False, description="An API key: ck_<id>_<secret>")
    kept = [0]

    app = FastAPI(title="capkey authentication service", version=__version__,
                  description="Logins, step-up and code management under the rules of "
                              "docs/rules.md (docs/service.md).",
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")

    async def in_thread(fn: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(fn, limiter=limiter, abandon_on_cancel=True)

    async def timed(fn: Callable[[], Any]) -> Any:
        try:
            with anyio.fail_after(limits.request_seconds):
                return await in_thread(fn)
        except TimeoutError:
            raise problems.too_slow(limits.request_seconds) from None

    def need(scope: Scope) -> Callable[..., Awaitable[Caller]]:
        async def check(request: Request, credentials: Annotated[
                HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
            token = credentials.credentials if credentials is not None else None
            caller: Caller | None = (keys.caller(token) if keys.cached(token)
                                     else await in_thread(lambda: keys.caller(token)))
            if caller is None:
                raise problems.unauthorized()
            request.scope.setdefault("state", {})["caller"] = caller.key_id
            if scope not in caller.scopes:
                raise problems.missing_scope(scope.value)
            return caller
        return check

    IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", pattern=_IDEMPOTENCY_KEY,
                                           description="Retries with the same key and body "
                                                       "get the first answer")]

    async def decide(request: Request, caller: Caller, idem: str | None, body: BaseModel,
                     operation: str, fn: Callable[[], BaseModel], *,
                     secret_answer: bool = False) -> Response:
        """Runs `fn` (the rules) once per idempotency key and answers its result or problem."""
        digest = b""
        if idem is not None:
            digest = hashlib.sha256(request.url.path.encode() + b"\0"
                                    + body.model_dump_json().encode()).digest()
            def prior_answer() -> IdempotentAnswer | None:
                with store.read() as tx:
                    return tx.idempotent_get(caller.key_id, idem)
            prior = await timed(prior_answer)
            if prior is not None:
                if prior.request_digest != digest:
                    raise problems.idempotency_mismatch()
                if secret_answer and prior.status == 200:
                    raise problems.not_replayed()
                media = "application/json" if prior.status == 200 else problems.PROBLEM_JSON
                return Response(prior.body, prior.status, media_type=media,
                                headers={"Idempotent-Replayed": "true"})

        def run() -> tuple[int, bytes, str]:
            try:
                result = fn()
            except InvalidTransaction:
                result_problem = problems.outcome_problem(Outcome.INVALID_REQUEST)
            except problems.Problem as exc:
                if exc.outcome is None:
                    raise
                result_problem = exc
            else:
                return 200, result.model_dump_json().encode(), Outcome.OK.value
            assert result_problem.outcome is not None
            return (result_problem.status, json.dumps(result_problem.body()).encode(),
                    result_problem.outcome.value)

        status, payload, outcome = await timed(run)
        metrics.decision(operation, outcome)
        if idem is not None:
            stored = b"{}" if secret_answer and status == 200 else payload

            def keep() -> None:
                now = time.time_ns() // 1000
                with store.transaction() as tx:
                    tx.idempotent_put(caller.key_id, idem, IdempotentAnswer(digest, status,
                                                                            stored), now)
                    kept[0] += 1
                    if kept[0] % _PURGE_EVERY == 0:
                        tx.idempotent_purge(now - limits.idempotency_hours * 3_600_000_000)
            await timed(keep)
        media = "application/json" if status == 200 else problems.PROBLEM_JSON
        return Response(payload, status, media_type=media)

    login_scope = Annotated[Caller, Depends(need(Scope.LOGIN))]
    stepup_scope = Annotated[Caller, Depends(need(Scope.STEPUP))]
    admin_scope = Annotated[Caller, Depends(need(Scope.ADMIN))]

    @app.post("/v1/login/challenges", response_model=s.ChallengeOut, responses=_COMMON,
              tags=["login"], summary="A login challenge (for a CAP or certificate login)")
    async def login_challenge(body: s.ChallengeIn, caller: login_scope) -> Response:
        def issue() -> s.ChallengeOut:
            ch = service.issue_login_challenge(body.subscription, body.user_no)
            if ch is None:
                raise problems.outcome_problem(Outcome.INVALID_REQUEST)
            return s.ChallengeOut(challenge_id=ch.id, nonce=s.b64(ch.nonce),
                                  cap_challenge=ch.cap_challenge, expires_at=ch.expires_at)
        out = await timed(issue)
        return Response(out.model_dump_json(), media_type="application/json")

    @app.post("/v1/logins", response_model=s.LoginOut, responses=_COMMON, tags=["login"],
              summary="Log in with a CAP code, the confidential code or a signature")
    async def login(request: Request, body: s.LoginIn, caller: login_scope,
                    idem: IdemKey = None) -> Response:
        def run() -> s.LoginOut:
            result = service.login(LoginRequest(
                body.subscription, body.user_no, code=body.code, cap_code=body.cap_code,
                cert=_cert(body.certificate), challenge_id=body.challenge_id))
            if result.session is None:
                raise problems.outcome_problem(result.outcome)
            # OK, or CODE_CHANGE_REQUIRED with a session to change the code in
            outcome: Literal["OK", "CODE_CHANGE_REQUIRED"] = (
                "OK" if result.outcome is Outcome.OK else "CODE_CHANGE_REQUIRED")
            return s.LoginOut(outcome=outcome, session=result.session)
        return await decide(request, caller, idem, body, "login", run)

    @app.post("/v1/authorize", response_model=s.OutcomeOut, responses=_COMMON,
              tags=["session"], summary="May this session do this operation now? (also the "
                                        "session check: it counts as activity)")
    async def authorize(request: Request, body: s.OperationIn, caller: login_scope) -> Response:
        def run() -> s.OutcomeOut:
            return _check(service.authorize(body.session, body.operation,
                                            transaction=_transaction(body),
                                            operation_id=body.operation_id))
        return await decide(request, caller, None, body, "authorize", run)

    @app.post("/v1/step-ups", response_model=s.StepUpOut, responses=_COMMON, tags=["step-up"],
              summary="Begin a step-up for an operation (its challenge for the device)")
    async def begin_step_up(request: Request, body: s.OperationIn, caller: stepup_scope,
                            idem: IdemKey = None) -> Response:
        def run() -> s.StepUpOut:
            ch = service.begin_step_up(body.session, body.operation,
                                       transaction=_transaction(body),
                                       operation_id=body.operation_id)
            if ch.outcome is not Outcome.OK:
                raise problems.outcome_problem(ch.outcome)
            assert ch.id and ch.operation and ch.nonce and ch.expires_at
            return s.StepUpOut(challenge_id=ch.id, operation=ch.operation,
                               nonce=s.b64(ch.nonce), cap_challenge=ch.cap_challenge,
                               cap_mode=ch.cap_mode, amount_minor=ch.amount_minor,
                               currency=ch.currency, expires_at=ch.expires_at)
        return await decide(request, caller, idem, body, "step_up_begin", run)

    @app.post("/v1/step-ups/{challenge_id}/complete", response_model=s.OutcomeOut,
              responses=_COMMON, tags=["step-up"],
              summary="Complete a step-up with a CAP code or a signature")
    async def complete_step_up(request: Request, challenge_id: s.Token,
                               body: s.StepUpCompleteIn, caller: stepup_scope,
                               idem: IdemKey = None) -> Response:
        def run() -> s.OutcomeOut:
            return _check(service.complete_step_up(
                body.session, challenge_id, transaction=_transaction(body),
                operation_id=body.operation_id, cap_code=body.cap_code,
                cert=_cert(body.certificate)))
        return await decide(request, caller, idem, body, "step_up_complete", run)

    @app.post("/v1/code/change", response_model=s.OutcomeOut, responses=_COMMON,
              tags=["session"], summary="Change the session user's confidential code")
    async def change_code(request: Request, body: s.CodeChangeIn, caller: login_scope,
                          idem: IdemKey = None) -> Response:
        def run() -> s.OutcomeOut:
            return _check(service.change_code(body.session, body.old_code, body.new_code))
        return await decide(request, caller, idem, body, "code_change", run)

    @app.post("/v1/logout", response_model=s.OutcomeOut, responses=_COMMON, tags=["session"],
              summary="End a session")
    async def logout(request: Request, body: s.SessionIn, caller: login_scope,
                     idem: IdemKey = None) -> Response:
        return await decide(request, caller, idem, body, "logout",
                            lambda: _check(service.logout(body.session)))

    @app.post("/v1/admin/reset-code", response_model=s.ResetOut,
              responses=_COMMON | _REPLAY_409, tags=["admin"],
              summary="An administrator resets a user's confidential code (R15)")
    async def reset_code(request: Request, body: s.ResetIn, caller: admin_scope,
                         idem: IdemKey = None) -> Response:
        def run() -> s.ResetOut:
            result = service.reset_code(body.session, body.subscription, body.user_no)
            if result.outcome is not Outcome.OK or result.code is None:
                raise problems.outcome_problem(result.outcome)
            return s.ResetOut(code=result.code)
        return await decide(request, caller, idem, body, "reset_code", run, secret_answer=True)

    @app.post("/v1/admin/unblock", response_model=s.UnblockOut,
              responses=_COMMON | {404: _PROBLEM | {"description": "No such user"}},
              tags=["admin"], summary="The bank lifts a user's block (R11)")
    async def unblock(request: Request, body: s.UnblockIn, caller: admin_scope,
                      idem: IdemKey = None) -> Response:
        def run() -> s.UnblockOut:
            try:
                return s.UnblockOut(unblocked=service.unblock(
                    body.subscription, body.user_no, actor=f"api:{caller.key_id}"))
            except DirectoryError:  # the back office may know who exists (not a login)
                raise problems.Problem(404, "unknown-user", "No such user") from None
        return await decide(request, caller, idem, body, "unblock", run)

    @app.get("/v1/audit/verify", response_model=s.AuditOut, responses=_COMMON, tags=["audit"],
             summary="Verify the whole audit trail (R20)")
    async def audit_verify(caller: Annotated[Caller, Depends(need(Scope.AUDIT))]) -> s.AuditOut:
        report = await in_thread(store.verify_audit)
        return s.AuditOut(ok=report.ok, records=report.records,
                          problems=[str(p) for p in report.problems])

    @app.get("/healthz", response_model=s.HealthOut, tags=["operations"],
             summary="The process answers")
    async def healthz() -> s.HealthOut:
        return s.HealthOut(status="ok")

    @app.get("/readyz", response_model=s.HealthOut, tags=["operations"],
             responses={503: _COMMON[503]}, summary="The database answers, at this schema")
    async def readyz() -> s.HealthOut:
        try:
            with anyio.fail_after(2):
                version = await in_thread(store.schema_version)
        except Exception:  # noqa: BLE001 - any failure to answer is "not ready"
            log.warning("not ready: the database does not answer", exc_info=True)
            raise problems.unavailable() from None
        if version != SCHEMA_VERSION:
            raise problems.unavailable()
        return s.HealthOut(status="ok")

    @app.get("/metrics", tags=["operations"], responses=_COMMON,
             response_class=Response, summary="Prometheus metrics")
    async def prometheus(caller: Annotated[Caller, Depends(need(Scope.METRICS))]) -> Response:
        body, media = metrics.exposition()
        return Response(body, media_type=media)

    @app.exception_handler(problems.Problem)
    async def on_problem(request: Request, exc: problems.Problem) -> Response:
        return _problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        # where and what, never the value (it may be a code)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _problem_response(problems.malformed(f"{where}: {first.get('msg', 'invalid')}"))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        return _problem_response(problems.Problem(exc.status_code, f"http-{exc.status_code}",
                                                  str(exc.detail)))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        log.error("unexpected error", exc_info=exc, extra=log_fields(route=_route(request)))
        return _problem_response(problems.Problem(500, "internal", "Internal error"))

    with store.transaction() as tx:  # what earlier runs kept beyond its time
        tx.idempotent_purge(time.time_ns() // 1000 - limits.idempotency_hours * 3_600_000_000)
    app.add_middleware(Observed, metrics=metrics, route_of=_route)
    app.add_middleware(_BodyLimit, limit=limits.max_body_bytes)  # outermost: before any work
    return app


def _route(request: Request | AsgiScope) -> str:
    """The matched route's template (never the path: it may hold an id)."""
    scope = request.scope if isinstance(request, Request) else request
    route = scope.get("route")
    return getattr(route, "path", "unmatched")

