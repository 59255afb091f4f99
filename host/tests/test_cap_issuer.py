"""capkey.emv.issuer: test-key guard, key wrapping, backend, PERSONALISE data."""

from __future__ import annotations

import threading

import pytest

from capkey.emv import hazmat as emv
from capkey.emv import tlv
from capkey.emv.hazmat import Cvn, KeyDerivation
from capkey.emv.issuer import (
    TEST_IMK,
    TEST_IMK_LABEL,
    CardKeyRef,
    IssuerBackend,
    NoEncryption,
    SoftwareIssuerBackend,
    WeakKey,
    WrapWith,
    generate_imk,
    personalisation_data,
    unwrap_key,
    wrap_key,
)
from capkey.emv.profiles import MC_CAP_CVN16, VISA_DPA_CVN10

KEK = bytes(range(32))
PAN = "4761739001010010"


def test_test_keys_need_explicit_flag():
    for weak in (TEST_IMK, bytes(16), b"\x01" * 16, bytes.fromhex("0123456789ABCDEF") * 2):
        with pytest.raises(WeakKey):
            SoftwareIssuerBackend({"k": weak})
        with pytest.raises(WeakKey):
            SoftwareIssuerBackend({"k": weak}, allow_test_keys=1)  # only True itself
    assert SoftwareIssuerBackend({"k": TEST_IMK}, allow_test_keys=True).imk_kcv("k")[:2] == bytes.fromhex("08D7")
    SoftwareIssuerBackend({"k": generate_imk()})


def test_backend_refuses_bad_input():
    with pytest.raises(ValueError):
        SoftwareIssuerBackend({})
    with pytest.raises(ValueError):
        SoftwareIssuerBackend({"k": generate_imk()[:8]})
    with pytest.raises(TypeError):
        SoftwareIssuerBackend({"k": generate_imk().hex()})
    b = SoftwareIssuerBackend.for_tests()
    with pytest.raises(KeyError):
        b.imk_kcv("other")
    with pytest.raises(TypeError):
        b.export_card_key(CardKeyRef(TEST_IMK_LABEL, PAN, 1, KeyDerivation.OPTION_A), None)
    with pytest.raises(ValueError):
        CardKeyRef("", PAN, 1, KeyDerivation.OPTION_A)
    with pytest.raises(ValueError):
        CardKeyRef("k", "12", 1, KeyDerivation.OPTION_A)
    assert isinstance(b, IssuerBackend)


def test_wrap_round_trip_and_tamper():
    imk = generate_imk()
    blob = wrap_key(KEK, imk)
    assert blob != imk and len(blob) == 24
    assert unwrap_key(KEK, blob) == imk
    with pytest.raises(ValueError):
        unwrap_key(bytes(32), blob)
    with pytest.raises(ValueError):
        unwrap_key(KEK, blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ValueError):
        wrap_key(KEK[:10], imk)
    b = SoftwareIssuerBackend.from_wrapped(KEK, {"prod": blob})
    assert b.imk_kcv("prod") == emv.kcv(imk)
    assert SoftwareIssuerBackend.from_wrapped(KEK, b.wrapped_imks(KEK)).imk_kcv("prod") == emv.kcv(imk)
    assert imk.hex() not in repr(b)


def test_export_and_generate_ac_match_hazmat():
    b = SoftwareIssuerBackend.for_tests()
    ref = CardKeyRef(TEST_IMK_LABEL, "1234567890123456", 0, KeyDerivation.OPTION_A)
    udk = b.export_card_key(ref, NoEncryption())
    assert emv.kcv(udk, 2) == bytes.fromhex("BAB0")
    assert unwrap_key(KEK, b.export_card_key(ref, WrapWith(KEK))) == udk
    minimum = bytes(33)
    iad = bytes.fromhex("0010A50003020000000000000000000000FF")
    assert b.generate_ac(ref, Cvn.MCHIP_16, minimum, iad) == emv.generate_ac(udk, Cvn.MCHIP_16, minimum, iad)
    assert PAN not in repr(ref) and "1234567890123456" not in repr(ref)


def test_cache_is_per_thread_and_bounded():
    b = SoftwareIssuerBackend({TEST_IMK_LABEL: TEST_IMK}, allow_test_keys=True, cache_size=2)
    refs = [CardKeyRef(TEST_IMK_LABEL, f"476173900101001{i}", 1, KeyDerivation.OPTION_A) for i in range(5)]
    iad = bytes.fromhex("06010A03A49000")
    expected = [emv.generate_ac(b.export_card_key(r, NoEncryption()), Cvn.VISA_10, bytes(33), iad) for r in refs]
    errors, sizes = [], []

    def work():
        try:
            for _ in range(50):
                for r, e in zip(refs, expected, strict=True):
                    assert b.generate_ac(r, Cvn.VISA_10, bytes(33), iad) == e
            sizes.append(len(b._local.cache))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sizes == [2, 2, 2, 2]


@pytest.mark.parametrize("profile", [VISA_DPA_CVN10, MC_CAP_CVN16])
def test_personalisation_data(profile):
    b = SoftwareIssuerBackend.for_tests()
    data = personalisation_data(
        b, profile=profile, imk_label=TEST_IMK_LABEL, pan="5413330089020011", psn=3, pin="1234", initial_atc=7
    )
    assert isinstance(data, bytearray)
    items = tlv.parse(bytes(data))
    assert [t for t, _ in items] == [0xDF01, 0x5A, 0x5F34, 0xDF02, 0xDF03, 0xDF04, 0xDF05]
    f = dict(items)
    assert f[0xDF01] == bytes([profile.profile_id])
    assert f[0x5A] == bytes.fromhex("5413330089020011")
    assert f[0x5F34] == b"\x03"
    assert f[0xDF02] == emv.derive_icc_mk_a(TEST_IMK, "5413330089020011", 3)
    assert f[0xDF03] == bytes.fromhex("241234FFFFFFFFFF")
    assert f[0xDF04] == b"\x03" and f[0xDF05] == b"\x00\x07"
    odd = personalisation_data(b, profile=profile, imk_label=TEST_IMK_LABEL, pan="541333008902001", psn=0, pin="98765")
    f = tlv.parse_dict(bytes(odd))
    assert f[0x5A] == bytes.fromhex("541333008902001F") and 0xDF05 not in f
    assert f[0xDF03] == bytes.fromhex("2598765FFFFFFFFF")


@pytest.mark.parametrize(
    "kw",
    [{"pin": "123"}, {"pin": "12a4"}, {"pin_try_limit": 0}, {"pin_try_limit": 16}, {"initial_atc": -1},
     {"initial_atc": 0xFFFF}, {"psn": 100}, {"pan": "12345"}, {"imk_label": "nope"}],
)
def test_personalisation_refuses(kw):
    b = SoftwareIssuerBackend.for_tests()
    args = dict(profile=VISA_DPA_CVN10, imk_label=TEST_IMK_LABEL, pan=PAN, psn=1, pin="1234")
    args.update(kw)
    with pytest.raises((ValueError, KeyError)):
        personalisation_data(b, **args)
