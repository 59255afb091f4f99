"""Writes docs/vectors/payloads.json from capkey.cert.payload (deterministic: fixed fields, RFC 6979 signatures).

    .venv/bin/python host/tests/payload_vectors.py docs/vectors/payloads.json

test_payload.py checks the file against the code, so a change to the codec fails until the file is
written again (and the firmware codec, which reads the same file, is updated)."""

import hashlib
import json
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from capkey.cert import payload as P

CH = bytes.fromhex("8f3a5b0c7d21e94f6a0b2c3d4e5f60718293a4b5c6d7e8f90112233445566778")
CH0 = bytes(32)
CHF = b"\xff" * 32
IB1 = "FR7630006000011234567890189"
IB2 = "DE89370400440532013000"
IB3 = "GB29NWBK60161331926819"
IB4 = "BE71096123456769"  # 16 chars
IB_LONG = "LC55HEMM000100010012001200023015"  # 32 chars


def fields_json(f):
    d = {"type": f.TYPE.name, "challenge": f.challenge.hex()}
    for k, v in f.__dict__.items():
        if k == "challenge":
            continue
        if k == "purpose":
            v = v.name
        if k == "payees":
            v = list(v)
        d[k] = v
    return d


valid_specs = [
    ("login", P.LoginPayload(CH, "https://banque.example", "123456789", "01")),
    ("login http localhost port", P.LoginPayload(CH0, "http://127.0.0.1:8000", "A-1_b.2", "7")),
    (
        "login long host",
        P.LoginPayload(
            CHF,
            "https://www.particuliers.societegenerale.fr",
            "98765432109876543210987654321098",
            "12345678901234567890123456789012",
        ),
    ),
    ("login long label cut", P.LoginPayload(CH, "https://" + "a" * 39 + ".fr:8443", "1", "1")),
    ("payment", P.PaymentPayload(CH, 125000, "EUR", IB1, "ACME SARL")),
    ("payment min amount", P.PaymentPayload(CH0, 1, "EUR", IB4, "X")),
    (
        "payment max amount long name",
        P.PaymentPayload(
            CHF,
            P.AMOUNT_MAX,
            "EUR",
            IB_LONG,
            "Societe Cooperative d'Exploitation (SCOP) des Transports/Logistique+Co",
        ),
    ),
    ("payment yen", P.PaymentPayload(CH, 1234567, "JPY", IB3, "Tanaka K.K.")),
    ("payment amount splits line", P.PaymentPayload(CH, 123456789012, "CHF", IB2, "Muller AG")),
    ("payment 99 cents", P.PaymentPayload(CH, 99, "GBP", IB3, "a-b?c:d(e).f,g'h+i/j")),
    ("batch", P.BatchPayload(CH, 1200000, "EUR", 3, (IB1, IB2, IB1))),
    ("batch one order", P.BatchPayload(CH0, 5, "EUR", 1, (IB4,))),
    ("batch large", P.BatchPayload(CHF, 987654321000, "USD", 9999, (IB1, IB2, IB3, IB4, IB_LONG))),
    ("operation habilitations", P.OperationPayload(CH, P.Purpose.MANAGE_HABILITATIONS, "op-1")),
    (
        "operation payees",
        P.OperationPayload(CH0, P.Purpose.MANAGE_PAYEES, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
    ),
    (
        "operation chequebook",
        P.OperationPayload(CHF, P.Purpose.ORDER_CHEQUEBOOK, "chq:2026/0042_a.b"),
    ),
]


# Largest payload: 24 distinct 34-character IBANs.
def iban_with_check(country, bban):
    n = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - n % 97:02d}{bban}"


many = [iban_with_check("MT", f"{i:030d}") for i in range(P.BATCH_PAYEES_MAX)]
valid_specs.append(("batch maximal", P.BatchPayload(CH, 100, "EUR", 24, many)))

key_d = int(
    "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721", 16
)  # RFC 6979 A.2.5
key = ec.derive_private_key(key_d, ec.SECP256R1())
pub = key.public_key().public_numbers()

valid = []
for name, f in valid_specs:
    b = f.to_bytes()
    assert len(b) <= P.MAX_PAYLOAD
    der = key.sign(bytes(b), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    valid.append(
        {
            "name": name,
            "fields": fields_json(f),
            "hex": b.hex(),
            "sha256": hashlib.sha256(b).hexdigest(),
            "display": b.display_lines(),
            "signature_rfc6979": (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex(),
        }
    )


def lv(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    return bytes([len(s)]) + s


def u(n, w):
    return n.to_bytes(w, "big")


def login(origin=b"https://banque.example", sub=b"123456789", user=b"01", ch=CH, head=b"\x01\x01"):
    return head + ch + lv(origin) + lv(sub) + lv(user)


def pay(amount=125000, cur=b"EUR", iban=IB1, name="ACME SARL", head=b"\x01\x02"):
    return head + CH + u(amount, 8) + cur + lv(iban) + lv(name)


def batch(total=1200000, cur=b"EUR", count=3, payees=(IB2, IB1), n=None):
    return (
        b"\x01\x03"
        + CH
        + u(total, 8)
        + cur
        + u(count, 2)
        + bytes([len(payees) if n is None else n])
        + b"".join(lv(p) for p in payees)
    )


def op(purpose=1, opid=b"op-1"):
    return b"\x01\x04" + CH + bytes([purpose]) + lv(opid)


IB1_BAD = IB1[:-1] + "8"
invalid = [
    ("empty", b""),
    ("version 0", login(head=b"\x00\x01")),
    ("version 2", login(head=b"\x02\x01")),
    ("type 0", login(head=b"\x01\x00")),
    ("type 5", login(head=b"\x01\x05")),
    ("header only", b"\x01\x01"),
    ("challenge truncated", b"\x01\x01" + CH[:31]),
    ("login truncated string", login()[:-1]),
    ("login trailing byte", login() + b"\x00"),
    ("origin upper case", login(origin=b"https://Banque.example")),
    ("origin with path", login(origin=b"https://banque.example/")),
    ("origin default port", login(origin=b"https://banque.example:443")),
    ("origin port 0", login(origin=b"https://banque.example:0")),
    ("origin port leading zero", login(origin=b"https://banque.example:0443")),
    ("origin port too big", login(origin=b"https://banque.example:65536")),
    ("origin empty label", login(origin=b"https://banque..example")),
    ("origin trailing dot", login(origin=b"https://banque.example.")),
    ("origin scheme ftp", login(origin=b"ftp://banque.example")),
    ("origin label hyphen", login(origin=b"https://-banque.example")),
    ("origin non-ascii", login(origin="https://banqué.example")),
    ("origin empty", login(origin=b"")),
    ("subscription empty", login(sub=b"")),
    ("subscription space", login(sub=b"123 456")),
    ("subscription too long", login(sub=b"1" * 33)),
    ("user control char", login(user=b"0\x0a1")),
    ("user non-ascii", login(user="é")),
    ("amount zero", pay(amount=0)),
    ("amount over max", pay(amount=P.AMOUNT_MAX + 1)),
    ("amount huge", pay(amount=2**64 - 1)),
    ("currency lower case", pay(cur=b"eur")),
    ("currency unknown", pay(cur=b"XAU")),
    ("currency non-ascii", pay(cur=b"\xe9UR")),
    ("iban lower case", pay(iban=IB1.lower())),
    ("iban spaces", pay(iban="FR76 3000 6000 0112 3456 7890 189")),
    ("iban check digits", pay(iban=IB1_BAD)),
    ("iban too short", pay(iban="FR76300060")),
    ("iban too long", pay(iban="FR76" + "1" * 31)),
    ("iban country digits", pay(iban="1276" + IB1[4:])),
    ("name empty", pay(name="")),
    ("name leading space", pay(name=" ACME")),
    ("name trailing space", pay(name="ACME ")),
    ("name double space", pay(name="ACME  SARL")),
    ("name accent", pay(name="Société")),
    ("name control char", pay(name="ACME\tSARL")),
    ("name forbidden punctuation", pay(name="ACME & Co")),
    ("name too long", pay(name="A" * 71)),
    ("payment trailing byte", pay() + b"\x00"),
    ("batch payees unsorted", batch(payees=(IB1, IB2))),
    ("batch payee repeated", batch(payees=(IB1, IB1))),
    ("batch no payee", batch(payees=())),
    ("batch more payees than orders", batch(count=1)),
    ("batch count zero", batch(count=0, payees=(IB1,))),
    ("batch count over max", batch(count=10000)),
    (
        "batch 25 payees",
        batch(
            count=33, payees=tuple(sorted(iban_with_check("NO", f"{i:011d}") for i in range(25)))
        ),
    ),
    (
        "batch over max size",
        batch(count=33, payees=tuple(sorted(many + [iban_with_check("MT", "9" * 30)]))),
    ),
    ("batch payee count says more", batch(n=3)),
    ("batch payee count says fewer", batch(n=1)),
    ("batch total zero", batch(total=0)),
    ("batch bad iban", batch(payees=(IB2, IB1_BAD))),
    ("operation purpose 0", op(purpose=0)),
    ("operation purpose 4", op(purpose=4)),
    ("operation id empty", op(opid=b"")),
    ("operation id space", op(opid=b"op 1")),
    ("operation id hash", op(opid=b"op#1")),
    ("operation id too long", op(opid=b"x" * 65)),
    ("operation trailing byte", op() + b"\x00"),
]
inv = []
for name, b in invalid:
    try:
        P.parse(b)
    except P.PayloadError as e:
        inv.append({"name": name, "hex": b.hex(), "why": str(e)})
    else:
        sys.exit(f"invalid vector {name!r} parses")

doc = {
    "description": "Canonical signing payloads of the certificate key (docs/payloads.md). "
    "'valid': fields -> exact payload bytes, SHA-256, the device's display lines (at most 16 "
    "characters each, in order) and the RFC 6979 deterministic ECDSA P-256/SHA-256 signature "
    "r||s (64 bytes) by 'signing_key'. 'invalid': byte strings every parser must refuse ('why' "
    "is informative only).",
    "version": P.VERSION,
    "max_payload": P.MAX_PAYLOAD,
    "display_columns": P.DISPLAY_COLUMNS,
    "signing_key": {
        "curve": "P-256",
        "d": f"{key_d:064x}",
        "public_uncompressed": "04" + f"{pub.x:064x}" + f"{pub.y:064x}",
    },
    "valid": valid,
    "invalid": inv,
}
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump(doc, fh, indent=1, ensure_ascii=False)
    fh.write("\n")
print(len(valid), len(inv))
