# Signing payloads of the certificate key (docs/payloads.md): a strict parser and the French
# display derived from the payload bytes alone. The signer signs SHA-256 of exactly the bytes
# that parse() accepted, and the screen shows display(parse(bytes)) - nothing else reaches either.
#
#   p = parse(buf)          -> Payload, or raise PayloadError (one exception for every refusal)
#   lines = display(p)      -> list of str, at most 16 characters each
#
# Held to docs/vectors/payloads.json by test_payload.py (every valid vector's display lines, every
# invalid vector refused).
from micropython import const
from purposes import PURPOSE_TITLES as _TITLES

VERSION = const(1)
LOGIN = const(1)
PAYMENT = const(2)
BATCH = const(3)
OPERATION = const(4)
MAX_PAYLOAD = const(888)  # the largest BATCH; a SIGN request carries it in one frame
MAX_PAYEES = const(24)
_COLS = const(16)
_MAX_AMOUNT = const(999999999999)
_CHALLENGE = const(32)

# currency -> exponent (minor unit digits)
_CURRENCIES = {b"EUR": 2, b"CHF": 2, b"GBP": 2, b"USD": 2, b"JPY": 0}
_ID_SET = const(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
_OP_ID_SET = const(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:/")
_NAME_SET = const(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/-?:().,'+ ")
_HOST_SET = const(b"abcdefghijklmnopqrstuvwxyz0123456789-.")


class PayloadError(ValueError):
    """The bytes are not one canonical version 1 payload."""


class Payload:
    # Parsed fields (str for strings, int for integers); `raw` is the exact bytes parsed.
    def __init__(self, raw, kind):
        self.raw = raw
        self.type = kind
        self.challenge = None
        self.origin = self.subscription = self.user = None
        self.amount = 0  # PAYMENT amount, BATCH total (minor units)
        self.currency = None
        self.payee_iban = self.payee_name = None
        self.count = 0
        self.payees = None
        self.purpose = 0
        self.operation_id = None


class _Reader:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, n):
        p = self.pos
        if p + n > len(self.buf):
            raise PayloadError("payload is truncated")
        self.pos = p + n
        return self.buf[p : p + n]

    def uint(self, n):
        v = 0
        for b in self.take(n):
            v = (v << 8) | b
        return v

    def string(self, max_len, charset):
        n = self.uint(1)
        if not 1 <= n <= max_len:
            raise PayloadError("string length")
        s = self.take(n)
        for b in s:
            if b not in charset:  # also refuses every byte >= 0x80 (ASCII only)
                raise PayloadError("string characters")
        return s.decode()


def _check_origin(s):
    if s.startswith("https://"):
        rest = s[8:]
        default = "443"
    elif s.startswith("http://"):
        rest = s[7:]
        default = "80"
    else:
        raise PayloadError("origin scheme")
    host = rest
    i = rest.find(":")
    if i >= 0:
        host = rest[:i]
        port = rest[i + 1 :]
        if not port or len(port) > 5 or port[0] == "0" or port == default:
            raise PayloadError("origin port")
        for c in port:
            if not "0" <= c <= "9":
                raise PayloadError("origin port")
        if int(port) > 65535:
            raise PayloadError("origin port")
    if not host:
        raise PayloadError("origin host")
    for b in host.encode():
        if b not in _HOST_SET:
            raise PayloadError("origin host")
    for label in host.split("."):
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            raise PayloadError("origin label")


def _check_iban(s):
    n = len(s)
    if not 15 <= n <= 34:
        raise PayloadError("iban length")
    for i in range(n):
        c = s[i]
        if i < 2:
            ok = "A" <= c <= "Z"
        elif i < 4:
            ok = "0" <= c <= "9"
        else:
            ok = "A" <= c <= "Z" or "0" <= c <= "9"
        if not ok:
            raise PayloadError("iban characters")
    # ISO 13616: move the first four characters to the end, letters count 10..35, mod 97 == 1
    r = 0
    for c in s[4:] + s[:4]:
        if c <= "9":
            r = (r * 10 + ord(c) - 48) % 97
        else:
            r = (r * 100 + ord(c) - 55) % 97
    if r != 1:
        raise PayloadError("iban check digits")


def _amount(r):
    v = r.uint(8)
    if not 1 <= v <= _MAX_AMOUNT:
        raise PayloadError("amount")
    return v


def _currency(r):
    c = bytes(r.take(3))
    if c not in _CURRENCIES:
        raise PayloadError("currency")
    return c.decode()


def _iban(r):
    s = r.string(34, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    _check_iban(s)
    return s


def parse(buf):
    """The Payload of `buf` (bytes-like), or PayloadError."""
    n = len(buf)
    if n > MAX_PAYLOAD:
        raise PayloadError("payload too long")
    raw = bytes(buf)
    r = _Reader(raw)
    if r.uint(1) != VERSION:
        raise PayloadError("version")
    kind = r.uint(1)
    if not LOGIN <= kind <= OPERATION:
        raise PayloadError("type")
    p = Payload(raw, kind)
    p.challenge = r.take(_CHALLENGE)
    if kind == LOGIN:
        p.origin = r.string(100, b"abcdefghijklmnopqrstuvwxyz0123456789-.:/")
        _check_origin(p.origin)
        p.subscription = r.string(32, _ID_SET)
        p.user = r.string(32, _ID_SET)
    elif kind == PAYMENT:
        p.amount = _amount(r)
        p.currency = _currency(r)
        p.payee_iban = _iban(r)
        p.payee_name = r.string(70, _NAME_SET)
        name = p.payee_name
        if name[0] == " " or name[-1] == " " or "  " in name:
            raise PayloadError("payee_name spaces")
    elif kind == BATCH:
        p.amount = _amount(r)
        p.currency = _currency(r)
        p.count = r.uint(2)
        if not 1 <= p.count <= 9999:
            raise PayloadError("count")
        k = r.uint(1)
        if not 1 <= k <= min(p.count, MAX_PAYEES):
            raise PayloadError("payees")
        payees = []
        prev = None
        for _ in range(k):
            iban = _iban(r)
            if prev is not None and not iban > prev:  # strictly ascending (ASCII: byte order)
                raise PayloadError("payees order")
            payees.append(iban)
            prev = iban
        p.payees = payees
    else:
        p.purpose = r.uint(1)
        if p.purpose not in _TITLES:
            raise PayloadError("purpose")
        p.operation_id = r.string(64, _OP_ID_SET)
    if r.pos != n:
        raise PayloadError("trailing bytes")
    return p


# -- display ---------------------------------------------------------------------------------


def pack(pieces, joiner, out):
    line = ""
    for piece in pieces:
        if line and len(line) + len(joiner) + len(piece) <= _COLS:
            line = line + joiner + piece
            continue
        if line:
            out.append(line)
        while len(piece) > _COLS:
            out.append(piece[:_COLS])
            piece = piece[_COLS:]
        line = piece
    if line:
        out.append(line)
    return out


def wrap(text, out):
    return pack(text.split(" "), " ", out)


def format_amount(v, currency):
    exp = _CURRENCIES[currency.encode()]
    unit = 1
    for _ in range(exp):
        unit *= 10
    whole = str(v // unit)
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    s = " ".join(groups)
    if exp:
        minor = str(v % unit)
        s += "," + "0" * (exp - len(minor)) + minor
    return s


def _amount_lines(v, currency, out):
    s = format_amount(v, currency)
    if len(s) + 1 + len(currency) <= _COLS:
        out.append(s + " " + currency)
    else:
        out.append(s)
        out.append(currency)


def _groups(iban):
    return [iban[i : i + 4] for i in range(0, len(iban), 4)]


def _origin_pieces(origin):
    shown = origin[8:] if origin.startswith("https://") else origin
    pieces = []
    start = 0
    for i in range(len(shown)):
        if shown[i] == ".":
            pieces.append(shown[start : i + 1])
            start = i + 1
    if start < len(shown):
        pieces.append(shown[start:])
    return pieces


def display(p):
    """The lines the device shows for payload p (docs/payloads.md, "Display")."""
    out = []
    if p.type == LOGIN:
        out.append("Connexion à")
        pack(_origin_pieces(p.origin), "", out)
        wrap("Client " + p.subscription, out)
        wrap("Utilisateur " + p.user, out)
    elif p.type == PAYMENT:
        out.append("Virement")
        _amount_lines(p.amount, p.currency, out)
        g = _groups(p.payee_iban)
        out.append("vers " + g[0] + " " + g[1])
        for i in range(2, len(g), 3):
            out.append(" ".join(g[i : i + 3]))
        wrap(p.payee_name, out)
    elif p.type == BATCH:
        wrap("Remise %d ordre%s" % (p.count, "" if p.count == 1 else "s"), out)
        _amount_lines(p.amount, p.currency, out)
        k = len(p.payees)
        out.append("%d bénéficiaire%s" % (k, "" if k == 1 else "s"))
        for iban in p.payees:
            g = _groups(iban)
            for i in range(0, len(g), 3):
                out.append(("- " if i == 0 else "  ") + " ".join(g[i : i + 3]))
    else:
        wrap(_TITLES[p.purpose], out)
        wrap("Opération " + p.operation_id, out)
    return out
