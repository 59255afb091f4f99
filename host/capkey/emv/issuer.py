"""EMV CAP issuer: master keys, the key backend of the verifier, key wrapping, personalisation.

Keys never appear in the verifier: it asks an :class:`IssuerBackend` for the application cryptogram
of a card (identified by a :class:`CardKeyRef`: IMK label, PAN, PSN, derivation option), the way a
payment HSM is asked to compute or check a cryptogram under a key it holds. Two implementations:

- :class:`SoftwareIssuerBackend`: IMKs in process memory, loaded from their wrapped form
  (:func:`wrap_key` / :func:`unwrap_key`, AES key wrap, RFC 3394, under a key-encryption key that
  can live in a KMS; rules.md R18). Card keys are derived on demand and cached per thread, with
  the IMKs' cipher contexts.
- An HSM back end registers against the ABC (``IssuerBackend.register(MyHsm)``) and implements the
  same calls with the keys inside the HSM.

Published test keys (the EMV book key ``0123…3210`` of docs/cap.md §7) and degenerate keys are
refused unless ``allow_test_keys=True`` is passed explicitly. Exporting a card key in the clear
(needed to personalise a card over the trusted issuance link) requires ``NoEncryption()``.
"""

from __future__ import annotations

import abc
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import keywrap

from ..errors import Error
from . import hazmat as emv
from . import tlv
from .hazmat import CardKey, Cvn, KeyDerivation, TdesKey, check_bytes, check_digits, check_psn
from .profiles import CapProfile

__all__ = [
    "TEST_IMK",
    "TEST_IMK_LABEL",
    "load_imk_file",
    "read_kek_file",
    "WeakKey",
    "CardKeyRef",
    "KeyEncryption",
    "NoEncryption",
    "WrapWith",
    "IssuerBackend",
    "SoftwareIssuerBackend",
    "wrap_key",
    "unwrap_key",
    "generate_imk",
    "personalisation_data",
    "TAG_PROFILE",
    "TAG_UDK",
    "TAG_PIN_BLOCK",
    "TAG_PIN_TRY_LIMIT",
    "TAG_INITIAL_ATC",
]

#: The EMV book / pyemv test IMK (KCV 08D7). Only with allow_test_keys=True.
TEST_IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TEST_IMK_LABEL = "test-imk"

# PERSONALISE TLV tags (docs/cap.md §6, contract with the firmware applet).
TAG_PROFILE = 0xDF01
TAG_PAN = 0x5A
TAG_PSN = 0x5F34
TAG_UDK = 0xDF02
TAG_PIN_BLOCK = 0xDF03
TAG_PIN_TRY_LIMIT = 0xDF04
TAG_INITIAL_ATC = 0xDF05


class WeakKey(Error, ValueError):
    """A published test key or a degenerate key was given without ``allow_test_keys=True``."""


def _is_weak(key: bytes) -> bool:
    k1, k2 = emv.adjust_parity(key[:8]), emv.adjust_parity(key[8:16])
    # K1 == K2 is single DES; a single repeated byte (00…, FF…, 01…) is a placeholder.
    return key == TEST_IMK or k1 == k2 or len(set(key)) == 1


def _check_key(name: str, key: object, allow_test_keys: bool) -> bytes:
    key = check_bytes(name, key, 16)
    if _is_weak(key) and allow_test_keys is not True:
        raise WeakKey(f"{name} is a published or degenerate test key; pass allow_test_keys=True")
    return key


# ---------------------------------------------------------------------------------------------
# Key wrapping at rest


def wrap_key(kek: bytes, key: bytes) -> bytes:
    """AES key wrap (RFC 3394) of `key` (16 or 24 bytes) under `kek` (16, 24 or 32 bytes)."""
    kek = check_bytes("kek", kek)
    if len(kek) not in (16, 24, 32):
        raise ValueError("kek must be an AES key (16, 24 or 32 bytes)")
    key = check_bytes("key", key)
    if len(key) not in (16, 24):
        raise ValueError("key must be 16 or 24 bytes")
    return keywrap.aes_key_wrap(kek, key)


def unwrap_key(kek: bytes, wrapped: bytes) -> bytes:
    """Inverse of :func:`wrap_key`; raises ValueError if the KEK is wrong or the blob altered."""
    kek = check_bytes("kek", kek)
    if len(kek) not in (16, 24, 32):
        raise ValueError("kek must be an AES key (16, 24 or 32 bytes)")
    try:
        return keywrap.aes_key_unwrap(kek, check_bytes("wrapped", wrapped))
    except keywrap.InvalidUnwrap:
        raise ValueError("key unwrap failed (wrong KEK or altered data)") from None


def generate_imk() -> bytes:
    """A fresh random double-length IMK (odd parity)."""
    while True:
        key = emv.adjust_parity(os.urandom(16))
        if not _is_weak(key):
            return key


# ---------------------------------------------------------------------------------------------
# Key references and export markers


@dataclass(frozen=True)
class CardKeyRef:
    """Names a card key without holding it: derived from IMK `imk_label` for PAN/PSN."""

    imk_label: str
    pan: str
    psn: int
    derivation: KeyDerivation
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.imk_label, str) or not self.imk_label:
            raise ValueError("imk_label must be a non-empty str")
        check_digits("pan", self.pan, 12, 19)
        check_psn(self.psn)
        if not isinstance(self.derivation, KeyDerivation):
            raise TypeError("derivation must be a KeyDerivation")
        # The key cache looks a reference up on every cryptogram: hash it once.
        object.__setattr__(self, "_hash", hash((self.imk_label, self.pan, self.psn, self.derivation.value)))

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:  # never print the full PAN (R18)
        return f"CardKeyRef({self.imk_label!r}, pan=…{self.pan[-4:]}, psn={self.psn:02d})"


class KeyEncryption:
    """How an exported key leaves the backend (NoEncryption or WrapWith)."""


class NoEncryption(KeyEncryption):
    """Explicit marker: export the key in the clear (personalisation over a trusted link)."""


@dataclass(frozen=True)
class WrapWith(KeyEncryption):
    """Export the key AES-wrapped under `kek`."""

    kek: bytes

    def __post_init__(self) -> None:
        if len(check_bytes("kek", self.kek)) not in (16, 24, 32):
            raise ValueError("kek must be an AES key")

    def __repr__(self) -> str:
        return "WrapWith(<kek>)"


# ---------------------------------------------------------------------------------------------
# Backends


class IssuerBackend(abc.ABC):
    """HSM-shaped key backend: every call names keys by reference."""

    @abc.abstractmethod
    def generate_ac(self, ref: CardKeyRef, cvn: Cvn, minimum: bytes, iad: bytes) -> bytes:
        """The 8-byte application cryptogram of card `ref` for `cvn` over the 33-byte EMV
        minimum data set and the IAD (see :func:`capkey.emv.hazmat.generate_ac`)."""

    @abc.abstractmethod
    def export_card_key(self, ref: CardKeyRef, encryption: KeyEncryption) -> bytes:
        """The card's ICC master key (UDK), for personalisation."""

    @abc.abstractmethod
    def imk_kcv(self, label: str) -> bytes:
        """3-byte key check value of an IMK (to show and compare, never the key)."""


class SoftwareIssuerBackend(IssuerBackend):
    """IMKs held in process memory. Construct from wrapped keys with :meth:`from_wrapped`.

    Card keys (and their cipher contexts) are cached per thread, at most `cache_size` cards,
    least recently used first out.
    """

    def __init__(
        self,
        imks: Mapping[str, bytes],
        *,
        allow_test_keys: bool = False,
        cache_size: int = 4096,
    ):
        if not isinstance(imks, Mapping) or not imks:
            raise ValueError("imks must be a non-empty mapping label -> 16-byte key")
        self._imks: dict[str, bytes] = {}
        for label, key in imks.items():
            if not isinstance(label, str) or not label:
                raise ValueError("IMK labels must be non-empty str")
            self._imks[label] = _check_key(f"IMK {label!r}", key, allow_test_keys)
        if not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError("cache_size must be a positive int")
        self._cache_size = cache_size
        self._local = threading.local()

    @classmethod
    def from_wrapped(
        cls, kek: bytes, wrapped: Mapping[str, bytes], *, allow_test_keys: bool = False, cache_size: int = 4096
    ) -> SoftwareIssuerBackend:
        return cls(
            {label: unwrap_key(kek, blob) for label, blob in wrapped.items()},
            allow_test_keys=allow_test_keys,
            cache_size=cache_size,
        )

    @classmethod
    def for_tests(cls) -> SoftwareIssuerBackend:
        """A backend holding only the published test IMK under TEST_IMK_LABEL."""
        return cls({TEST_IMK_LABEL: TEST_IMK}, allow_test_keys=True)

    def wrapped_imks(self, kek: bytes) -> dict[str, bytes]:
        """Every IMK wrapped under `kek`, for storage at rest."""
        return {label: wrap_key(kek, key) for label, key in self._imks.items()}

    def __repr__(self) -> str:
        return f"SoftwareIssuerBackend(labels={sorted(self._imks)!r})"

    def _imk(self, label: str) -> bytes:
        try:
            return self._imks[label]
        except KeyError:
            raise KeyError(f"unknown IMK label {label!r}") from None

    def _udk(self, ref: CardKeyRef) -> bytes:
        if not isinstance(ref, CardKeyRef):
            raise TypeError("ref must be a CardKeyRef")
        return emv.derive_icc_mk(self._imk(ref.imk_label), ref.pan, ref.psn, ref.derivation)

    def _card_key(self, ref: CardKeyRef) -> CardKey:
        local = self._local
        cache: OrderedDict[CardKeyRef, CardKey] | None = getattr(local, "cache", None)
        if cache is None:
            cache = local.cache = OrderedDict()
            local.imk_keys = {}
        key = cache.get(ref)
        if key is not None:
            cache.move_to_end(ref)
            return key
        if not isinstance(ref, CardKeyRef):
            raise TypeError("ref must be a CardKeyRef")
        # The IMK's context is kept per thread too: a card not in the cache costs one ECB pass
        # for its key, not a new IMK context.
        imk = local.imk_keys.get(ref.imk_label)
        if imk is None:
            imk = local.imk_keys[ref.imk_label] = TdesKey(self._imk(ref.imk_label))
        key = cache[ref] = CardKey.from_imk(imk, ref.pan, ref.psn, ref.derivation)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return key

    def generate_ac(self, ref: CardKeyRef, cvn: Cvn, minimum: bytes, iad: bytes) -> bytes:
        return self._card_key(ref).generate_ac(cvn, minimum, iad)

    def export_card_key(self, ref: CardKeyRef, encryption: KeyEncryption) -> bytes:
        udk = self._udk(ref)
        if isinstance(encryption, NoEncryption):
            return udk
        if isinstance(encryption, WrapWith):
            return wrap_key(encryption.kek, udk)
        raise TypeError("encryption must be NoEncryption() or WrapWith(kek)")

    def imk_kcv(self, label: str) -> bytes:
        return emv.kcv(self._imk(label))


# ---------------------------------------------------------------------------------------------
# Personalisation


def personalisation_data(
    backend: IssuerBackend,
    *,
    profile: CapProfile,
    imk_label: str,
    pan: str,
    psn: int,
    pin: str | bytes | bytearray,
    pin_try_limit: int = 3,
    initial_atc: int | None = None,
) -> bytearray:
    """The PERSONALISE payload (docs/cap.md §6): BER-TLV DF01 profile id, 5A PAN, 5F34 PSN,
    DF02 card UDK (derived from the IMK, parity-adjusted), DF03 PIN block (ISO 9564 format 2),
    DF04 PIN try limit, [DF05 initial ATC].

    It holds the card key and the PIN block in the clear: the caller sends it to the device over
    the issuance link and then wipes the returned bytearray (``data[:] = bytes(len(data))``).
    """

    if not isinstance(profile, CapProfile):
        raise TypeError("profile must be a CapProfile")
    ref = CardKeyRef(imk_label, pan, psn, profile.derivation)
    if not isinstance(pin_try_limit, int) or not 1 <= pin_try_limit <= 15:
        raise ValueError("pin_try_limit must be 1-15")
    if initial_atc is not None and (not isinstance(initial_atc, int) or not 0 <= initial_atc <= 0xFF00):
        raise ValueError("initial_atc must be 0-0xFF00")
    udk = bytearray(backend.export_card_key(ref, NoEncryption()))
    pin_block = bytearray(emv.pin_block_format2(pin))
    items = [
        (TAG_PROFILE, bytes([profile.profile_id])),
        (TAG_PAN, emv.pack_bcd_f(pan)),
        (TAG_PSN, bytes.fromhex(f"{psn:02d}")),
        (TAG_UDK, bytes(udk)),
        (TAG_PIN_BLOCK, bytes(pin_block)),
        (TAG_PIN_TRY_LIMIT, bytes([pin_try_limit])),
    ]
    if initial_atc is not None:
        items.append((TAG_INITIAL_ATC, initial_atc.to_bytes(2, "big")))
    out = bytearray(tlv.encode_many(items))
    udk[:] = bytes(len(udk))
    pin_block[:] = bytes(len(pin_block))
    return out


def read_kek_file(path: str | os.PathLike[str]) -> bytes:
    """A key-encryption key file: 16, 24 or 32 bytes, raw or as hex. ValueError otherwise."""
    raw = Path(path).read_bytes().strip()
    if len(raw) == 64:
        try:
            raw = bytes.fromhex(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(raw) not in (16, 24, 32):
        raise ValueError(f"{path}: the key-encryption key (KEK) must be 16, 24 or 32 bytes")
    return raw


def load_imk_file(imk_file: str | os.PathLike[str], kek_file: str | os.PathLike[str]
                  ) -> tuple[SoftwareIssuerBackend, str]:
    """The backend holding the IMK of an issuer key file (``capkey card new-imk``: JSON with
    ``label`` and ``wrapped``, the IMK wrapped under the KEK), and its label. ValueError or
    OSError when a file is unreadable or the key does not unwrap."""
    try:
        doc = json.loads(Path(imk_file).read_text())
        label, wrapped = doc["label"], bytes.fromhex(doc["wrapped"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{imk_file}: unreadable issuer key file ({exc})") from exc
    try:
        return SoftwareIssuerBackend.from_wrapped(read_kek_file(kek_file), {label: wrapped}), label
    except ValueError as exc:
        raise ValueError(f"{imk_file}: {exc}") from exc
