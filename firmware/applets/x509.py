# Just enough DER for the certificate key's certificates: whether a certificate holds a slot's
# public key (PUT CERT) and the subject's CN the person sees. Its own module, loaded while a
# certificate is looked at (firmware/ondemand.py): the signing applet's RAM at the signature's
# peak (P-256 and the sealed blobs loaded) holds none of it.
from applets import tlv


def _der(buf, pos, end):
    # One TLV at buf[pos:end] -> (tag, value_start, value_end): DER is BER, read by tlv.py
    tag, start, n, _ = tlv.read(buf, pos, end)
    return tag, start, start + n


def holds_key(der, pub):
    """True when der is one DER SEQUENCE of its whole length holding the public key `pub`."""
    n = len(der)
    try:
        tag, _, end = _der(der, 0, n)
    except ValueError:
        return False
    return tag == 0x30 and end == n and bytes(pub) in bytes(der)


def certificate_subject(der):
    """The subject Name (DER bytes) of an X.509 certificate, or None."""
    try:
        _, p, end = _der(der, 0, len(der))  # Certificate
        _, p, end = _der(der, p, end)  # TBSCertificate
        tag, s, e = _der(der, p, end)
        if tag == 0xA0:  # [0] version
            p = e
        for _ in range(4):  # serialNumber, signature, issuer, validity
            _, _, p = _der(der, p, end)
        tag, s, e = _der(der, p, end)
        if tag != 0x30:
            return None
        return bytes(der[p:e])
    except ValueError:
        return None


def subject_cn(name):
    """The first commonName (2.5.4.3) of a DER Name, as str, or None."""
    if not name:
        return None
    try:
        _, p, end = _der(name, 0, len(name))
        while p < end:
            _, s, p = _der(name, p, end)  # SET
            while s < p:
                _, a, s = _der(name, s, p)  # AttributeTypeAndValue
                tag, o, oe = _der(name, a, s)
                if tag == 0x06 and bytes(name[o:oe]) == b"\x55\x04\x03":
                    _, v, ve = _der(name, oe, s)
                    return bytes(name[v:ve]).decode()
    except (ValueError, UnicodeError):
        return None
    return None
