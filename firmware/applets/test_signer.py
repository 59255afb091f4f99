# applets/signer.py inside MicroPython, on the real power-loss-safe Store in a temporary folder.
# A "power cycle" is a new Store and a new Signer on the same folder (RAM counters reset).
# Crashes are injected with the store's write-point hook, as in store/test_store.py; the HIL suite
# repeats it with a real SIGKILL of the simulator.
import hashlib
import os

import store
from applets import signer as sg
from applets import x509
from applets.test_key_fixtures import cert as _cert
from applets.test_key_fixtures import det_random as _random
from applets.test_key_fixtures import name as _name
from applets.test_key_fixtures import payload as _payload
from applets.test_key_fixtures import valid as _valid
from crypto import p256, sealed
from crypto import p256_verify as p256v
from store import Store
from store.test_support import Crash, rmtree

PIN = b"123456"
PUK = b"87654321"
ITER = 16  # PBKDF2 iterations in these tests (the real count only slows them down)


class _Dev:
    """A signer on a store folder; cycle() is a power cycle."""

    def __init__(self):
        self.root = "/tmp/capkey-signer-" + os.urandom(6).hex()
        self.random = _random(self.root.encode())
        self.cycle()
        self.s.provision()

    def cycle(self):
        self.store = Store(self.root)
        self.s = sg.Signer(self.store, self.random, "00A1b2", "0.1.0", kdf_iterations=ITER)
        return self.s

    def run(self, ins, p2=0, data=b""):
        r = self.s.process(sg.apdu(ins, p2, data))
        return r[:-2], (r[-2] << 8) | r[-1]

    def ok(self, ins, p2=0, data=b""):
        out, sw = self.run(ins, p2, data)
        if sw != 0x9000:
            raise AssertionError("INS %02x: SW %04x" % (ins, sw))
        return out

    def status(self):
        return self.ok(sg.INS_STATUS)

    def close(self):
        store.set_hook(None)
        rmtree(self.root)


def _with_dev(fn, setup=True):
    d = _Dev()
    try:
        if setup:
            d.ok(sg.INS_SETUP, 0, sg.lv(PIN) + PUK)
        fn(d)
    finally:
        d.close()


def _enrol(d, slot=0, cn="Alice Martin"):
    att = d.ok(sg.INS_GENERATE, slot, sg.lv(PIN))
    pub = d.ok(sg.INS_READ_PUB, slot)
    d.ok(sg.INS_PUT_CERT, slot, _cert(pub, cn))
    return att, pub


# -- identity, setup, generate --------------------------------------------------------------


def test_provision_once_and_attestation_statement():
    def body(d):
        apub = d.ok(sg.INS_ATTEST_KEY)
        if d.s.provision() or d.cycle().provision():
            raise AssertionError("provisioned twice")
        if d.ok(sg.INS_ATTEST_KEY) != apub or len(apub) != 65:
            raise AssertionError("attestation key changed")
        att = d.ok(sg.INS_GENERATE, 2, sg.lv(PIN))
        pub = d.ok(sg.INS_READ_PUB, 2)
        stmt = b"CKAT\x01\x02\x0600a1b2\x050.1.0" + pub
        if att[:-64] != stmt:
            raise AssertionError("attestation statement layout")
        if not p256v.verify(apub, hashlib.sha256(stmt).digest(), att[-64:]):
            raise AssertionError("attestation signature")

    _with_dev(body)


def test_factory_state_needs_setup_first():
    def body(d):
        st = d.status()
        if st != bytes((sg.FACTORY, 8, 3, 8, 3, 0, 0, 0, 0)):
            raise AssertionError("factory status %r" % st)
        for ins, data in ((sg.INS_GENERATE, sg.lv(PIN)), (sg.INS_CHANGE, sg.lv(PIN) + sg.lv(PIN)),
                          (sg.INS_RESET, PUK + sg.lv(PIN))):
            if d.run(ins, 0, data)[1] != sg.SW_STATE:
                raise AssertionError("INS %02x before setup" % ins)
        for bad in (sg.lv(b"12345") + PUK, sg.lv(b"123456789") + PUK, sg.lv(b"12345a") + PUK,
                    sg.lv(PIN) + b"1234567", sg.lv(PIN) + b"123456789", sg.lv(PIN) + b"1234567x"):
            if d.run(sg.INS_SETUP, 0, bad)[1] not in (sg.SW_DATA, sg.SW_LENGTH):
                raise AssertionError("bad PIN/PUK format accepted")
        d.ok(sg.INS_SETUP, 0, sg.lv(PIN) + PUK)
        if d.status() != bytes((sg.ACTIVE, 8, 3, 8, 3, 0, 0, 0, 0)):
            raise AssertionError("active status")
        if d.run(sg.INS_SETUP, 0, sg.lv(PIN) + PUK)[1] != sg.SW_STATE:
            raise AssertionError("setup twice")

    _with_dev(body, setup=False)


def test_generate_load_certificate_and_sign_payload_vectors():
    def body(d):
        _, pub = _enrol(d, 1, "Alice Martin")
        if d.status()[5:] != b"\x00\x03\x00\x00":
            raise AssertionError("slot flags")
        cert = d.ok(sg.INS_READ_CERT, 1)
        subject = x509.certificate_subject(cert)
        if x509.subject_cn(subject) != "Alice Martin" or subject != _name("Alice Martin"):
            raise AssertionError("certificate subject")
        for name, raw in _valid()[::3]:
            sig = d.ok(sg.INS_SIGN, 1, sg.lv(PIN) + raw)
            if len(sig) != 64 or not p256v.verify(pub, hashlib.sha256(raw).digest(), sig):
                raise AssertionError("signature of " + name)
        if d.run(sg.INS_GENERATE, 1, sg.lv(PIN))[1] != sg.SW_STATE:
            raise AssertionError("generate over an existing key")

    _with_dev(body)


def test_sign_refusals_cost_no_try():
    def body(d):
        pay = _payload()
        att = d.ok(sg.INS_GENERATE, 0, sg.lv(PIN))
        if d.run(sg.INS_SIGN, 0, sg.lv(PIN) + pay)[1] != sg.SW_EMPTY:
            raise AssertionError("sign without certificate")
        pub = att[-129:-64]
        d.ok(sg.INS_PUT_CERT, 0, _cert(pub))
        for bad in (pay[:-1], pay + b"\x00", b"\x02" + pay[1:]):
            if d.run(sg.INS_SIGN, 0, sg.lv(PIN) + bad)[1] != sg.SW_DATA:
                raise AssertionError("non-canonical payload signed")
        if d.run(sg.INS_SIGN, 3, sg.lv(PIN) + pay)[1] != sg.SW_EMPTY:
            raise AssertionError("empty slot")
        if d.run(sg.INS_SIGN, 4, sg.lv(PIN) + pay)[1] != sg.SW_P1P2:
            raise AssertionError("slot 4")
        if d.status()[1] != 8:
            raise AssertionError("a refused request spent a PIN try")

    _with_dev(body)


def test_certificate_checks():
    def body(d):
        if d.run(sg.INS_PUT_CERT, 0, _cert(b"\x04" + bytes(64)))[1] != sg.SW_EMPTY:
            raise AssertionError("certificate for an empty slot")
        att = d.ok(sg.INS_GENERATE, 0, sg.lv(PIN))
        pub = att[-129:-64]
        other = p256.public_key(12345)
        good = _cert(pub)
        for bad in (_cert(other), good[:-1], good + b"\x00", b"\x31" + good[1:], b"\x30"):
            if d.run(sg.INS_PUT_CERT, 0, bad)[1] != sg.SW_DATA:
                raise AssertionError("bad certificate accepted")
        d.ok(sg.INS_PUT_CERT, 0, good)
        d.ok(sg.INS_PUT_CERT, 0, _cert(pub, "Alice Renamed"))
        if x509.subject_cn(x509.certificate_subject(d.ok(sg.INS_READ_CERT, 0))) != "Alice Renamed":
            raise AssertionError("certificate replaced")

    _with_dev(body)


def test_delete_slot():
    def body(d):
        _enrol(d, 0)
        if d.run(sg.INS_DELETE, 0, sg.lv(b"000000"))[1] != 0x63C2:
            raise AssertionError("delete with a wrong PIN")
        d.ok(sg.INS_DELETE, 0, sg.lv(PIN))
        if d.status()[5] != 0 or d.run(sg.INS_DELETE, 0, sg.lv(PIN))[1] != sg.SW_EMPTY:
            raise AssertionError("deleted")
        _enrol(d, 0)  # the slot can be used again

    _with_dev(body)


# -- PIN, PUK, counters ---------------------------------------------------------------------


def test_three_failures_per_power_up_eight_in_total_then_blocked():
    def body(d):
        _enrol(d, 0)
        pay = _payload()
        wrong = sg.lv(b"999999") + pay
        seen = []
        for cycle in range(3):
            for _ in range(3):
                seen.append(d.run(sg.INS_SIGN, 0, wrong)[1])
            if d.run(sg.INS_SIGN, 0, sg.lv(PIN) + pay)[1] not in (sg.SW_LOCKED, sg.SW_BLOCKED):
                raise AssertionError("a 4th try in one power-up was allowed")
            d.cycle()
        want = [0x63C2, 0x63C1, 0x63C0, 0x63C2, 0x63C1, 0x63C0, 0x63C1, 0x6983, 0x6983]
        if seen != want:
            raise AssertionError("status words %r" % ["%04x" % w for w in seen])
        st = d.status()
        if st[1] != 0 or st[2] != 0:
            raise AssertionError("PIN must be blocked: %r" % st)
        if d.run(sg.INS_SIGN, 0, sg.lv(PIN) + pay)[1] != sg.SW_BLOCKED:
            raise AssertionError("the right PIN works on a blocked PIN")

    _with_dev(body)


def test_correct_pin_restores_counter_and_consecutive_count():
    def body(d):
        _enrol(d, 0)
        pay = _payload()
        for _ in range(2):
            d.run(sg.INS_SIGN, 0, sg.lv(b"999999") + pay)
        if d.status()[1:3] != b"\x06\x01":
            raise AssertionError("after 2 failures")
        d.ok(sg.INS_SIGN, 0, sg.lv(PIN) + pay)
        if d.status()[1:3] != b"\x08\x03":
            raise AssertionError("a correct PIN restores 8 and 3")

    _with_dev(body)


def test_puk_resets_pin_and_keeps_keys():
    def body(d):
        _, pub = _enrol(d, 0)
        pay = _payload()
        for _ in range(3):
            d.run(sg.INS_SIGN, 0, sg.lv(b"999999") + pay)
        if d.run(sg.INS_RESET, 0, b"11111111" + sg.lv(b"2468024"))[1] != 0x63C2:
            raise AssertionError("wrong PUK")
        d.ok(sg.INS_RESET, 0, PUK + sg.lv(b"2468024"))
        st = d.status()
        if st[1:5] != b"\x08\x03\x08\x03":
            raise AssertionError("counters after reset %r" % st)
        if d.run(sg.INS_SIGN, 0, sg.lv(PIN) + pay)[1] != 0x63C2:
            raise AssertionError("old PIN still works")
        sig = d.ok(sg.INS_SIGN, 0, sg.lv(b"2468024") + pay)
        if not p256v.verify(pub, hashlib.sha256(pay).digest(), sig):
            raise AssertionError("key lost in the reset")

    _with_dev(body)


def test_change_pin():
    def body(d):
        _enrol(d, 0)
        pay = _payload()
        if d.run(sg.INS_CHANGE, 0, sg.lv(b"000000") + sg.lv(b"13572468"))[1] != 0x63C2:
            raise AssertionError("change with a wrong PIN")
        d.ok(sg.INS_CHANGE, 0, sg.lv(PIN) + sg.lv(b"13572468"))
        if d.run(sg.INS_SIGN, 0, sg.lv(PIN) + pay)[1] != 0x63C2:
            raise AssertionError("old PIN")
        d.ok(sg.INS_SIGN, 0, sg.lv(b"13572468") + pay)
        # the PUK still opens the same DEK after a PIN change
        d.ok(sg.INS_RESET, 0, PUK + sg.lv(PIN))
        d.ok(sg.INS_SIGN, 0, sg.lv(PIN) + pay)

    _with_dev(body)


def test_blocked_puk_wipes_every_key():
    def body(d):
        _enrol(d, 0)
        _enrol(d, 3, "Bob")
        sws = []
        for i in range(8):
            if i and i % 3 == 0:
                d.cycle()
            sws.append(d.run(sg.INS_RESET, 0, b"00000000" + sg.lv(b"111111"))[1])
        if sws[-1] != sg.SW_BLOCKED or sws[:3] != [0x63C2, 0x63C1, 0x63C0]:
            raise AssertionError("PUK status words %r" % ["%04x" % w for w in sws])
        if d.status() != bytes((sg.FACTORY, 8, 3, 8, 3, 0, 0, 0, 0)):
            raise AssertionError("not wiped: %r" % d.status())
        for slot in range(4):
            if d.store.load(sg.slot_record(slot)) is not None:
                raise AssertionError("slot record left")
        # the device can be set up again; the attestation key survives the wipe
        d.ok(sg.INS_SETUP, 0, sg.lv(PIN) + PUK)
        _enrol(d, 0)

    _with_dev(body)


def test_interrupted_wipe_is_finished_on_next_access():
    def body(d):
        _enrol(d, 0)
        st = sg._PinState.decode(d.store.load("sig.pin"))
        st.puk_left = 0  # the pre-decremented last PUK try was saved, then the power went
        d.store.save("sig.pin", st.encode())
        d.cycle()
        if d.status()[0] != sg.FACTORY or d.store.load(sg.slot_record(0)) is not None:
            raise AssertionError("wipe not finished")

    _with_dev(body)


def test_counter_is_on_flash_before_the_pin_is_checked():
    # At the moment the PIN's key is derived (the check starts), the stored counter is already
    # decremented; a correct PIN then restores it with a second save.
    def body(d):
        _enrol(d, 0)
        seen = []
        real = d.s._kek

        def spy(value, st, label):
            rec = sg._PinState.decode(Store(d.root).load("sig.pin"))
            seen.append((label, rec.pin_left, rec.puk_left))
            return real(value, st, label)

        d.s._kek = spy
        pay = _payload()
        d.run(sg.INS_SIGN, 0, sg.lv(b"999999") + pay)
        d.ok(sg.INS_SIGN, 0, sg.lv(PIN) + pay)
        d.run(sg.INS_RESET, 0, b"00000000" + sg.lv(PIN))
        if seen[:3] != [(b"pin", 7, 8), (b"pin", 6, 8), (b"puk", 8, 7)]:
            raise AssertionError("check before the decrement was saved: %r" % seen)

    _with_dev(body)


class _Hook:
    # Raises at the `at`-th write point of record "sig.pin"; remembers which save (1st, 2nd) and
    # which stage (begin, torn, synced, renamed) that was.
    def __init__(self, at):
        self.at = at
        self.n = 0
        self.saves = 0
        self.hit = None

    def __call__(self, tag):
        if not tag.startswith("sig.pin:"):
            return
        stage = tag[8:]
        if stage == "begin":
            self.saves += 1
        self.n += 1
        if self.n == self.at:
            self.hit = (self.saves, stage)
            raise Crash(tag)


def test_crash_at_every_write_point_of_a_pin_check_never_gives_a_try():
    # Crash at each write point of "sig.pin" during a wrong and during a right PIN, power-cycle,
    # read the counter. A save is durable from "synced" on (load() finishes a complete new copy).
    # Wrong PIN: 1 save (the pre-decrement). Right PIN: the pre-decrement, then the restore.
    # Whenever the PIN was compared (the first save was durable), the try is spent - or, for the
    # right PIN, given back only by the completed restore.
    pay = _payload()

    def body(d):
        _enrol(d, 0)
        for pin in (b"999999", PIN):
            at = 1
            while True:
                d.cycle()
                before = d.status()[1]
                hook = _Hook(at)
                store.set_hook(hook)
                try:
                    d.run(sg.INS_SIGN, 0, sg.lv(pin) + pay)
                except Crash:
                    pass
                store.set_hook(None)
                if hook.hit is None:
                    break  # ran to the end: every write point has been tried
                d.cycle()
                after = d.status()[1]  # the state always loads
                save, stage = hook.hit
                durable = stage in ("synced", "renamed")
                if save == 1:
                    want = before - 1 if durable else before
                else:
                    want = 8 if durable else before - 1
                if after != want:
                    raise AssertionError("%s: crash at save %d %s: %d -> %d, want %d"
                                         % (pin, save, stage, before, after, want))
                at += 1
            if at != (5 if pin != PIN else 9):
                raise AssertionError("write points seen: %d" % (at - 1))
            d.ok(sg.INS_SIGN, 0, sg.lv(PIN) + pay)  # back to 8 tries
            if d.status()[1] != 8:
                raise AssertionError("counter not restored")

    _with_dev(body)


def test_records_are_bound_to_their_slot():
    # A slot record copied into another slot does not open there (aad = slot and public key).
    def body(d):
        _enrol(d, 0)
        d.store.save(sg.slot_record(1), d.store.load(sg.slot_record(0)))
        if d.run(sg.INS_SIGN, 1, sg.lv(PIN) + _payload())[1] != sg.SW_STATE:
            raise AssertionError("swapped slot record used")

    _with_dev(body)


def test_apdu_framing_errors():
    def body(d):
        s = d.s
        cases = (
            (b"", sg.SW_LENGTH),
            (b"\x80\xca\x00", sg.SW_LENGTH),
            (b"\x00\xca\x00\x00", sg.SW_CLA),
            (b"\x80\x99\x00\x00", sg.SW_INS),
            (b"\x80\xca\x00\x00\x05\x01", sg.SW_LENGTH),
            (b"\x80\xca\x00\x00\x00", sg.SW_LENGTH),
            (b"\x80\xcc\x00\x04", sg.SW_P1P2),
            (b"\x80\xcc\x00\x00", sg.SW_EMPTY),
        )
        for cmd, want in cases:
            r = s.process(cmd)
            if (r[-2] << 8) | r[-1] != want or len(r) != 2:
                raise AssertionError("%r -> %r" % (cmd, r))
        # extended Lc: a BATCH payload over 255 bytes
        _enrol(d, 0)
        big = _payload("batch maximal")
        if len(big) < 256:
            raise AssertionError("need a long payload")
        d.ok(sg.INS_SIGN, 0, sg.lv(PIN) + big)

    _with_dev(body)


def test_corrupt_pin_record_is_refused_not_reset():
    def body(d):
        d.store.save("sig.pin", b"\x01\x01\x09")  # wrong length
        if d.run(sg.INS_STATUS)[1] != sg.SW_STATE:
            raise AssertionError("corrupt record accepted")
        rec = bytearray(sg._PinState().encode())
        rec[2] = 9  # more tries than possible
        d.store.save("sig.pin", bytes(rec))
        if d.run(sg.INS_STATUS)[1] != sg.SW_STATE:
            raise AssertionError("impossible counter accepted")

    _with_dev(body, setup=False)


def test_real_kdf_iterations_derive_the_same_keys():
    # The production iteration count, end to end once (setup, generate, sign).
    def body(d):
        d.s.kdf_iterations = sg.KDF_ITERATIONS
        d.ok(sg.INS_SETUP, 0, sg.lv(PIN) + PUK)
        st = sg._PinState.decode(d.store.load("sig.pin"))
        if st.iterations != sg.KDF_ITERATIONS:
            raise AssertionError("iterations stored")
        _enrol(d, 0)
        d.ok(sg.INS_SIGN, 0, sg.lv(PIN) + _payload())

    _with_dev(body, setup=False)


def test_sealed_dek_blob_sizes():
    if len(sealed.seal(bytes(32), bytes(32), bytes(16))) != 81:
        raise AssertionError("DEK blob size assumed by the record layout")
