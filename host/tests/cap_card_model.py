"""Test helper: what a CAP card and reader produce, computed the way the card does it (walk the
CDOL1 data, MAC the minimum set) with capkey.emv.hazmat only — independent of the verifier's own
shortcuts (its prebuilt minimum-set head, deposit/compare of bits)."""

from __future__ import annotations

from capkey.emv import hazmat as emv
from capkey.emv import tlv
from capkey.emv.issuer import TEST_IMK
from capkey.emv.profiles import CapProfile
from capkey.emv.verifier import Mode

MIN_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)


def udk_for(profile: CapProfile, pan: str, psn: int, imk: bytes = TEST_IMK) -> bytes:
    return emv.derive_icc_mk(imk, pan, psn, profile.derivation)


def card_generate_ac(profile: CapProfile, udk: bytes, atc: int, cdol1_data: bytes, iad: bytes) -> emv.GenerateAcResponse:
    """The card side: first GENERATE AC (ARQC) over the CDOL1 data, response in the profile's format."""
    values = {}
    i = 0
    for tag, length in tlv.parse_dol(tlv.encode_dol(profile.cdol1)):
        values[tag] = cdol1_data[i : i + length]
        i += length
    assert i == len(cdol1_data)
    atc_b = atc.to_bytes(2, "big")
    minimum = b"".join(values[t] for t in MIN_TAGS) + profile.aip + atc_b
    ac = emv.generate_ac(udk, profile.cvn, minimum, iad)
    if profile.gpo_format == 1:
        return emv.GenerateAcResponse(tlv.encode(0x80, b"\x80" + atc_b + ac + iad))
    body = tlv.encode_many([(0x9F27, b"\x80"), (0x9F36, atc_b), (0x9F26, ac), (0x9F10, iad)])
    return emv.GenerateAcResponse(tlv.encode(0x77, body))


def make_code(
    profile: CapProfile,
    pan: str,
    psn: int,
    atc: int,
    mode: Mode,
    *,
    challenge: str | None = None,
    amount: int = 0,
    tds: list[str] | None = None,
    iad: bytes | None = None,
    imk: bytes = TEST_IMK,
    family: str | None = None,
) -> str:
    """The code a reader of `profile` (or of reader family `family`) shows for this card at `atc`."""
    udk = udk_for(profile, pan, psn, imk)
    un = bytes(4) if mode in (Mode.IDENTIFY, Mode.SIGN_TDS) else emv.pack_bcd(challenge, 4)
    data = profile.cdol1_data(un=un, amount=amount if mode is Mode.SIGN else 0, family=family)
    resp = card_generate_ac(profile, udk, atc, data, iad if iad is not None else profile.iads_for(3)[0])
    otp = emv.cap_otp(resp, profile.ipb, psn=psn if profile.iaf & 0x40 else None, tds=tds)
    return str(otp)
