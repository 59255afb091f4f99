"""Hardware-in-the-loop suite: the whole device through its link, keypad and screen.

    pytest hil_tests                              # starts its own simulator (CI)
    pytest hil_tests --device socket://127.0.0.1:P   # a simulator already running
    pytest hil_tests --device /dev/ttyACM0        # a real board: DESTRUCTIVE, asks a person

Fixtures:
    device_url  the URL under test (session)
    device      a capkey.link.device.Device connected to it (one per test)
    operator    press(keys) / screen_lines() / wait_for_text(text, timeout) / accept(): the
                keypad and the screen, through PRESS/SCREEN on a second connection (simulator),
                or a person prompted on the terminal (real board: SCREEN still reads the display)
    connect     connect(url) -> Device, retried while the device starts
    operator_for  operator_for(simulator) -> an Operator of another simulator
    sim         the session's Simulator (kill / start / restart / crash injection / keys held at
                power-up); skips unless this suite started the simulator
    new_sim     factory of extra simulators with their own flash folder (sim_only tests)

Markers (pyproject.toml): sim_only, hardware_only, destructive.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from capkey_dev.demo import Demo, Keypad, accept
from capkey_dev.sim import Simulator

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


class _Target:
    """What the session runs against, decided once."""

    def __init__(self, url: str, sim: Simulator | None, board: str, serial: str):
        self.url = url
        self.sim = sim
        self.board = board
        self.serial = serial

    @property
    def simulated(self) -> bool:
        return self.board == "sim"


@pytest.fixture(scope="session")
def _target(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[_Target]:
    url = request.config.getoption("--device")
    sim = None
    if url is None:
        sim = Simulator(tmp_path_factory.mktemp("hil-sim"))
        sim.start()
        url = sim.url
    try:
        try:
            dev = connect(url, timeout=5.0)
            try:
                info = dev.info()
            finally:
                dev.close()
        except LinkError as exc:
            pytest.exit(f"cannot talk to the device at {url}: {exc}", returncode=3)
        if info.board not in CAPKEY_BOARDS:
            pytest.exit(f"{url} answers but is not a capkey board (INFO board={info.board!r}): "
                        "refusing to run destructive tests on it", returncode=3)
        yield _Target(url, sim, info.board, info.serial)
    finally:
        if sim is not None:
            sim.stop()


def pytest_report_header(config: pytest.Config) -> list[str]:
    url = config.getoption("--device")
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
    url = config.getoption("--device")
    on_hardware = url is not None and not url.startswith("socket://")
    for item in items:
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

    def __init__(self, url: str, simulated: bool, prompt=None, shared: Device | None = None):
        self.url = url
        self.simulated = simulated
        self._prompt = prompt
        self._shared = shared  # a USB port opens once: use the test's own connection
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

    def press(self, keys: str) -> None:
        if self.simulated:
            self._call(lambda d: d.press(keys))
        else:
            self._prompt(f"Appuyez sur les touches {' '.join(keys)} puis Entrée ici : ")

    def info(self):
        """INFO of the device, read on the operator's connection."""
        return self._call(lambda d: d.info())

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

    shared = None if _target.simulated else request.getfixturevalue("device")
    op = Operator(_target.url, _target.simulated, prompt, shared)
    try:
        yield op
    finally:
        op.close()


@pytest.fixture
def operator_for() -> Iterator:
    """operator_for(simulator) -> an Operator of that simulator (for new_sim tests)."""
    made: list[Operator] = []

    def make(sim: Simulator) -> Operator:
        op = Operator(sim.url, simulated=True)
        made.append(op)
        return op

    yield make
    for op in made:
        op.close()


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
