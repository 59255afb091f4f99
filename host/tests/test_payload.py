"""Canonical signing payloads: the shared vectors, builder normalisation, parser strictness."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from capkey.cert import payload as P

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "docs/vectors/payloads.json").read_text("utf-8")
)
CH = bytes(range(32))
IBAN = "FR7630006000011234567890189"


def _fields_from_json(d: dict) -> P.Payload:
    d = dict(d)
    kind = d.pop("type")
    d["challenge"] = bytes.fromhex(d["challenge"])
    if kind == "LOGIN":
        return P.LoginPayload(**d)
    if kind == "PAYMENT":
        return P.PaymentPayload(**d)
    if kind == "BATCH":
        return P.BatchPayload(**{**d, "payees": tuple(d["payees"])})
    return P.OperationPayload(**{**d, "purpose": P.Purpose[d["purpose"]]})


def test_vector_constants_match_module():
    assert VECTORS["version"] == P.VERSION
    assert VECTORS["max_payload"] == P.MAX_PAYLOAD
    assert VECTORS["display_columns"] == P.DISPLAY_COLUMNS


@pytest.mark.parametrize("vec", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vector(vec):
    fields = _fields_from_json(vec["fields"])
    data = fields.to_bytes()
    assert data.hex() == vec["hex"]
    assert P.parse(bytes.fromhex(vec["hex"])) == fields
    assert data.digest().hex() == vec["sha256"] == hashlib.sha256(data).hexdigest()
    assert data.display_lines() == vec["display"]
    assert all(1 <= len(line) <= P.DISPLAY_COLUMNS for line in vec["display"])


@pytest.mark.parametrize("vec", VECTORS["valid"], ids=lambda v: v["name"])
def test_vector_signature_verifies(vec):
    key = VECTORS["signing_key"]
    pub = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), bytes.fromhex(key["public_uncompressed"])
    )
    raw = bytes.fromhex(vec["signature_rfc6979"])
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub.verify(der, bytes.fromhex(vec["hex"]), ec.ECDSA(hashes.SHA256()))
    # RFC 6979 is deterministic: re-signing gives the same bytes.
    priv = ec.derive_private_key(int(key["d"], 16), ec.SECP256R1())
    assert (
        priv.sign(bytes.fromhex(vec["hex"]), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        == der
    )


@pytest.mark.parametrize("vec", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector(vec):
    with pytest.raises(P.PayloadError):
        P.parse(bytes.fromhex(vec["hex"]))
    with pytest.raises(P.PayloadError):
        P.SignedPayload(bytes.fromhex(vec["hex"]))


def test_builder_normalises_iban_and_batch_order():
    pay = P.PaymentPayload(CH, 125000, "EUR", "fr76 3000 6000 0112 3456 7890 189", "ACME SARL")
    assert pay.payee_iban == IBAN
    b1 = P.BatchPayload(CH, 10, "EUR", 3, ["DE89 3704 0044 0532 0130 00", IBAN, IBAN])
    b2 = P.BatchPayload(CH, 10, "EUR", 3, (IBAN, "DE89370400440532013000"))
    assert b1.payees == ("DE89370400440532013000", IBAN)
    assert b1.to_bytes() == b2.to_bytes()


@pytest.mark.parametrize(
    "build",
    [
        lambda: P.LoginPayload(CH[:31], "https://a.example", "1", "1"),
        lambda: P.LoginPayload(CH, "https://A.example", "1", "1"),
        lambda: P.LoginPayload(CH, "https://a.example", "", "1"),
        lambda: P.PaymentPayload(CH, 0, "EUR", IBAN, "X"),
        lambda: P.PaymentPayload(CH, True, "EUR", IBAN, "X"),
        lambda: P.PaymentPayload(CH, 1, "eur", IBAN, "X"),
        lambda: P.PaymentPayload(CH, 1, "EUR", IBAN[:-1] + "0", "X"),
        lambda: P.PaymentPayload(CH, 1, "EUR", IBAN, "Société"),
        lambda: P.PaymentPayload(CH, 1, "EUR", IBAN, "A  B"),
        lambda: P.BatchPayload(CH, 1, "EUR", 1, [IBAN, "DE89370400440532013000"]),
        lambda: P.BatchPayload(CH, 1, "EUR", 1, []),
        lambda: P.BatchPayload(CH, 1, "EUR", 1, IBAN),
        lambda: P.OperationPayload(CH, 9, "op"),
    ],
)
def test_builder_refuses(build):
    with pytest.raises(P.PayloadError):
        build()


def test_each_type_byte_differs_so_a_login_never_passes_for_a_payment():
    types = {
        P.LoginPayload(CH, "https://a.example", "1", "1").to_bytes()[1],
        P.PaymentPayload(CH, 1, "EUR", IBAN, "X").to_bytes()[1],
        P.BatchPayload(CH, 1, "EUR", 1, [IBAN]).to_bytes()[1],
        P.OperationPayload(CH, 1, "op").to_bytes()[1],
    }
    assert types == {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1, "EUR", "0,01"),
        (100, "EUR", "1,00"),
        (100000, "EUR", "1 000,00"),
        (99999999, "EUR", "999 999,99"),
        (1000, "JPY", "1 000"),
        (999, "JPY", "999"),
    ],
)
def test_format_amount(amount, currency, text):
    assert P.format_amount(amount, currency) == text


_ident = st.text(alphabet="abcXYZ019-_.", min_size=1, max_size=32)
_name = (
    st.lists(
        st.text(alphabet="abcXYZ09/-?:().,'+", min_size=1, max_size=12), min_size=1, max_size=5
    )
    .map(" ".join)
    .filter(lambda s: len(s) <= 70)
)


def _iban(country: str, bban: str) -> str:
    n = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - n % 97:02d}{bban}"


_ibans = st.builds(
    _iban,
    st.sampled_from(["FR", "DE", "MT", "NO"]),
    st.text(alphabet="0123456789AZ", min_size=11, max_size=30),
)
_payloads = st.one_of(
    st.builds(
        P.LoginPayload,
        st.binary(min_size=32, max_size=32),
        st.sampled_from(["https://banque.example", "http://127.0.0.1:8000", "https://x.y:8443"]),
        _ident,
        _ident,
    ),
    st.builds(
        P.PaymentPayload,
        st.binary(min_size=32, max_size=32),
        st.integers(1, P.AMOUNT_MAX),
        st.sampled_from(sorted(P.CURRENCIES)),
        _ibans,
        _name,
    ),
    st.integers(1, 40).flatmap(
        lambda count: st.builds(
            P.BatchPayload,
            st.binary(min_size=32, max_size=32),
            st.integers(1, P.AMOUNT_MAX),
            st.sampled_from(sorted(P.CURRENCIES)),
            st.just(count),
            st.lists(_ibans, min_size=1, max_size=min(count, P.BATCH_PAYEES_MAX)),
        )
    ),
    st.builds(
        P.OperationPayload,
        st.binary(min_size=32, max_size=32),
        st.sampled_from(list(P.Purpose)),
        st.text(alphabet="abc019-_.", min_size=1, max_size=64),
    ),
)


@settings(max_examples=300, deadline=None)
@given(_payloads)
def test_round_trip_and_display_width(fields):
    data = fields.to_bytes()
    assert len(data) <= P.MAX_PAYLOAD
    assert P.parse(data) == fields
    lines = data.display_lines()
    assert lines and all(1 <= len(line) <= P.DISPLAY_COLUMNS for line in lines)


@settings(max_examples=300, deadline=None)
@given(_payloads, st.data())
def test_any_single_byte_change_is_refused_or_changes_meaning(fields, data):
    """Canonical: a changed byte string never parses to the same fields."""
    raw = bytearray(fields.to_bytes())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        other = P.parse(bytes(raw))
    except P.PayloadError:
        return
    assert other != fields


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_parser_never_raises_anything_but_payload_error(blob):
    try:
        fields = P.parse(b"\x01" + blob)
    except P.PayloadError:
        return
    assert fields.to_bytes() == b"\x01" + blob
