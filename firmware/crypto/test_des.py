# Known-answer tests for crypto/des.py, run inside MicroPython by the root conftest.py.
from binascii import hexlify, unhexlify

import micropython
from crypto import des
from crypto.des import DES


def _h(s):
    return unhexlify(s.replace(" ", ""))


def _enc(key, pt):
    return hexlify(DES(_h(key)).encrypt_block(_h(pt))).decode()


def test_sbox_rows_are_permutations():
    # Each row of each S-box maps 0..15 one to one (guards against a typo in the table).
    from crypto import des_tables

    for row in range(32):
        seen = set(des_tables.S[row * 16 : row * 16 + 16])
        if len(seen) != 16:
            raise AssertionError("S-box row %d" % row)


def test_fips81_ecb_and_textbook_example():
    # FIPS 81 appendix B ECB "Now is t"; the classic worked example key 133457799BBCDFF1.
    if _enc("0123456789abcdef", "4e6f772069732074") != "3fa40e8a984d4815":
        raise AssertionError("FIPS 81 ECB")
    if _enc("133457799BBCDFF1", "0123456789ABCDEF") != "85e813540f0ab405":
        raise AssertionError("worked example")


def test_nbs_variable_plaintext_and_key():
    # NBS SP 500-20 known-answer tests (variable plaintext, variable key) and its maintenance
    # test pair.
    cases = (
        ("0101010101010101", "8000000000000000", "95f8a5e5dd31d900"),
        ("0101010101010101", "4000000000000000", "dd7f121ca5015619"),
        ("0101010101010101", "0000000000000001", "166b40b44aba4bd6"),
        ("8001010101010101", "0000000000000000", "95a8d72813daa94d"),
        ("4001010101010101", "0000000000000000", "0eec1487dd8c26d5"),
        ("0101010101010180", "0000000000000000", "9cc62df43b6eed74"),
        ("7CA110454A1A6E57", "01A1D6D039776742", "690f5b0d9a26939b"),
    )
    for key, pt, ct in cases:
        got = _enc(key, pt)
        if got != ct:
            raise AssertionError("%s %s -> %s" % (key, pt, got))
        back = DES(_h(key)).decrypt_block(_h(ct))
        if back != _h(pt):
            raise AssertionError("decrypt %s" % key)


def test_rivest_iteration():
    # Rivest, "Testing implementations of DES" (1985): X(i+1) = E or D keyed with X(i) itself,
    # alternating; sixteen steps from 9474B8E8C73BCA7D give 1B1A2DDB4C642438.
    x = bytearray(_h("9474B8E8C73BCA7D"))
    for i in range(16):
        c = DES(x)
        if i % 2 == 0:
            c.encrypt_block(x, x)
        else:
            c.decrypt_block(x, x)
    if x != _h("1B1A2DDB4C642438"):
        raise AssertionError(hexlify(x))


def test_cbc_fips81():
    key = DES(_h("0123456789abcdef"))
    state = bytearray(_h("1234567890abcdef"))
    data = b"Now is the time for all "
    out = []
    for i in range(0, 24, 8):
        key.cbc_update(state, data[i : i + 8])
        out.append(hexlify(state).decode())
    if "".join(out) != "e5c7cdde872bf27c43e934008c389c0f683788499a7c05f6":
        raise AssertionError("CBC")


def test_tdes_sp800_67_three_key():
    # NIST SP 800-67 example (three distinct keys, "The qufck brown fox jump").
    c = DES(_h("0123456789ABCDEF 23456789ABCDEF01 456789ABCDEF0123"))
    pt = b"The qufck brown fox jump"
    ct = _h("A826FD8CE53B855F CCE21C8112256FE6 68D5C05DD9B6B900")
    for i in range(0, 24, 8):
        if c.encrypt_block(pt[i : i + 8]) != ct[i : i + 8]:
            raise AssertionError("block %d" % i)
        if c.decrypt_block(ct[i : i + 8]) != pt[i : i + 8]:
            raise AssertionError("decrypt %d" % i)


def test_tdes_keying_options_agree():
    k1, k2 = _h("0123456789ABCDEF"), _h("FEDCBA9876543210")
    block = _h("00112233 44556677")
    two = DES(k1 + k2).encrypt_block(block)
    if DES(k1 + k2 + k1).encrypt_block(block) != two:
        raise AssertionError("2-key != 3-key with K3 = K1")
    if DES(k1 + k1 + k1).encrypt_block(block) != DES(k1).encrypt_block(block):
        raise AssertionError("K1=K2=K3 must equal single DES")


def test_emv_kcv_and_option_a_derivation():
    # cap.md section 7.3: IMK KCV 08D7; Option A for PAN 99012345678901234 PSN 45:
    # Y = rightmost 16 digits of PAN||PSN, UDK = 3DES(Y) || 3DES(Y xor FF..), odd parity.
    imk = DES(_h("0123456789ABCDEFFEDCBA9876543210"))
    if imk.encrypt_block(bytes(8))[:2] != _h("08D7"):
        raise AssertionError("KCV")
    y = _h("1234567890123445")
    left = imk.encrypt_block(y)
    right = imk.encrypt_block(bytes(b ^ 0xFF for b in y))
    udk = des.odd_parity(bytearray(left + right))
    if udk != _h("67F8292358083E5EA7AB7FDA58D53B6B"):
        raise AssertionError(hexlify(udk))


def test_odd_parity():
    k = des.odd_parity(bytearray(b"\x00\x01\xfe\xff\x10"))
    if k != b"\x01\x01\xfe\xfe\x10":
        raise AssertionError(hexlify(k))


def test_key_length_refused():
    for n in (0, 7, 9, 15, 32):
        try:
            DES(bytes(n))
        except ValueError:
            continue
        raise AssertionError("length %d accepted" % n)


def test_block_operations_do_not_allocate():
    c = DES(_h("0123456789ABCDEFFEDCBA9876543210"))
    buf = bytearray(8)
    state = bytearray(8)
    data = bytearray(32)
    micropython.heap_lock()
    try:
        c.encrypt_block(buf, buf)
        c.decrypt_block(buf, buf)
        c.cbc_update(state, data, 32)
    finally:
        micropython.heap_unlock()
    if buf != bytes(8):
        raise AssertionError("round trip")


def _des_as_signed_32bit():
    # On the boards a viper int is a signed 32-bit machine word: bit 31 set makes it negative and
    # >> shifts in copies of it. The unix port's words are 64-bit, so that case never happens in
    # the other tests. This runs des.py's own source as plain Python with every 32-bit state word
    # folded to its signed value (arbitrary-precision ints shift arithmetically, as the boards do).
    import struct

    root = [p for p in __import__("sys").path if p.endswith("firmware")][0]
    with open(root + "/crypto/des.py") as f:
        src = f.read()
    edits = (
        ("@micropython.viper\n", ""),
        ("import micropython\n", ""),
        ("from micropython import const\n", "const = lambda x: x\n"),
        (": ptr8", ""),
        (": int", ""),
        ("ptr32(_SP)", "_SPW"),
        ("ptr8(_IP)", "_IP"),
        ("ptr8(_FP)", "_FP"),
        ("ptr8(_PC1)", "_PC1"),
        ("ptr8(_PC2)", "_PC2"),
        ("ptr8(_SHIFTS)", "_SHIFTS"),
        ("k = ptr8(uint(ks) + ((plan >> (4 * s)) & 3) * 128)",
         "k = memoryview(ks)[((plan >> (4 * s)) & 3) * 128 :]"),
        ("            right = left ^ f\n", "            right = _s32(left ^ f)\n"),
        ("        left = (left << 1) |", "        left = _s32(left << 1) |"),
        ("        right = (right << 1) |", "        right = _s32(right << 1) |"),
    )
    for old, new in edits:
        if old not in src:
            raise AssertionError("des.py changed: update this emulation (%r)" % old)
        src = src.replace(old, new)
    g = {"_s32": lambda v: ((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000}
    exec(src, g)
    g["_SPW"] = struct.unpack("<512i", g["_SP"])  # signed words, as a 32-bit ptr32 load gives
    return g["DES"]


def test_signed_32bit_words_give_the_same_results():
    des32 = _des_as_signed_32bit()
    for key, pt, ct in (
        ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),
        ("7CA110454A1A6E57", "01A1D6D039776742", "690F5B0D9A26939B"),
        ("0101010101010101", "8000000000000000", "95F8A5E5DD31D900"),
    ):
        if des32(_h(key)).encrypt_block(_h(pt)) != _h(ct):
            raise AssertionError("signed 32-bit DES " + key)
    c = des32(_h("0123456789ABCDEF 23456789ABCDEF01 456789ABCDEF0123"))
    if c.encrypt_block(b"The qufc") != _h("A826FD8CE53B855F"):
        raise AssertionError("signed 32-bit 3DES")
