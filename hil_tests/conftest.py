"""Hardware-in-the-loop suite: the whole device through its link, keypad and screen.

    pytest hil_tests                              # starts its own simulator (CI)
    pytest hil_tests --device socket://127.0.0.1:P   # a simulator already running
    pytest hil_tests --device /dev/ttyACM0        # a board on the desk: DESTRUCTIVE
    pytest hil_tests --device rfc2217://host:P    # a board behind ser2net
    LG_COORDINATOR=host:P pytest hil_tests --lg-env env.yaml   # a labgrid place (docs/boards.md)

A board that takes keys from the link (a simulator, or a board with its lab strap fitted: docs/
boards.md, "Lab mode") runs with no person; on a field unit the operator fixture asks a person at
the terminal. Under labgrid the serial port (NetworkSerialPort) and the power (PowerProtocol) come
from the place's target "main".

Fixtures:
    device_url  the URL under test (session)
    device      a capkey.link.device.Device connected to it (one per test)
    operator    press(keys) / screen_lines() / wait_for_text(text, timeout) / accept(): the
                keypad and the screen, through PRESS/SCREEN (a board that takes keys), or a
                person prompted on the terminal (a field unit: SCREEN still reads the display)
    power       off() / on() of the board: the simulator this run started, or the labgrid
                place's power driver; skips without either; the board is on again after the test
    key_board   a device whose certificate key is at its first use: a fresh simulator, or the
                board with its keys wiped (key_support.KeyBoard, wipe_keys)
    connect     connect(url) -> Device, retried while the device starts
    operator_for  operator_for(simulator) -> an Operator of another simulator
    sim         the session's Simulator (kill / start / restart / crash injection / keys held at
                power-up); skips unless this suite started the simulator
    new_sim     factory of extra simulators with their own flash folder (sim_only tests)

Markers (pyproject.toml): sim_only, hardware_only, destructive; strap and power are set here on
every test that uses the operator (with no person: the lab strap) or the power fixture.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from capkey_dev.demo import Demo, Keypad, accept
from capkey_dev.sim import Simulator
from key_support import KeyBoard, ensure_key_app, sim_kwargs, wipe_keys

from capkey.catalog.boards import BOARDS, SIMULATOR
from capkey.link.device import Device
from capkey.link.errors import LinkError, ProtocolError
from capkey.link.transport import Transport

CAPKEY_BOARDS = (SIMULATOR, *BOARDS)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device", metavar="URL", default=None,
        help="device under test: /dev/ttyACM0 (a real board, destructive) or "
             "socket://127.0.0.1:PORT (a running simulator). Default: start a simulator.",
    )


def connect(url: str, timeout: float = 15.0) -> Device:
    """A Device on `url`, retrying while the device (re)starts."""
    deadline = time.monotonic() + timeout
    while True:
        transport = None
        try:
            transport = Transport.open(url)
            return Device(transport)
        except LinkError:
            if transport is not None:
                transport.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Power:
    """The board's power switch: off() cuts it at once, on() gives it back (nothing if it is on)
    and returns once the board's port is there again."""

    def __init__(self, off: Callable[[], object], on: Callable[[], object]):
        self.off = off
        self.on = on


class _Target:
    """What the session runs against, decided once."""

    def __init__(self, url: str, sim: Simulator | None, power: Power | None, board: str,
                 serial: str, takes_keys: bool):
        self.url = url
        self.sim = sim
        self.power = power
        self.board = board
        self.serial = serial
        self.takes_keys = takes_keys

    @property
    def one_stream(self) -> bool:
        """A serial port (USB, a pty, RFC 2217): one connection at a time, which the test's
        device and its operator share. A simulator's TCP port takes several."""
        return not self.url.startswith("socket://")


def _labgrid(request: pytest.FixtureRequest) -> tuple[str, Power | None]:
    """The URL of the place's serial port and its power driver (None: the place has none)."""
    from labgrid.exceptions import NoDriverFoundError
    from labgrid.protocol import PowerProtocol
    from labgrid.resource import NetworkSerialPort

    target = request.getfixturevalue("target")  # labgrid's pytest plugin: the env's "main"
    port = target.get_resource(NetworkSerialPort)
    scheme = "rfc2217" if port.protocol == "rfc2217" else "socket"
    try:
        driver = target.get_driver(PowerProtocol)
    except NoDriverFoundError:
        return f"{scheme}://{port.host}:{port.port}", None
    return f"{scheme}://{port.host}:{port.port}", Power(driver.off, driver.on)


def _lab_env(config: pytest.Config) -> str | None:
    return config.getoption("lg_env", default=None)


@pytest.fixture(scope="session")
def _target(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[_Target]:
    url = request.config.getoption("--device")
    sim = None
    power = None
    if _lab_env(request.config):
        url, power = _labgrid(request)
    elif url is None:
        sim = Simulator(tmp_path_factory.mktemp("hil-sim"))
        sim.start()
        url = sim.url
        power = Power(sim.kill, lambda: sim.running or sim.start())
    try:
        try:
            dev = connect(url, timeout=15.0)
            try:
                info = dev.info()
                takes_keys = dev.takes_keys()
            finally:
                dev.close()
        except LinkError as exc:
            pytest.exit(f"cannot talk to the device at {url}: {exc}", returncode=3)
        if info.board not in CAPKEY_BOARDS:
            pytest.exit(f"{url} answers but is not a capkey board (INFO board={info.board!r}): "
                        "refusing to run destructive tests on it", returncode=3)
        yield _Target(url, sim, power, info.board, info.serial, takes_keys)
    finally:
        if sim is not None:
            sim.stop()


def _on_board(config: pytest.Config) -> bool:
    """Not on a simulator's TCP port: a board, or whatever stands behind a serial port."""
    url = config.getoption("--device")
    return bool(_lab_env(config)) or (url is not None and not url.startswith("socket://"))


def pytest_report_header(config: pytest.Config) -> list[str]:
    url = config.getoption("--device")
    if _lab_env(config):
        return [f"capkey HIL: on the labgrid place of {_lab_env(config)} (DESTRUCTIVE on a board)"]
    if url is None:
        return ["capkey HIL: on a simulator started by this run"]
    if url.startswith("socket://"):
        return [f"capkey HIL: on the simulator at {url}"]
    bar = "!" * 78
    return [bar,
            f"capkey HIL on the REAL BOARD at {url}: DESTRUCTIVE tests will change its settings,",
            "use up PIN tries and wipe keys. Never run this on a device someone relies on.",
            bar]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_hardware = _on_board(config)
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "operator" in names or "key_board" in names:
            item.add_marker(pytest.mark.strap)
        if "power" in names or "key_board" in names:  # a board's keys are wiped with power cuts
            item.add_marker(pytest.mark.power)
        if on_hardware and item.get_closest_marker("sim_only"):
            item.add_marker(pytest.mark.skip(reason="needs the simulator"))
        if not on_hardware and item.get_closest_marker("hardware_only"):
            item.add_marker(pytest.mark.skip(reason="needs a real board (--device /dev/…)"))


@pytest.fixture(scope="session")
def device_url(_target: _Target) -> str:
    return _target.url


@pytest.fixture
def sim(_target: _Target) -> Iterator[Simulator]:
    """The session's simulator, running at the start of the test and again after it."""
    s = _target.sim
    if s is None:
        pytest.skip("needs a simulator started by this test run (no --device)")
    if not s.running:
        s.start()
    yield s
    if s.crash_at is not None or s.crash_tag is not None or s.held_keys or not s.running:
        s.crash_at = s.crash_tag = None
        s.held_keys = ""
        s.restart()


@pytest.fixture
def power(_target: _Target) -> Iterator[Power]:
    """The board's power (see Power); on again after the test, whatever it did."""
    p = _target.power
    if p is None:
        pytest.skip("needs power control: the simulator of this run, or a labgrid place with a "
                    "power driver")
    yield p
    p.on()


@pytest.fixture
def new_sim(tmp_path) -> Iterator:
    """new_sim(**kwargs) -> a started Simulator with its own flash folder, stopped after."""
    made: list[Simulator] = []

    def make(**kwargs) -> Simulator:
        storage = kwargs.pop("storage_dir", tmp_path / f"flash{len(made)}")
        s = Simulator(storage, **kwargs)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def device(_target: _Target) -> Iterator[Device]:
    dev = connect(_target.url)
    try:
        yield dev
    finally:
        dev.close()


class Operator:
    """The person at the device: presses keys and reads the screen."""

    def __init__(self, url: str, takes_keys: bool, prompt=None, shared: Device | None = None):
        self.url = url
        self.takes_keys = takes_keys
        self._prompt = prompt
        self._shared = shared  # a serial port opens once: use the test's own connection
        self._dev: Device | None = shared

    def _call(self, fn):
        for attempt in (1, 2):
            try:
                if self._dev is None:
                    self._dev = connect(self.url)
                return fn(self._dev)
            except LinkError as exc:
                if isinstance(exc, ProtocolError) or self._shared is not None:
                    raise
                self.close()  # the simulator was restarted: connect again once
                if attempt == 2:
                    raise

    def share(self, device: Device) -> None:
        """From now on, press and read through `device` (a new connection after a power cut)."""
        self._shared = self._dev = device

    def press(self, keys: str) -> None:
        if self.takes_keys:
            self._call(lambda d: d.press(keys))
        else:
            self._prompt(f"Appuyez sur les touches {' '.join(keys)} puis Entrée ici : ")

    def info(self):
        """INFO of the device, read on the operator's connection."""
        return self._call(lambda d: d.info())

    def device(self) -> Device:
        """The operator's connection, for a test without a device fixture of its own: opened
        again after a power cut, so ask for it after one."""
        return self._call(lambda d: d)

    def screen_lines(self) -> list[str]:
        return self._call(lambda d: d.screen()[1])

    def screen_text(self) -> str:
        """The screen's rows joined by spaces (text wraps over rows), blanks collapsed."""
        return re.sub(r"\s+", " ", " ".join(self.screen_lines())).strip()

    def wait_for_text(self, text: str, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.screen_lines()
            if text in re.sub(r"\s+", " ", " ".join(lines)):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on the screen within {timeout:g} s: {lines}")
            time.sleep(0.05)

    def accept(self) -> list[str]:
        """OK on the confirmation on screen, scrolled to its end first (B until the
        "D:OK *:ANNULER" hint shows, then D); the rows shown on the way."""
        return accept(self.screen_lines, self.press)

    def close(self) -> None:
        dev, self._dev = self._dev, None
        if dev is not None and dev is not self._shared:
            dev.close()


@pytest.fixture
def operator(_target: _Target, request: pytest.FixtureRequest) -> Iterator[Operator]:
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def prompt(message: str) -> None:
        with capture.global_and_fixture_disabled():
            input(message)

    # on one stream, a test's device and its operator share the connection; a test without a
    # device fixture leaves it to the operator, which opens it again after a power cut
    one = _target.one_stream and "device" in request.fixturenames
    shared = request.getfixturevalue("device") if one else None
    op = Operator(_target.url, _target.takes_keys, prompt, shared)
    try:
        yield op
    finally:
        op.close()


@pytest.fixture
def operator_for() -> Iterator:
    """operator_for(simulator) -> an Operator of that simulator (for new_sim tests)."""
    made: list[Operator] = []

    def make(sim: Simulator) -> Operator:
        op = Operator(sim.url, takes_keys=sim.lab_strap)
        made.append(op)
        return op

    yield make
    for op in made:
        op.close()


@pytest.fixture
def key_board(_target: _Target, request: pytest.FixtureRequest, new_sim, operator_for
              ) -> Iterator[KeyBoard]:
    """A device whose certificate key is at its first use (key_support.KeyBoard). On a
    simulator: a fresh one of its own (empty flash). On a board: the session's board, its keys
    wiped by eight wrong PUKs (key_support.wipe_keys), which needs the lab strap and power."""
    if not _on_board(request.config):
        sim = new_sim(**sim_kwargs())
        sim_op = operator_for(sim)

        def restart(old: Device) -> Device:
            old.close()
            sim_op.close()
            sim.restart()
            return connect(sim.url)

        board = KeyBoard(sim_op, connect(sim.url), restart)
    else:
        if not _target.takes_keys:
            pytest.skip("needs a board that takes keys from the link (the lab strap)")
        power: Power = request.getfixturevalue("power")
        dev = connect(_target.url)
        op = Operator(_target.url, True, shared=dev if _target.one_stream else None)

        def cycle(old: Device) -> Device:
            old.close()
            op.close()
            power.off()
            power.on()
            new = connect(_target.url)
            if _target.one_stream:
                op.share(new)
            return new

        board = KeyBoard(op, dev, cycle)
        wipe_keys(board)
    try:
        ensure_key_app(board.dev)
        yield board
    finally:
        board.op.close()
        board.dev.close()


@pytest.fixture(name="connect")
def connect_fixture():
    """connect(url) -> a Device, retried while the device (re)starts; the test closes it."""
    return connect


# -- the browser tests (test_e2e_browser.py, test_accessibility.py) -----------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed (make system)")
    with Demo(tmp_path_factory.mktemp("demo") / "work", http_port=0, agent_port=0,
              echo=lambda line: None) as d:
        yield d


@pytest.fixture(scope="session")
def browser(demo):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def keypad(demo):
    k = Keypad(demo.device_url)
    yield k
    k.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """test_accessibility.py's figures per page, in every run's output."""
    from test_accessibility import AXE_REPORT

    lines = config.stash.get(AXE_REPORT, [])
    if lines:
        terminalreporter.section("axe-core: violations per page and impact")
        for line in lines:
            terminalreporter.write_line(line)
