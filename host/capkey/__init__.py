"""capkey host package: talk to capkey devices, issue their credentials, verify what they produce.

The public API, importable from here (``from capkey import AuthService, open_store``):

    store = open_store("capkey.db", audit_key=load_key_file(key_path, read_kek(kek_path)))
    service = AuthService(store, cap_verifier=CapVerifier(SoftwareIssuerBackend(...), origin=...))
    result = service.login(LoginRequest("123456789", "01", cap_code="…", challenge_id=…))

Every error capkey raises by design derives from :class:`capkey.Error`. Names are resolved on first
use, so ``import capkey`` stays light (a tool that only needs the errors does not load the database
drivers). The tiers behind these names: docs/architecture.md, "Host tiers".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import Error

__version__ = "0.1.0"

# public name -> the module that defines it (each catalogue of names is the module's own)
_EXPORTS = {
    # the authentication service and its model (capkey.rules)
    **dict.fromkeys(
        ("AuthService", "AuthLevel", "Batch", "CapAccepted", "CertEvidence", "ConfigError",
         "Directory", "DirectoryError", "InvalidTransaction", "LoginChallenge", "LoginRequest",
         "LoginResult", "Method", "Operation", "OperationRef", "Outcome", "Payment", "Rejected",
         "RulesConfig", "Session", "StepUpChallenge", "UserState", "WeakCode"),
        "capkey.rules"),
    **dict.fromkeys(("CapVerifier", "SignatureVerifier"), "capkey.rules.adapters"),
    # state (capkey.store)
    **dict.fromkeys(
        ("AuditKey", "AuditKeyError", "Conflict", "SoftwareAuditKey", "Store", "StoreError",
         "load_key_file", "open_store", "read_kek"),
        "capkey.store"),
    # EMV CAP: issuer keys and code verification (capkey.emv)
    **dict.fromkeys(("IssuerBackend", "SoftwareIssuerBackend", "WeakKey", "personalisation_data"),
                    "capkey.emv.issuer"),
    **dict.fromkeys(("CapProfile", "PROFILES"), "capkey.emv.profiles"),
    **dict.fromkeys(("CapMatch", "InvalidCode", "match_cap", "match_resync", "verify_cap"),
                    "capkey.emv.verifier"),
    # certificates: the CA and signature verification (capkey.cert)
    **dict.fromkeys(("CaError", "CertificateAuthority"), "capkey.cert.ca"),
    **dict.fromkeys(("InvalidSignature", "TrustConfig", "verify_signature"), "capkey.cert.verifier"),
    # devices over the link (capkey.link)
    **dict.fromkeys(("Device", "scan_devices"), "capkey.link.device"),
    **dict.fromkeys(("CardClient",), "capkey.link.card"),
    **dict.fromkeys(("KeyClient",), "capkey.link.key"),
    **dict.fromkeys(("DeviceBusy", "LinkError", "ProtocolError", "TransportError"),
                    "capkey.link.errors"),
    # the service over HTTP (capkey.server; `capkey serve` runs it)
    **dict.fromkeys(("ApiKeyError", "Limits", "Scope", "create_app", "create_key", "revoke_key"),
                    "capkey.server"),
}

__all__ = ["Error", "__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'capkey' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .cert.ca import CaError, CertificateAuthority
    from .cert.verifier import InvalidSignature, TrustConfig, verify_signature
    from .emv.issuer import IssuerBackend, SoftwareIssuerBackend, WeakKey, personalisation_data
    from .emv.profiles import PROFILES, CapProfile
    from .emv.verifier import CapMatch, InvalidCode, match_cap, match_resync, verify_cap
    from .link.card import CardClient
    from .link.device import Device, scan_devices
    from .link.errors import DeviceBusy, LinkError, ProtocolError, TransportError
    from .link.key import KeyClient
    from .rules import (
        AuthLevel,
        AuthService,
        Batch,
        CapAccepted,
        CertEvidence,
        ConfigError,
        Directory,
        DirectoryError,
        InvalidTransaction,
        LoginChallenge,
        LoginRequest,
        LoginResult,
        Method,
        Operation,
        OperationRef,
        Outcome,
        Payment,
        Rejected,
        RulesConfig,
        Session,
        StepUpChallenge,
        UserState,
        WeakCode,
    )
    from .rules.adapters import CapVerifier, SignatureVerifier
    from .server import ApiKeyError, Limits, Scope, create_app, create_key, revoke_key
    from .store import (
        AuditKey,
        AuditKeyError,
        Conflict,
        SoftwareAuditKey,
        Store,
        StoreError,
        load_key_file,
        open_store,
        read_kek,
    )
