"""Confidential codes (*code confidentiel*): Argon2id hashing, verification, policy, generation.

    hasher = CodeHasher()                    # production parameters (RFC 9106 low-memory)
    stored = hasher.hash("k7Qm2Rx9")         # salted Argon2id, PHC string
    hasher.verify(stored, "k7Qm2Rx9")        # -> None, or raises InvalidConfidentialCode
    check_policy("k7Qm2Rx9", old="...")      # -> None, or raises WeakCode(reason)
    generate_code()                          # a random code that satisfies the policy

Only the hash is ever stored (rules.md R18). Every failure of `verify` — wrong code, malformed
hash, wrong type — is the same `InvalidConfidentialCode`, so callers cannot become an oracle.
`CodeHasher.dummy_verify` spends the same time as a real verification; the rules use it for
unknown or blocked users so that the answer time does not tell them apart (R2).
"""

from __future__ import annotations

import hmac
import secrets
import unicodedata

import argon2
from argon2.low_level import Type

from ..errors import Error

__all__ = [
    "CodeHasher", "InvalidConfidentialCode", "WeakCode", "check_policy", "generate_code",
    "MIN_LENGTH", "MAX_LENGTH",
]

MIN_LENGTH = 8
MAX_LENGTH = 64

# RFC 9106 section 4, second recommended option ("memory-constrained"), and the floor below which
# the constructor refuses parameters unless the caller marks them as test-only.
_DEFAULT = {"time_cost": 3, "memory_cost": 64 * 1024, "parallelism": 4}
_FLOOR_TIME, _FLOOR_MEMORY = 2, 19 * 1024  # OWASP minimum for Argon2id: m=19 MiB, t=2

_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # no 0/O, 1/l/I
_DENYLIST = frozenset({
    "password", "motdepasse", "azertyui", "azerty123", "qwertyui", "qwerty123", "12345678",
    "123456789", "1234567890", "87654321", "00000000", "11111111", "abcdefgh", "abcd1234",
    "password1", "coopaccess", "iloveyou", "soleil123", "bonjour1",
})


class InvalidConfidentialCode(Error):
    """The confidential code does not match (no detail, by design)."""


class WeakCode(Error, ValueError):
    """A new code breaks the policy; `reason` is a short token (safe to show and to log)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _normalise(code: str) -> str:
    if not isinstance(code, str):
        raise TypeError("code must be str")
    return unicodedata.normalize("NFC", code)


class CodeHasher:
    """Argon2id with explicit parameters. Weak parameters need ``allow_weak=True`` (tests only)."""

    def __init__(self, *, time_cost: int = _DEFAULT["time_cost"],
                 memory_cost: int = _DEFAULT["memory_cost"],
                 parallelism: int = _DEFAULT["parallelism"], allow_weak: bool = False):
        if not allow_weak and (time_cost < _FLOOR_TIME or memory_cost < _FLOOR_MEMORY):
            raise ValueError(
                f"Argon2id parameters below t={_FLOOR_TIME}, m={_FLOOR_MEMORY} KiB "
                "need allow_weak=True (tests only)"
            )
        if parallelism < 1:
            raise ValueError("parallelism must be >= 1")
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism,
            hash_len=32, salt_len=16, type=Type.ID,
        )
        # The dummy hash of `dummy_verify` uses the same parameters, hence the same cost.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    @classmethod
    def insecure_for_tests(cls) -> CodeHasher:
        """Cheapest Argon2id parameters: fast tests, never production."""
        return cls(time_cost=1, memory_cost=8, parallelism=1, allow_weak=True)

    def hash(self, code: str) -> str:
        return self._hasher.hash(_normalise(code))

    def verify(self, stored_hash: str, code: str) -> None:
        """Returns None if `code` matches `stored_hash`; raises `InvalidConfidentialCode` for a
        mismatch and for every malformed input."""
        try:
            if not isinstance(stored_hash, str) or not stored_hash.startswith("$argon2id$"):
                raise ValueError("not an Argon2id hash")
            self._hasher.verify(stored_hash, _normalise(code))
        except Exception:
            raise InvalidConfidentialCode() from None

    def dummy_verify(self, code: object = "") -> None:
        """Spends the time of one verification, then raises `InvalidConfidentialCode`."""
        try:
            self._hasher.verify(self._dummy, code if isinstance(code, str) else "")
        except Exception:
            pass
        raise InvalidConfidentialCode()

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


def _is_run(s: str) -> bool:
    """All characters the same, or a straight ascending/descending run (1234…, abcd…, 9876…)."""
    if len(set(s)) == 1:
        return True
    steps = {ord(b) - ord(a) for a, b in zip(s, s[1:], strict=False)}
    return steps in ({1}, {-1})


def check_policy(new: str, *, old: str | None = None) -> None:
    """Raises `WeakCode` unless `new` is an acceptable confidential code (R14): length within
    [MIN_LENGTH, MAX_LENGTH], printable, not trivial (a single repeated character, a straight run,
    a repeated short pattern, a common word), and different from `old`."""
    new = _normalise(new)
    if len(new) < MIN_LENGTH:
        raise WeakCode("too_short")
    if len(new) > MAX_LENGTH:
        raise WeakCode("too_long")
    if not new.isprintable() or new != new.strip():
        raise WeakCode("bad_characters")
    lowered = new.lower()
    if _is_run(lowered) or lowered in _DENYLIST or len(set(lowered)) < 3:
        raise WeakCode("trivial")
    for period in range(1, len(lowered) // 2 + 1):
        if len(lowered) % period == 0 and lowered == lowered[:period] * (len(lowered) // period):
            raise WeakCode("trivial")
    if old is not None and hmac.compare_digest(new.encode(), _normalise(old).encode()):
        raise WeakCode("same_as_old")


def generate_code(length: int = 10) -> str:
    """A random code (about 5.8 bits per character) from an alphabet without look-alikes, meeting
    `check_policy`. Shown once to the person who will hand it over; only its hash is stored."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError("length out of policy")
    while True:
        code = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        try:
            check_policy(code)
        except WeakCode:
            continue
        return code
