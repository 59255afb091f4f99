"""Rule settings, validated at construction (style: refuse weak or ambiguous parameters)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import Error
from .model import CHANGE_CODE, DEFAULT_SENSITIVE, Operation


class ConfigError(Error, ValueError):
    """A setting breaks a rule of rules.md (e.g. SCA renewal above 180 days)."""


MAX_SCA_RENEWAL_DAYS = 180  # RTS 10 as amended by 2022/2360
MAX_INACTIVITY_SECONDS = 300  # RTS 4(3)(d)
MAX_CHALLENGE_TTL_SECONDS = 300  # R9
MAX_FAILURES = 5  # RTS 4(3)(b)


@dataclass(frozen=True)
class RulesConfig:
    """Settings of `AuthService`. Defaults follow the guide and rules.md."""

    sca_renewal_days: int = 90  # R5
    inactivity_seconds: int = 300  # R13
    sensitive_operations: frozenset[str] = field(default_factory=lambda: DEFAULT_SENSITIVE)  # R6
    max_failures: int = 5  # R10
    block_duration_seconds: int = 3600  # R10
    max_temporary_blocks: int = 3  # R11
    challenge_ttl_seconds: int = 300  # R9
    step_up_grant_ttl_seconds: int = 300  # how long a completed step-up may wait for its operation
    # A CAP login takes the guide's Identify code (CODE key) or a Respond code; True: Respond only
    cap_login_respond_only: bool = False

    def __post_init__(self) -> None:
        def whole(name: str, low: int, high: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer in [{low}, {high}], not {value!r}")

        whole("sca_renewal_days", 1, MAX_SCA_RENEWAL_DAYS)
        whole("inactivity_seconds", 1, MAX_INACTIVITY_SECONDS)
        whole("max_failures", 1, MAX_FAILURES)
        whole("block_duration_seconds", 1, 10 * 365 * 86400)
        whole("max_temporary_blocks", 0, 100)
        whole("challenge_ttl_seconds", 1, MAX_CHALLENGE_TTL_SECONDS)
        whole("step_up_grant_ttl_seconds", 1, MAX_CHALLENGE_TTL_SECONDS)
        if not isinstance(self.cap_login_respond_only, bool):
            raise ConfigError("cap_login_respond_only must be True or False")
        ops = self.sensitive_operations
        if isinstance(ops, str) or not all(isinstance(op, str) and op for op in ops):
            raise ConfigError("sensitive_operations must be a set of operation names")
        ops = frozenset(op.value if isinstance(op, Operation) else op for op in ops)
        if not ops:
            raise ConfigError("sensitive_operations can never be empty")
        if CHANGE_CODE in ops:
            raise ConfigError("CHANGE_CODE cannot need a step-up (R14 allows it alone)")
        object.__setattr__(self, "sensitive_operations", ops)

    def to_json(self) -> str:
        """Canonical form, stored to detect (and audit) configuration changes (R20)."""
        data = dict(self.__dict__)
        data["sensitive_operations"] = sorted(self.sensitive_operations)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))
