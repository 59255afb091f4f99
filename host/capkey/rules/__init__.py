"""The authentication service of rules.md (R1–R20) on top of `capkey.store`.

    from capkey.rules import AuthService, LoginRequest, RulesConfig
    from capkey.store import open_store

    service = AuthService(open_store("capkey.db"), cap_verifier=my_cap, signature_verifier=my_sig)
    challenge = service.issue_login_challenge("C1234", "U1")
    result = service.login(LoginRequest("C1234", "U1", cap_code="12345678",
                                        challenge_id=challenge.id))
    if result.outcome is Outcome.OK:
        service.authorize(result.session, "VIEW_ACCOUNTS")

Verifiers plug in behind `CapCheck` and `SignatureCheck` (see `capkey.rules.interfaces`);
back-office actions are on `service.directory` (`Directory`).
"""

from .codes import WeakCode, check_policy
from .config import ConfigError, RulesConfig
from .directory import Directory, DirectoryError, check_card_profile, subject_of
from .interfaces import (
    CapAccepted,
    CapCard,
    CapCheck,
    CapMode,
    CapResync,
    Clock,
    RegisteredCertificate,
    Rejected,
    SignatureCheck,
    SigningIntent,
    SystemClock,
)
from .model import (
    DEFAULT_SENSITIVE,
    PERMANENT_BLOCK_IMMINENT,
    AuthLevel,
    Batch,
    CertEvidence,
    InvalidTransaction,
    LoginChallenge,
    LoginRequest,
    LoginResult,
    Method,
    Operation,
    OperationRef,
    Outcome,
    Payment,
    ResetResult,
    Role,
    Session,
    StepUpChallenge,
    UserState,
    login_digest,
)
from .records import (
    MAX_PAYLOAD,
    PayloadError,
    cap_sign_challenge,
    check_iban,
    check_origin,
    check_payee_name,
    display_lines,
    format_amount,
    format_iban,
    signing_payload,
)
from .service import AuthService, from_us, to_us

__all__ = [
    "AuthLevel", "AuthService", "Batch", "CapAccepted", "CapCard", "CapCheck", "CapMode", "CapResync", "CertEvidence",
    "Clock", "ConfigError", "DEFAULT_SENSITIVE", "Directory", "DirectoryError",
    "InvalidTransaction", "LoginChallenge", "LoginRequest", "LoginResult", "Method", "Operation",
    "OperationRef", "Outcome", "PERMANENT_BLOCK_IMMINENT", "Payment", "RegisteredCertificate",
    "Rejected", "ResetResult", "Role", "RulesConfig", "Session", "SignatureCheck",
    "SigningIntent", "StepUpChallenge", "SystemClock", "UserState",
    "check_card_profile", "from_us", "login_digest", "subject_of", "to_us",
    # what a web front end needs of the rules (the portal imports nothing else)
    "MAX_PAYLOAD", "PayloadError", "WeakCode", "cap_sign_challenge", "check_iban",
    "check_origin", "check_payee_name", "check_policy", "display_lines", "format_amount",
    "format_iban", "signing_payload",
]
