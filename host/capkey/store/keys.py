"""The audit key: the HMAC-SHA256 key of the audit chain and of its checkpoints (rules.md R20),
kept outside the database so that someone who can write the database cannot recompute the chain.

The shape is the issuer's key backend (`capkey.emv.issuer`): the store only ever asks an
:class:`AuditKey` for a MAC, the way a payment HSM is asked, so an HSM or KMS implementation
registers against the ABC (``AuditKey.register(MyHsmKey)``) and implements :meth:`AuditKey.mac`.
:class:`SoftwareAuditKey` holds the key in process memory, loaded from its wrapped form: AES key
wrap (RFC 3394) under a key-encryption key, the scheme of `capkey.emv.issuer.wrap_key`, so one
KEK in a KMS can serve both.

A key file (``capkey audit new-key``) is JSON ``{"kind": "capkey-audit-key", "key_id", "wrapped"}``;
the KEK file holds 16, 24 or 32 bytes, raw or hex. `key_from_environment` reads both from the
files named by ``CAPKEY_AUDIT_KEY_FILE`` and ``CAPKEY_AUDIT_KEK_FILE``.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import json
import logging
import os
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import keywrap

from .errors import StoreError

KEY_FILE_ENV = "CAPKEY_AUDIT_KEY_FILE"
KEK_FILE_ENV = "CAPKEY_AUDIT_KEK_FILE"
#: "1": the published test key, for development and tests only (said in a warning and by
#: ``capkey audit verify``); a store never falls back to it on its own.
TEST_KEY_ENV = "CAPKEY_AUDIT_TEST_KEY"

_log = logging.getLogger(__name__)
_KIND = "capkey-audit-key"
_KEY_BYTES = 32
_KEK_BYTES = (16, 24, 32)


class AuditKeyError(StoreError):
    """The audit key cannot be loaded (missing or unreadable file, wrong KEK, altered blob)."""


class AuditKey(abc.ABC):
    """HSM-shaped: the key never leaves it, only MACs do."""

    @abc.abstractmethod
    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA256 of `message` under the audit key (32 bytes)."""

    @cached_property
    def key_id(self) -> str:
        """12 hex digits naming the key (a check value, as an IMK's KCV): in every keyed segment
        start record and checkpoint, so that a wrong key reads as a wrong key."""
        return self.mac(b"capkey-audit-key-id\x00")[:6].hex()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.key_id!r})"


class SoftwareAuditKey(AuditKey):
    def __init__(self, key: bytes):
        if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
            raise ValueError(f"an audit key is {_KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def generate(cls) -> SoftwareAuditKey:
        return cls(os.urandom(_KEY_BYTES))

    @classmethod
    def for_tests(cls) -> SoftwareAuditKey:
        """The published test key: what a store uses when it is given no key. A trail keyed
        under it resists nothing (anyone can recompute it); `capkey audit verify` says so."""
        return cls(hashlib.sha256(b"capkey published test audit key").digest())

    @classmethod
    def from_wrapped(cls, kek: bytes, wrapped: bytes) -> SoftwareAuditKey:
        try:
            return cls(keywrap.aes_key_unwrap(_check_kek(kek), wrapped))
        except (keywrap.InvalidUnwrap, ValueError):
            raise AuditKeyError("audit key unwrap failed (wrong KEK or altered key file)") from None

    def wrapped(self, kek: bytes) -> bytes:
        """The key AES-wrapped under `kek`, for storage at rest."""
        return keywrap.aes_key_wrap(_check_kek(kek), self._key)

    def key_file(self, kek: bytes) -> str:
        """The text of a key file holding this key wrapped under `kek`."""
        return json.dumps({"kind": _KIND, "key_id": self.key_id,
                           "wrapped": self.wrapped(kek).hex()}, indent=1) + "\n"

    def mac(self, message: bytes) -> bytes:
        return hmac.digest(self._key, message, "sha256")


def is_test_key(key: AuditKey) -> bool:
    return key.key_id == SoftwareAuditKey.for_tests().key_id


def _check_kek(kek: bytes) -> bytes:
    if not isinstance(kek, bytes) or len(kek) not in _KEK_BYTES:
        raise AuditKeyError("the key-encryption key (KEK) must be 16, 24 or 32 bytes")
    return kek


def read_kek(path: Path) -> bytes:
    """A KEK file: 16, 24 or 32 bytes, raw or hex."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"cannot read the KEK file {path}: {exc.strerror}") from None
    try:
        kek = bytes.fromhex(data.decode("ascii"))  # whitespace (a final newline) ignored
    except (UnicodeDecodeError, ValueError):
        kek = data
    if len(kek) not in _KEK_BYTES:
        raise AuditKeyError(f"{path}: the key-encryption key (KEK) must be 16, 24 or 32 bytes, "
                            "raw or hex")
    return kek


def load_key_file(key_file: Path, kek: bytes) -> SoftwareAuditKey:
    try:
        doc = json.loads(key_file.read_text())
        if doc["kind"] != _KIND:
            raise ValueError(f"not a {_KIND} file")
        key_id, wrapped = doc["key_id"], bytes.fromhex(doc["wrapped"])
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit key file {key_file}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AuditKeyError(f"{key_file}: unreadable audit key file ({exc})") from None
    key = SoftwareAuditKey.from_wrapped(kek, wrapped)
    if key.key_id != key_id:
        raise AuditKeyError(f"{key_file}: the key does not match its key_id (altered file)")
    return key


def key_from_environment() -> SoftwareAuditKey | None:
    """The key of ``$CAPKEY_AUDIT_KEY_FILE`` unwrapped with ``$CAPKEY_AUDIT_KEK_FILE``; else the
    published test key when ``$CAPKEY_AUDIT_TEST_KEY`` is ``1`` (with a warning); else None."""
    key_file, kek_file = os.environ.get(KEY_FILE_ENV), os.environ.get(KEK_FILE_ENV)
    if not key_file and not kek_file:
        if os.environ.get(TEST_KEY_ENV) == "1":
            _log.warning("$%s=1: the audit trail is keyed under the published test key and does "
                         "not resist someone who can write the database", TEST_KEY_ENV)
            return SoftwareAuditKey.for_tests()
        return None
    if not key_file or not kek_file:
        raise AuditKeyError(f"set both {KEY_FILE_ENV} and {KEK_FILE_ENV}, or neither")
    return load_key_file(Path(key_file), read_kek(Path(kek_file)))
