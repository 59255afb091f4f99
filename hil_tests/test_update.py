"""Update with rollback (docs/boards.md "Update and rollback", firmware/slots.py), on a simulator
whose flash capkey deploy writes like a board's: the first install at the REPL, a card, an update
that keeps it, an update that raises at import and is given up, a store from a newer firmware
that an older one refuses, and a power cut at every durable step of the switch.

Each firmware version is built from a copy of the sources with its version (and, for the broken
one, a raise at import) written in, for the simulator's own architecture (`--board sim`)."""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from pathlib import Path

import pytest
from cap_support import InThread, backend, get_code, home, personalise, status
from capkey_dev.build import ROOT, stage
from capkey_dev.cli.deploy import (
    BoardRepl,
    copy_commands,
    install,
    root_digests,
    switch_script,
    verify_copy,
)
from capkey_dev.sim import REBOOT_EXIT, SimulatorError

from capkey._cli.util import CliFail
from capkey.emv.verifier import Mode, verify_cap
from capkey.link.errors import LinkError

pytestmark = pytest.mark.sim_only

HOME = "Choisir la fonction"


def build(tmp: Path, version: str, *, schema: int = 1, broken: bool = False) -> Path:
    """The staged firmware `version` (capkey_dev.build.stage) from a copy of the sources."""
    src = tmp / f"src-{version}"
    shutil.copytree(ROOT / "firmware", src / "firmware",
                    ignore=shutil.ignore_patterns("test_*", "__pycache__", "bench"))
    main = src / "firmware" / "main.py"
    text = re.sub(r'FIRMWARE_VERSION = "[^"]+"', f'FIRMWARE_VERSION = "{version}"',
                  main.read_text())
    if broken:
        text = text.replace("\nimport asyncio\n",
                            f'\nraise RuntimeError("{version} is broken at import")\nimport asyncio\n', 1)
    main.write_text(text)
    store = src / "firmware" / "store" / "__init__.py"
    store.write_text(store.read_text().replace("SCHEMA = const(1)", f"SCHEMA = const({schema})"))
    return stage("sim", src, tmp / f"stage-{version}")


def update(sim, tree: Path, op) -> str:
    """capkey deploy onto the running simulator: OK pressed on its keypad for maintenance mode.
    -> what deploy says the board runs; CliFail when the update was given up."""
    call = InThread(install, tree, sim.url)
    op.wait_for_text("Accepter ?", timeout=15)
    op.press("D")
    op.close()
    return call.join(timeout=120)


def running(op) -> tuple[str, str]:
    info = op.info()
    return info.firmware_version, info.slot


def code_verifies(dev, op, card):
    code = get_code(dev, op)
    home(op)
    return card.with_atc(verify_cap(card, code, mode=Mode.IDENTIFY, key_backend=backend()))


def test_update_keeps_the_card_and_a_broken_one_falls_back(new_sim, operator_for, connect,
                                                           tmp_path):
    v1, v2, v3 = build(tmp_path, "1.0.0"), build(tmp_path, "2.0.0"), \
        build(tmp_path, "3.0.0", broken=True)
    sim = new_sim(held_keys="*#")  # a board at its REPL: the first install
    sim.held_keys = ""
    install(v1, sim.url)
    op = operator_for(sim)
    assert running(op) == ("1.0.0", "a")
    dev = connect(sim.url)
    card = code_verifies(dev, op, personalise(dev, op))
    dev.close()

    update(sim, v2, op)
    assert running(op) == ("2.0.0", "b")
    dev = connect(sim.url)
    assert status(dev).atc == card.last_atc  # the card, its keys and its counter came along
    card = code_verifies(dev, op, card)
    dev.close()

    with pytest.raises(CliFail, match=r"given up: the board is back on 2\.0\.0 \(slot b failed=a\)"):
        update(sim, v3, op)
    assert running(op) == ("2.0.0", "b failed=a")
    assert "3.0.0 is broken at import" in sim.console
    dev = connect(sim.url)
    card = code_verifies(dev, op, card)
    dev.close()

    # a store written by a newer schema is never opened by an older app: 2.1.0 (schema 2)
    # confirms itself and marks the store; 1.0.0 then refuses it and is given up
    assert update(sim, build(tmp_path, "2.1.0", schema=2), op) == "2.1.0 in slot a"
    with pytest.raises(CliFail, match=r"given up: the board is back on 2\.1\.0"):
        update(sim, v1, op)
    assert "StoreTooNew" in sim.console
    dev = connect(sim.url)
    code_verifies(dev, op, card)
    dev.close()


def settled(op, sim, timeout: float = 20.0) -> tuple[str, str]:
    """(version, slot) once the board answers and is not on trial any more."""
    deadline = time.monotonic() + timeout
    while True:
        op.close()  # INFO is read once per connection
        try:
            now = running(op)
        except (LinkError, OSError) as exc:  # restarting (a fallback), or still booting
            now = ("", str(exc))
        if now[0] and "trial" not in now[1]:
            return now
        assert time.monotonic() < deadline, f"the board did not settle: {now}\n{sim.console}"
        time.sleep(0.2)


def test_a_power_cut_at_every_step_of_the_switch_leaves_a_bootable_board(new_sim, operator_for,
                                                                         tmp_path):
    """v1 runs in slot a, v2 was copied into slot b and checked. The switch's durable steps are
    the state's write by the switch at the REPL, by the first boot of v2 (counted) and by its
    confirmation, three each (begin, synced, renamed): the plug is pulled at each in turn, from
    a copy of that flash, and the board powered up again must boot v1 or v2, settled."""
    v1, v2 = build(tmp_path, "1.0.0"), build(tmp_path, "2.0.0")
    sim = new_sim(held_keys="*#")
    sim.held_keys = ""
    install(v1, sim.url)
    sim.held_keys = "*#"
    sim.restart()  # at its REPL: v2 copied beside v1
    repl = BoardRepl(sim.url)
    repl.run(*copy_commands(v2, "b"))
    verify_copy(repl, "b", root_digests(v2))
    sim.stop()
    ready = tmp_path / "flash-ready"
    shutil.copytree(sim.storage, ready)
    op = operator_for(sim)
    outcomes = {}
    for step in range(1, 10):
        shutil.rmtree(sim.storage)
        shutil.copytree(ready, sim.storage)
        at_repl = step <= 3
        sim.held_keys = "*#"
        sim.restart(crash_at=step if at_repl else None, crash_tag="slots:")
        with contextlib.suppress(SimulatorError):  # the switch is cut: mpremote loses the board
            sim.repl(switch_script("b"))
        if at_repl:
            assert sim.wait_exit() != REBOOT_EXIT
        else:  # switched: power up with the plug pulled at a step of the first boot of v2
            sim.stop()
            sim.held_keys = ""
            sim.crash_at = step - 3  # counted again from the new power-up
            with contextlib.suppress(SimulatorError):  # a cut before the board listens
                sim.start()
            sim.wait_exit()
        cut = re.findall(r"plug pulled at write point (\S+)", sim.console)
        assert cut, f"step {step}: no plug pulled"
        sim.held_keys = ""
        sim.crash_at = None
        sim.start()
        op.close()
        outcomes[cut[-1] + f"#{step}"] = settled(op, sim)
    assert len(outcomes) == 9, outcomes
    assert set(outcomes.values()) <= {("1.0.0", "a"), ("2.0.0", "b"), ("1.0.0", "a failed=b")}, \
        outcomes
    # cut before the switch's rename: v1 stays; after it: v2 tried; cut after the counted boot
    # and before confirmation: v2 given up
    assert ("1.0.0", "a") in outcomes.values() and ("2.0.0", "b") in outcomes.values()
    assert ("1.0.0", "a failed=b") in outcomes.values()
