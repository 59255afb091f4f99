"""Device over a scripted fake port: exact request bytes, keepalives, cancel, errors, discovery."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time

import pytest
from link_fakes import FakePort, hello_ok, request

from capkey.link import device as device_mod
from capkey.link.device import Device, DeviceInfo, scan_devices
from capkey.link.errors import (
    Cancelled,
    DeviceBusy,
    DeviceTimeout,
    LinkError,
    NoDevice,
    PinBlocked,
    PinInvalid,
    ProtocolError,
    TransportError,
    VersionMismatch,
)
from capkey.link.transport import Frame, Kind, Transport, encode


def _dev(handler=None) -> tuple[Device, FakePort]:
    port = FakePort(handler)
    return Device(Transport(port, "fake://")), port


def test_hello_exact_bytes_and_result():
    dev, port = _dev()
    # REQUEST rid 1 HELLO [min 1, max 1]
    assert port.written.hex() == "ca4b0100010100024e01014ce5"
    assert port.written == request(1, 0x01, b"\x01\x01")
    assert dev.protocol_version == 1 and dev.max_payload == 1024


def test_ping_exact_bytes():
    dev, port = _dev()
    port.written.clear()
    dev.ping(b"hello")
    assert bytes(port.written) == bytes.fromhex("ca4b010002030005b768656c6c6f2fbe")
    assert port.written == request(2, 0x03, b"hello")


def test_version_mismatch_reports_both_ranges():
    def h(f):
        return [Frame(Kind.RESPONSE, f.rid, LinkError.ERR.VERSION, b"\x02\x03")]

    with pytest.raises(VersionMismatch) as e:
        _dev(h)
    assert e.value.device == (2, 3) and e.value.host == (1, 1)
    assert "2..3" in str(e.value)


def test_no_answer_to_hello_is_a_timeout():
    port = FakePort(lambda f: [])
    with pytest.raises(DeviceTimeout, match="HELLO"):
        Device(Transport(port, "fake://"), hello_timeout=0.2)


INFO = bytes.fromhex(
    "0105302e312e30" "020101" "030373696d" "04026162" "050400010000" "060400020000"
    "08020400" "0709636170" "2f302e312e30" "07036b6579" "63" "0102"  # app "cap/0.1.0", "key"
)


def test_info_parsed_once_per_connection():
    calls = []

    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        calls.append(f)
        # a future tag 0x63 with a 1-byte value is skipped
        return [Frame(Kind.RESPONSE, f.rid, 0, INFO[:-3] + b"\x63\x01\x02")]

    dev, port = _dev(h)
    i = dev.info()
    assert i == DeviceInfo("0.1.0", 1, "sim", "ab", 0x10000, 0x20000, 1024,
                           (("cap", "0.1.0"), ("key", "")))
    assert dev.info() is i and len(calls) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        i.board = "x"  # type: ignore[misc]


def test_info_truncated_tlv():
    with pytest.raises(ValueError):
        DeviceInfo.from_bytes(b"\x01\x05ab")


def test_keepalives_extend_the_timeout_and_are_reported():
    seen = []
    rids = {}

    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        rids["slow"] = f.rid
        return []

    dev, port = _dev(h)
    t = threading.Thread(target=lambda: _drip(port, rids, 6, 0.1))
    t.start()
    try:
        out = dev.call(0x30, b"", timeout=0.3, on_keepalive=seen.append)
    finally:
        t.join()
    assert out == b"ok"
    assert seen == [2] * 6  # 0.6 s of keepalives kept a 0.3 s timeout alive


def _drip(port, rids, n, period):
    import time

    while "slow" not in rids:
        time.sleep(0.01)
    rid = rids["slow"]
    port.push(encode(Kind.KEEPALIVE, rid + 1, 1))  # another RID's keepalive: ignored
    for _ in range(n):
        time.sleep(period)
        port.push(encode(Kind.KEEPALIVE, rid, 2))
    port.push(encode(Kind.RESPONSE, rid, 0, b"ok"))


def test_timeout_sends_cancel():
    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        return []

    dev, port = _dev(h)
    with pytest.raises(DeviceTimeout):
        dev.call(0x30, timeout=0.2)
    assert port.requests[-1] == Frame(Kind.CANCEL, 2, 0, b"")


def _cancellable(f):
    if f.code == 0x01 and f.kind == Kind.REQUEST:
        return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
    if f.kind == Kind.CANCEL:
        return [Frame(Kind.RESPONSE, f.rid, LinkError.ERR.CANCELLED)]
    if f.code == 0x03:
        return [Frame(Kind.RESPONSE, f.rid, 0, f.payload)]
    return [Frame(Kind.KEEPALIVE, f.rid, 2)]


def test_cancel_event_sends_cancel_and_raises():
    dev, port = _dev(_cancellable)
    ev = threading.Event()
    timer = threading.Timer(0.15, ev.set)
    timer.start()
    with pytest.raises(Cancelled):
        dev.call(0x30, cancel=ev, timeout=5)
    assert port.requests[-1] == Frame(Kind.CANCEL, 2, 0, b"")
    # the device's ERR_CANCELLED was drained: the next call gets its own answer
    dev.ping(b"after")


def test_ctrl_c_sends_cancel_then_reraises():
    dev, port = _dev(_cancellable)

    def interrupt(status):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dev.call(0x30, on_keepalive=interrupt)
    assert port.requests[-1].kind == Kind.CANCEL and port.requests[-1].rid == 2
    dev.ping(b"after")


@pytest.mark.parametrize("code,payload,exc,check", [
    (LinkError.ERR.PIN_INVALID, b"\x02", PinInvalid, lambda e: e.attempts_remaining == 2),
    (LinkError.ERR.PIN_INVALID, b"\x00", PinBlocked, lambda e: e.attempts_remaining == 0),
    (LinkError.ERR.PIN_BLOCKED, b"", PinBlocked, lambda e: e.attempts_remaining == 0),
    (LinkError.ERR.BUSY, b"", DeviceBusy, lambda e: e.code is LinkError.ERR.BUSY),
    (LinkError.ERR.DENIED, b"", ProtocolError, lambda e: e.code is LinkError.ERR.DENIED),
    (0x55, b"", ProtocolError, lambda e: e.code is LinkError.ERR.UNKNOWN and e.raw_code == 0x55),
])
def test_error_statuses_map_to_exceptions(code, payload, exc, check):
    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        return [Frame(Kind.RESPONSE, f.rid, code, payload)]

    dev, _ = _dev(h)
    with pytest.raises(exc) as e:
        dev.call(0x40)
    assert check(e.value)


def test_stale_and_corrupt_frames():
    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        bad = bytearray(encode(Kind.RESPONSE, f.rid, 0, b"zz"))
        bad[-1] ^= 1
        # garbage, a stale answer to an old RID, then the answer, corrupted
        return [b"\x00junk", encode(Kind.RESPONSE, 0x999, 0, b"old"), bytes(bad)]

    dev, _ = _dev(h)
    with pytest.raises(TransportError, match="corrupted"):
        dev.call(0x40)


def test_screen_and_press_requests():
    fb = bytes(range(256)) * 4

    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        if f.code == 0x05:
            body = fb if f.payload == b"\x00" else b"Choisir la\nfonction"
            return [Frame(Kind.RESPONSE, f.rid, 0, body)]
        return [Frame(Kind.RESPONSE, f.rid, 0)]

    dev, port = _dev(h)
    assert dev.screen() == (fb, ["Choisir la", "fonction"])
    dev.press("12#D")
    assert port.requests[-1] == Frame(Kind.REQUEST, 4, 0x06, b"12#D")
    with pytest.raises(ValueError):
        dev.press("12x")


def test_reboot_closes_the_connection():
    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        return [Frame(Kind.RESPONSE, f.rid, 0)]

    dev, port = _dev(h)
    dev.reboot()
    assert port.requests[-1] == Frame(Kind.REQUEST, 2, 0x04, b"") and port.closed


@pytest.mark.parametrize("answer", [LinkError.ERR.OK, LinkError.ERR.DENIED, LinkError.ERR.TIMEOUT])
def test_maintenance_waits_for_the_person_then_closes(answer):
    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        return [Frame(Kind.KEEPALIVE, f.rid, 2), Frame(Kind.RESPONSE, f.rid, answer)]

    dev, port = _dev(h)
    seen: list[int] = []
    if answer == LinkError.ERR.OK:
        dev.maintenance(on_keepalive=seen.append)
        assert port.closed  # the device restarts into its REPL
    else:
        with pytest.raises(ProtocolError) as e:
            dev.maintenance(on_keepalive=seen.append)
        assert e.value.code == answer and not port.closed
    assert port.requests[-1] == Frame(Kind.REQUEST, 2, 0x08, b"")
    assert seen == [2]


def test_truncated_answer_then_gap_then_answer():
    # a device that died mid-frame and came back: the partial frame is dropped after GAP
    state = {}

    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        state["rid"] = f.rid
        return [encode(Kind.RESPONSE, f.rid, 0, bytes(900))[:20]]

    dev, port = _dev(h)
    t = threading.Timer(0.4, lambda: port.push(encode(Kind.RESPONSE, state["rid"], 0, b"ok")))
    t.start()
    assert dev.call(0x40, timeout=2) == b"ok"


def test_open_errors(tmp_path):
    with pytest.raises(NoDevice):
        with Device.open(str(tmp_path / "ttyACM9")):
            pass
    with pytest.raises(NoDevice):
        with Device.open("socket://127.0.0.1:1"):
            pass


def test_scan_devices_usb_and_live_sims(tmp_path, monkeypatch):
    class P:
        def __init__(self, device, vid, pid, serial=""):
            self.device, self.vid, self.pid, self.serial_number = device, vid, pid, serial

    from serial.tools import list_ports

    monkeypatch.setattr(list_ports, "comports", lambda: [
        P("/dev/ttyACM1", 0x303A, 0x4001), P("/dev/ttyACM0", 0x2E8A, 0x0005, "E66"),
        P("/dev/ttyUSB0", 0x0403, 0x6001), P("/dev/ttyS0", None, None),
    ])
    (tmp_path / "a.json").write_text(json.dumps(
        {"url": "socket://127.0.0.1:4711", "pid": os.getpid(), "storage": "/tmp/x"}))
    (tmp_path / "dead.json").write_text(json.dumps(
        {"url": "socket://127.0.0.1:4712", "pid": 2**22 + 12345, "storage": "/tmp/y"}))
    (tmp_path / "broken.json").write_text("{")
    found = scan_devices(sim_dir=tmp_path)
    assert [(c.url, c.kind) for c in found] == [
        ("/dev/ttyACM0", "usb"), ("/dev/ttyACM1", "usb"), ("socket://127.0.0.1:4711", "sim")]
    assert found[0].serial_number == "E66"
    assert device_mod.sims_dir().parts[-3:] == (".cache", "capkey", "sims")


def test_scan_devices_waits_for_a_board_just_plugged_in(tmp_path, monkeypatch):
    class P:
        device, vid, pid, serial_number = "/dev/ttyACM0", 0x2E8A, 0x0005, ""

    from serial.tools import list_ports

    listings = [[], [], [P()]]  # the board enumerates on the third listing
    calls = []
    monkeypatch.setattr(list_ports, "comports", lambda: calls.append(1) or listings[len(calls) - 1])
    assert [c.url for c in scan_devices(sim_dir=tmp_path, wait=1.0)] == ["/dev/ttyACM0"]
    assert len(calls) == 3
    calls.clear()
    listings = [[]]
    assert scan_devices(sim_dir=tmp_path, wait=0) == []  # no wait: one listing
    assert len(calls) == 1


def test_damaged_request_is_sent_once_more():
    answers = [LinkError.ERR.CRC, 0]

    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        return [Frame(Kind.RESPONSE, f.rid, answers.pop(0), b"")]

    dev, port = _dev(h)
    assert dev.call(0x40, b"x") == b""
    assert port.requests[1:] == [Frame(Kind.REQUEST, 2, 0x40, b"x"),
                                 Frame(Kind.REQUEST, 3, 0x40, b"x")]


def test_damaged_twice_raises():
    def h(f):
        if f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        return [Frame(Kind.RESPONSE, f.rid, LinkError.ERR.INVALID_FRAME, b"")]

    dev, port = _dev(h)
    with pytest.raises(ProtocolError) as e:
        dev.call(0x40)
    assert e.value.code is LinkError.ERR.INVALID_FRAME and len(port.requests) == 3


def test_calls_from_two_threads_share_one_connection():
    # a SIGN-like request waits for the person while the operator's PINGs come and go on the
    # same connection (a board's one serial port); each caller gets its own answer, whoever reads
    held: list[Frame] = []

    def handler(f: Frame):
        if f.kind == Kind.REQUEST and f.code == 0x43:
            held.append(f)
            return [Frame(Kind.KEEPALIVE, f.rid, 0x02, b"")]
        return FakePort.default(f)

    dev, port = _dev(handler)
    result: list[bytes] = []
    waiting = threading.Thread(target=lambda: result.append(dev.call(0x43, b"p", timeout=5)))
    waiting.start()
    while not held:
        pass
    for i in range(20):
        assert dev.call(0x03, bytes((i,))) == bytes((i,))
    port.push(bytes(Frame(Kind.RESPONSE, held[0].rid, 0, b"signed")))
    assert dev.call(0x03, b"after") == b"after"  # this caller may read the other's answer
    waiting.join(5)
    assert result == [b"signed"]


def test_closing_a_connection_ends_a_call_waiting_on_it_in_another_thread():
    # A power cut in a lab rig: the test closes the old connection while a SIGN waits on it in a
    # thread. The call ends with a TransportError, not with whatever pyserial's socket backend
    # raises once its socket is gone (AttributeError).
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    dev = Device(Transport.open(f"socket://127.0.0.1:{srv.getsockname()[1]}"), hello=False)
    peer, _ = srv.accept()  # a device that never answers
    errors: list[BaseException] = []

    def call():
        try:
            dev.call(0x03, b"x", timeout=10)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    try:
        time.sleep(0.3)
        dev.close()
        t.join(5)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], TransportError), errors
    finally:
        peer.close()
        srv.close()
