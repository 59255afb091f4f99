# applets/payload.py against the shared vectors docs/vectors/payloads.json (also read by the host
# codec): every valid payload parses to its fields and shows exactly its display lines, every
# invalid one is refused, and the limits agree.
import json
from binascii import unhexlify

from applets import payload

_VECTORS = "docs/vectors/payloads.json"  # the test runner's working directory is the repository
_TYPES = {"LOGIN": 1, "PAYMENT": 2, "BATCH": 3, "OPERATION": 4}
_PURPOSES = {"MANAGE_HABILITATIONS": 1, "MANAGE_PAYEES": 2, "ORDER_CHEQUEBOOK": 3}


def _vectors():
    with open(_VECTORS) as f:
        return json.load(f)


def test_limits_agree_with_the_vectors():
    v = _vectors()
    if v["version"] != payload.VERSION or v["max_payload"] != payload.MAX_PAYLOAD:
        raise AssertionError("version or MAX_PAYLOAD differs from payloads.json")
    if v["display_columns"] != 16:
        raise AssertionError("display columns")


def test_valid_vectors_parse_and_display():
    n = 0
    for vec in _vectors()["valid"]:
        raw = unhexlify(vec["hex"])
        p = payload.parse(raw)
        f = vec["fields"]
        if p.raw != raw or p.type != _TYPES[f["type"]] or p.challenge != unhexlify(f["challenge"]):
            raise AssertionError(vec["name"] + ": header")
        if p.type == 1:
            got = (p.origin, p.subscription, p.user)
            want = (f["origin"], f["subscription"], f["user"])
        elif p.type == 2:
            got = (p.amount, p.currency, p.payee_iban, p.payee_name)
            want = (f["amount"], f["currency"], f["payee_iban"], f["payee_name"])
        elif p.type == 3:
            got = (p.amount, p.currency, p.count, p.payees)
            want = (f["total"], f["currency"], f["count"], f["payees"])
        else:
            got = (p.purpose, p.operation_id)
            want = (_PURPOSES[f["purpose"]], f["operation_id"])
        if got != want:
            raise AssertionError("%s: fields %r != %r" % (vec["name"], got, want))
        lines = payload.display(p)
        if lines != vec["display"]:
            raise AssertionError("%s: display %r != %r" % (vec["name"], lines, vec["display"]))
        for line in lines:
            if len(line) > 16:
                raise AssertionError("line longer than 16")
        n += 1
    if n < 10:
        raise AssertionError("too few valid vectors")


def test_invalid_vectors_are_refused():
    n = 0
    for vec in _vectors()["invalid"]:
        try:
            payload.parse(unhexlify(vec["hex"]))
        except payload.PayloadError:
            n += 1
            continue
        raise AssertionError("accepted invalid payload: " + vec["name"])
    if n < 30:
        raise AssertionError("too few invalid vectors")


def test_every_truncation_and_extension_of_valid_payloads_is_refused():
    for vec in _vectors()["valid"]:
        raw = unhexlify(vec["hex"])
        for cut in range(len(raw)):
            try:
                payload.parse(raw[:cut])
            except payload.PayloadError:
                continue
            raise AssertionError("%s accepted truncated to %d" % (vec["name"], cut))
        try:
            payload.parse(raw + b"\x00")
        except payload.PayloadError:
            continue
        raise AssertionError(vec["name"] + " accepted with a trailing byte")


def test_amount_format():
    cases = ((125000, "EUR", "1 250,00"), (5, "EUR", "0,05"), (1234567, "JPY", "1 234 567"),
             (100, "USD", "1,00"), (99999, "CHF", "999,99"), (100000, "GBP", "1 000,00"))
    for v, cur, want in cases:
        if payload.format_amount(v, cur) != want:
            raise AssertionError(want)


def test_rfc6979_signatures_of_the_vectors():
    # The signer's ECDSA reproduces the vectors' deterministic signatures byte for byte.
    import hashlib

    from crypto import p256

    v = _vectors()
    d = int(v["signing_key"]["d"], 16)
    pub = unhexlify(v["signing_key"]["public_uncompressed"])
    if p256.public_key(d) != pub:
        raise AssertionError("signing key")
    for vec in v["valid"]:
        h = hashlib.sha256(unhexlify(vec["hex"])).digest()
        if h != unhexlify(vec["sha256"]):
            raise AssertionError(vec["name"] + ": sha256")
        if p256.sign(d, h) != unhexlify(vec["signature_rfc6979"]):
            raise AssertionError(vec["name"] + ": RFC 6979 signature")
