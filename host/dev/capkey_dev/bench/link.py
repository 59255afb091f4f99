"""Link round trip: PING through the simulator (firmware link server in the MicroPython unix port,
Pico heap, over TCP) against the same frames echoed by a Python thread on a local socket in the
same run (the anchor: host codec + TCP, no firmware)."""

from __future__ import annotations

import socket
import statistics
import tempfile
import threading
import time

from capkey.link.device import CMD_PING, Device
from capkey.link.transport import Decoder, Frame, Kind, Transport, encode
from capkey_dev.sim import Simulator

_ROUNDS = 200
_SIZES = (0, 256, 1024)


def _echo_server() -> tuple[socket.socket, int]:
    """A socket that answers every REQUEST frame with RESPONSE OK and the same payload."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        dec = Decoder()
        with conn:
            while data := conn.recv(4096):
                for f in dec.feed(data):
                    if isinstance(f, Frame) and f.kind == Kind.REQUEST:
                        code, payload = 0, f.payload
                        if f.code == 0x01:  # HELLO
                            payload = b"\x01\x04\x00"
                        conn.sendall(encode(Kind.RESPONSE, f.rid, code, payload))

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def _times(dev: Device, size: int) -> list[float]:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    out = []
    for _ in range(_ROUNDS):
        t = time.perf_counter()
        if dev.call(CMD_PING, payload) != payload:
            raise RuntimeError("PING echo differs")
        out.append(time.perf_counter() - t)
    return out


def _row(label: str, sim: list[float], anchor: list[float]) -> str:
    med, a = statistics.median(sim), statistics.median(anchor)
    p95 = statistics.quantiles(sim, n=20)[-1]
    return (f"{label:<14} median {med * 1e3:7.2f} ms  p95 {p95 * 1e3:7.2f} ms  "
            f"anchor {a * 1e3:6.3f} ms  ratio {med / a:6.1f}x")


def run() -> None:
    srv, port = _echo_server()
    anchor = Device(Transport.open(f"socket://127.0.0.1:{port}"))
    try:
        with tempfile.TemporaryDirectory() as folder, Simulator(folder, register=False) as sim, \
                Device.open(sim.url) as dev:
            dev.ping()  # warm up
            print(f"PING round trip, {_ROUNDS} rounds each, simulator heap {sim.heap // 1024} KB")
            for size in _SIZES:
                print(_row(f"{size} bytes", _times(dev, size), _times(anchor, size)))
    finally:
        anchor.close()
        srv.close()

if __name__ == "__main__":
    run()
