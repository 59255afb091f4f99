"""What `capkey serve` hands each uvicorn worker: one JSON document in ``$CAPKEY_SERVE``, from
which every worker builds its own store connection, verifiers and app (`app_from_environment`).
It names files, never holds a key."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass

import uvicorn
from starlette.types import ASGIApp

from ..cert.ca import load_trust
from ..emv.issuer import IssuerBackend, SoftwareIssuerBackend, load_imk_file
from ..rules import AuthService
from ..rules.adapters import CapVerifier, SignatureVerifier
from ..store import Store, open_store
from .app import Limits, create_app

ENV = "CAPKEY_SERVE"


@dataclass(frozen=True)
class ServeConfig:
    """`db`: a SQLite path or ``postgresql://`` URL; `origin`: the bank's login page origin
    (in every login payload); `imk_file` + `kek_file` the issuer key (or `test_keys`: the
    published EMV test key, for tests and demos), None for no CAP logins; `ca_dir`: the CA
    folder whose public files verify certificate logins, None for none."""

    db: str
    origin: str
    imk_file: str | None = None
    kek_file: str | None = None
    test_keys: bool = False
    ca_dir: str | None = None
    max_body_bytes: int = Limits.max_body_bytes
    request_seconds: float = Limits.request_seconds
    group_commit: bool | None = None  # None: the engine's default (rules.md, "Durability")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def issuer(self) -> IssuerBackend | None:
        if self.test_keys:
            return SoftwareIssuerBackend.for_tests()
        if self.imk_file is None or self.kek_file is None:
            return None
        return load_imk_file(self.imk_file, self.kek_file)[0]

    def service(self, store: Store | None = None, *, migrate: bool = True) -> AuthService:
        """The rules service over `store` (default: `db` opened, migrated if `migrate`)."""
        issuer = self.issuer()
        signature = None
        if self.ca_dir is not None:
            trust, revocation = load_trust(self.ca_dir)
            signature = SignatureVerifier(trust, revocation, origin=self.origin)
        return AuthService(
            store if store is not None else open_store(self.db, migrate=migrate,
                                                       group_commit=self.group_commit),
            cap_verifier=None if issuer is None else CapVerifier(issuer, origin=self.origin),
            signature_verifier=signature, actor="capkey-serve")

    def app(self, *, migrate: bool = True) -> ASGIApp:
        return create_app(self.service(migrate=migrate),
                          limits=Limits(self.max_body_bytes, self.request_seconds))


class TcpConfig(uvicorn.Config):
    """uvicorn's configuration, with the several workers' listening socket made with its
    protocol named: uvicorn makes it without IPPROTO_TCP, so asyncio in the workers leaves
    Nagle's algorithm on for their connections, and an answer written in two parts stalls 40 ms
    on the client's delayed ACK (measured: 44 ms per request with 2 workers, 2 ms with 1)."""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        tcp = socket.socket(fileno=sock.detach())  # family, type and protocol read back
        tcp.set_inheritable(True)
        return tcp


def app_from_environment() -> ASGIApp:
    """The uvicorn factory (``capkey.server.config:app_from_environment``): one app per worker
    from ``$CAPKEY_SERVE``. `capkey serve` has already migrated the database."""
    return ServeConfig(**json.loads(os.environ[ENV])).app(migrate=False)
