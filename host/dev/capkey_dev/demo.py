"""`capkey demo`: a simulated device personalised for a test customer, the bank's authentication
service on SQLite, the web portal, the device view and the local signing agent, in one command.

    run_demo(http_port=8400, agent_port=8401)      # prints the URLs and credentials; Ctrl-C stops

`Demo` does the same step by step for tests (``with Demo(folder) as demo: demo.portal_url``):

1. starts a `capkey_dev.sim.Simulator` (its flash in the work folder);
2. creates the bank: a SQLite store, an issuer master key (in memory), a two-level CA, and the
   `AuthService` with the real CAP and signature verifiers (`capkey.rules.adapters`);
3. creates subscription 123456789 with user 0001 (Utilisateur principal) and 0002 (Utilisateur);
   0001 gets a confidential code flagged must_change (printed once);
4. personalises the device's CAP card for 0001 (issuer data over the link, `CardClient`);
5. enrols the device's certificate key for 0001: the device makes the key and attests it, the CA
   certifies it; the keypad steps (confirm, choose the PIN and the PUK, twice each) are pressed
   for the person through the simulator's PRESS command (both printed on the console);
6. serves the portal (with the device view under /appareil/) and the agent on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette

from capkey.agent import AgentConfig
from capkey.agent import create_app as create_agent
from capkey.agent.app import device_opener
from capkey.cert.ca import CertificateAuthority
from capkey.emv.issuer import SoftwareIssuerBackend, generate_imk, personalisation_data
from capkey.emv.profiles import VISA_DPA_CVN10
from capkey.link.card import CardClient
from capkey.link.device import Device
from capkey.link.errors import LinkError
from capkey.link.key import KeyClient, enrol
from capkey.portal.app import PortalConfig, create_app
from capkey.rules import AuthService, Role
from capkey.rules.adapters import CapVerifier, SignatureVerifier
from capkey.store import SoftwareAuditKey, Store, open_store
from capkey_dev.devview import create_app as create_devview
from capkey_dev.sim import Simulator, SimulatorError

__all__ = ["Credentials", "Demo", "DemoError", "run_demo"]

SUBSCRIPTION = "123456789"
PRINCIPAL = "0001"
OTHER_USER = "0002"
CARD_PAN = "4970105558880011"
CARD_PSN = 1
CARD_PIN = "1234"
KEY_SLOT = 0
IMK_LABEL = "demo-imk-1"
BANK = "Banque cooperative demo"
#: The demo's device is both a CAP reader and a certificate key, watched all the time by the
#: device view (SCREEN about three times a second): a Raspberry Pi Pico's heap, with a quarter of
#: it free at every peak (`make bench`, "key SIGN, device view polling"; docs/architecture.md,
#: "Memory").
DEMO_BOARD = "rpi_pico"
ACTOR = "demo:seed"


class DemoError(Exception):
    """The demo could not be set up (port in use, simulator or device failure)."""


@dataclass(frozen=True)
class Credentials:
    subscription: str
    user: str
    code: str  # the one-time confidential code (must be changed at first code login)
    card_pin: str
    cert_pin: str | None
    puk: str | None
    other_user: str


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HINT_OK = "D:OK *:ANNULER"  # the last row of a confirmation (firmware/ui/i18n.py)


def accept(lines: Callable[[], list[str]], press: Callable[[str], None],
           timeout: float = 5.0) -> list[str]:
    """OK on the confirmation on a device's screen (`lines()` reads it, `press(keys)` types).
    One longer than the screen takes OK only once its last row, the "D:OK *:ANNULER" hint, was
    shown (docs/ui.md): B until it is, then D. Returns the rows shown on the way, screen after
    screen."""
    deadline = time.monotonic() + timeout
    shown = lines()
    seen = list(shown)
    while HINT_OK not in shown:
        if time.monotonic() > deadline:
            raise DemoError(f"the device shows no « {HINT_OK} »: {shown}")
        press("B")
        time.sleep(0.05)
        shown = lines()
        seen += shown
    press("D")
    return seen


class Keypad:
    """The simulated device's keypad and screen on a link connection of their own (PRESS,
    SCREEN), for the steps the demo performs for the person."""

    def __init__(self, url: str):
        self._cm = Device.open(url)
        self.device = self._cm.__enter__()

    def close(self) -> None:
        self._cm.__exit__(None, None, None)

    def lines(self) -> list[str]:
        return self.device.screen()[1]

    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines() if line.strip())

    def wait_for(self, words: str, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if words in " ".join(line.strip() for line in lines if line.strip()):
                return lines
            if time.monotonic() > deadline:
                raise DemoError(f"the device does not show « {words} »: {lines}")
            time.sleep(0.05)

    def press(self, keys: str) -> None:
        self.device.press(keys)

    def accept(self) -> list[str]:
        """OK on the confirmation on screen, scrolled to its end first (`accept`)."""
        return accept(self.lines, self.press)


class _Call:
    """A device call in a thread, while the keypad is driven from this one."""

    def __init__(self, fn: Callable[[], object]):
        self.result: object = None
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._t.start()

    def _run(self, fn: Callable[[], object]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # handed over in join()
            self.error = exc

    def join(self, timeout: float = 60.0) -> object:
        self._t.join(timeout)
        if self._t.is_alive():
            raise DemoError("the device stopped answering")
        if self.error is not None:
            raise self.error
        return self.result


class _Server:
    """A uvicorn server in a thread (no signal handlers: the caller owns Ctrl-C)."""

    def __init__(self, app, port: int):
        import uvicorn

        self.port = port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan="on"))
        self._t = threading.Thread(target=self.server.run, daemon=True, name=f"http-{port}")

    def start(self, timeout: float = 10.0) -> None:
        self._t.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._t.is_alive() or time.monotonic() > deadline:
                raise DemoError(f"the web server did not start on 127.0.0.1:{self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self._t.join(10)


class Demo:
    """The whole demo in `folder` (created; must be empty). `echo(line)` gets the progress lines.
    `http_port`/`agent_port` 0 pick free ports. `certificate`: enrol the certificate key and
    run the agent (None: if the device's firmware has the key app)."""

    def __init__(self, folder: str | Path, *, http_port: int = 8400, agent_port: int = 8401,
                 board_profile: str = DEMO_BOARD, echo: Callable[[str], None] = print,
                 certificate: bool | None = None, sim_echo: bool = False):
        self.folder = Path(folder)
        self.http_port = http_port or free_port()
        self.agent_port = agent_port or free_port()
        self.board_profile = board_profile
        self.echo = echo
        self.certificate = certificate
        self.sim_echo = sim_echo
        self.sim: Simulator | None = None
        self.service: AuthService | None = None
        self.credentials: Credentials | None = None
        self._servers: list[_Server] = []
        self._device_view: Starlette | None = None
        self._store: Store | None = None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def portal_url(self) -> str:
        return self.origin + "/"

    @property
    def device_view_url(self) -> str:
        return self.origin + "/appareil/"

    @property
    def agent_url(self) -> str:
        return f"http://127.0.0.1:{self.agent_port}"

    @property
    def device_url(self) -> str:
        assert self.sim is not None
        return self.sim.url

    # -- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> Demo:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @contextlib.contextmanager
    def _step(self, n: int, total: int, text: str) -> Iterator[None]:
        t0 = time.monotonic()
        self.echo(f"[{n}/{total}] {text}…")
        yield
        self.echo(f"      done ({time.monotonic() - t0:.1f} s)")

    def start(self) -> Demo:
        for port in {self.http_port, self.agent_port}:
            if not port_free(port):
                raise DemoError(f"port {port} is already in use")
        if self.http_port == self.agent_port:
            raise DemoError("the portal and the agent need two different ports")
        self.folder.mkdir(parents=True, exist_ok=True)
        if any(self.folder.iterdir()):
            raise DemoError(f"{self.folder} is not empty")
        try:
            self.echo("Starting the simulated device (MicroPython)…")
            t0 = time.monotonic()
            self.sim = Simulator(self.folder / "device", board_profile=self.board_profile,
                                 echo=self.sim_echo)
            self.sim.start()
            with Device.open(self.sim.url) as dev:
                apps = dict(dev.info().apps)
            self.echo(f"      done ({time.monotonic() - t0:.1f} s): "
                      + ", ".join(f"{a} {v}" for a, v in sorted(apps.items())))
            if "cap" not in apps:
                raise DemoError("the device firmware has no CAP reader")
            if self.certificate is None:
                self.certificate = "key" in apps
            elif self.certificate and "key" not in apps:
                raise DemoError("the device firmware has no certificate key")
            if not self.certificate:
                self.echo("      (no certificate key: no certificate login)")
            total = 5 if self.certificate else 4
            with self._step(1, total, "Bank: SQLite database, CAP issuer master key, certificate "
                                      "authority, authentication service"):
                now = dt.datetime.now(dt.UTC)
                backend = SoftwareIssuerBackend({IMK_LABEL: generate_imk()})
                ca = CertificateAuthority.create(
                    self.folder / "ca", name=BANK, now=now - dt.timedelta(minutes=5),
                    encryption=serialization.BestAvailableEncryption(secrets.token_bytes(24)))
                # a demonstration bank: its audit trail keyed under the published test key
                store = self._store = open_store(str(self.folder / "capkey.db"),
                                                 audit_key=SoftwareAuditKey.for_tests())
                self.service = AuthService(
                    store, cap_verifier=CapVerifier(backend, origin=self.origin),
                    signature_verifier=SignatureVerifier(ca.trust_config(), ca.revocation(),
                                                         origin=self.origin),
                    actor=ACTOR)
                directory = self.service.directory
                directory.create_subscription(SUBSCRIPTION, actor=ACTOR)
                directory.add_user(SUBSCRIPTION, PRINCIPAL, Role.PRINCIPAL, actor=ACTOR)
                directory.add_user(SUBSCRIPTION, OTHER_USER, Role.USER, actor=ACTOR)
                code = directory.set_code(SUBSCRIPTION, PRINCIPAL, actor=ACTOR)
            with self._step(2, total, "Personalising the device's CAP card "
                                      f"(user {PRINCIPAL})"):
                self._personalise(backend)
            cert_pin = puk = None
            if self.certificate:
                with self._step(3, total, "Enrolling the certificate: key made in the "
                                          "device, PIN and PUK chosen on its keypad"):
                    cert_pin, puk = self._enrol(ca)
            with self._step(total - 1, total, "Starting the portal, the device view "
                                              "and the signing agent"):
                self._serve()
            self.credentials = Credentials(SUBSCRIPTION, PRINCIPAL, code, CARD_PIN, cert_pin,
                                           puk, OTHER_USER)
            self.echo(f"[{total}/{total}] Ready.")
        except (SimulatorError, LinkError) as exc:
            self.stop()
            raise DemoError(f"simulated device: {exc}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def _personalise(self, backend: SoftwareIssuerBackend) -> None:
        assert self.service is not None and self.sim is not None
        data = personalisation_data(backend, profile=VISA_DPA_CVN10, imk_label=IMK_LABEL,
                                    pan=CARD_PAN, psn=CARD_PSN, pin=CARD_PIN, pin_try_limit=3)
        try:
            with Device.open(self.sim.url) as dev:
                CardClient(dev).personalise(data)
        finally:
            data[:] = bytes(len(data))
        self.service.directory.attach_card(
            SUBSCRIPTION, PRINCIPAL,
            {"profile": VISA_DPA_CVN10.name, "pan": CARD_PAN, "psn": CARD_PSN,
             "imk_label": IMK_LABEL, "pin_try_limit": 3}, actor=ACTOR)

    def _enrol(self, ca: CertificateAuthority) -> tuple[str, str]:
        """Makes and certifies the key of slot 0; returns the (PIN, PUK) typed on the keypad for
        the person (random; 6 and 8 digits, so the PUK always differs from the PIN)."""
        assert self.service is not None and self.sim is not None
        pin = "".join(secrets.choice("0123456789") for _ in range(6))
        puk = "".join(secrets.choice("0123456789") for _ in range(8))
        keypad = Keypad(self.sim.url)
        try:
            with Device.open(self.sim.url) as dev:
                key = KeyClient(dev)
                ca.provision_device(dev.info().serial, key.attestation_key(),
                                    now=dt.datetime.now(dt.UTC))
                call = _Call(lambda: enrol(key, ca, slot=KEY_SLOT, subscription=SUBSCRIPTION,
                                           user=PRINCIPAL, now=dt.datetime.now(dt.UTC)))
                for screen, keys in (("Nouvelle clé", "D"),
                                     ("Choisissez votre code PIN", pin + "D"),
                                     ("Confirmez le code PIN", pin + "D"),
                                     ("Choisissez votre code PUK", puk + "D"),
                                     ("Confirmez le code PUK", puk + "D")):
                    keypad.wait_for(screen)
                    keypad.press(keys)
                certificate = call.join()
        finally:
            keypad.close()
        der = certificate.public_bytes(serialization.Encoding.DER)  # type: ignore[attr-defined]
        self.service.directory.attach_certificate(SUBSCRIPTION, PRINCIPAL, der, actor=ACTOR)
        return pin, puk

    def _serve(self) -> None:
        assert self.service is not None and self.sim is not None
        self._device_view = create_devview(self.sim.url)
        portal = create_app(self.service, PortalConfig(
            origin=self.origin, agent_url=self.agent_url if self.certificate else None,
            device_view=self._device_view))
        servers = [_Server(portal, self.http_port)]
        if self.certificate:
            agent = create_agent(AgentConfig(allowed_origins=frozenset({self.origin}),
                                             port=self.agent_port,
                                             open_key=device_opener(self.sim.url)))
            servers.append(_Server(agent, self.agent_port))
        for server in servers:
            server.start()
            self._servers.append(server)

    def stop(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self._device_view is not None:
            self._device_view.state.session.close()
            self._device_view = None
        if self.sim is not None:
            self.sim.stop()
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- the console ---------------------------------------------------------------------------

    def banner(self) -> list[str]:
        c = self.credentials
        assert c is not None
        lines = [
            "",
            f"  Portal (Espace Client)     : {self.portal_url}",
            f"  Device (screen, keypad)    : {self.device_view_url}",
        ]
        if self.certificate:
            lines.append(f"  Signing agent              : {self.agent_url}  (the TURBO SIGN role)")
        lines += [
            f"  Simulated device (link)    : {self.device_url}",
            "",
            f"  Identifiant client         : {c.subscription}",
            f"  numéro Utilisateur         : {c.user}  (Utilisateur principal)",
            f"  CAP card PIN               : {c.card_pin}",
        ]
        if c.cert_pin:
            puk = f"{c.puk[:4]} {c.puk[4:]}" if c.puk else "-"
            lines.append(f"  certificate PIN            : {c.cert_pin}   (PUK: {puk})")
        lines += [
            f"  code confidentiel          : {c.code}",
            "      shown once; the portal asks for a new one at the first code login.",
            "      PSD2: the very first login must use the CAP reader"
            + (" or the certificate." if self.certificate else "."),
            f"  another user               : {c.other_user} (for « Générer un nouveau code »)",
            "",
            f"  Audit trail: CAPKEY_AUDIT_TEST_KEY=1 capkey audit verify --db {self.folder / 'capkey.db'}",
        ]
        return lines


def run_demo(*, http_port: int = 8400, agent_port: int = 8401, folder: str | Path | None = None,
             board_profile: str = DEMO_BOARD, echo: Callable[[str], None] = print,
             keep: bool = False) -> None:
    """Sets the demo up, prints the URLs and the test credentials, serves until Ctrl-C (or
    SIGTERM, with `capkey_dev.sim.exit_on_sigterm`), then stops everything. The work folder is a new
    temporary folder unless `folder` is given; a temporary one is removed afterwards unless
    `keep`."""
    temporary = folder is None
    work = Path(tempfile.mkdtemp(prefix="capkey-demo-") if folder is None else folder)
    echo("capkey demo — « Accès à l'Espace Client Internet » with a simulated bank, customer and device")
    echo(f"  work folder: {work}")
    demo = Demo(work, http_port=http_port, agent_port=agent_port, board_profile=board_profile,
                echo=echo)
    try:
        demo.start()
        for line in demo.banner():
            echo(line)
        echo("")
        echo("Ctrl-C to stop.")
        while demo.sim is not None and not demo.sim.exited:
            time.sleep(0.5)
        echo("The simulated device stopped:")
        if demo.sim is not None:
            echo(demo.sim.console)
    except KeyboardInterrupt:
        echo("")
        echo("Stopping…")
    finally:
        demo.stop()
        if temporary and not keep:
            shutil.rmtree(work, ignore_errors=True)
        echo("Stopped.")
