"""The catalogues are declared once (capkey.catalog, capkey.emv.profiles) and every tier reads
them: the rules, the payloads, the portal, discovery, the simulator and the firmware's generated
copy."""

from __future__ import annotations

import pytest
from capkey_dev import catalog as firmware_catalog
from capkey_dev.build import BOARD_ARCH
from capkey_dev.sim import PROFILES as SIM_HEAP

from capkey.catalog import boards, operations
from capkey.catalog.operations import SENSITIVE, OperationKind
from capkey.cert import payload
from capkey.link.device import USB_IDS
from capkey.rules.model import DEFAULT_SENSITIVE, PAYMENT_OPERATIONS, Operation


def test_firmware_copy_is_current():
    assert firmware_catalog.main(["--check"]) == 0, "run `make catalog`"


def test_every_tier_reads_the_operations_catalogue():
    names = [k.name for k in SENSITIVE]
    assert DEFAULT_SENSITIVE == frozenset(names) and len(names) == 5
    assert set(Operation.__members__) == {*names, "CHANGE_CODE"}
    assert PAYMENT_OPERATIONS == {"SCT_INST_ENTRY": "PAYMENT", "SIGN_ORDER_BATCH": "BATCH"}
    assert {p.name: p.value for p in payload.Purpose} == {
        k.name: k.purpose for k in SENSITIVE if k.purpose is not None}
    # the guide's words, on the portal and on the device alike
    assert operations.by_name("ORDER_CHEQUEBOOK").title == "Commande de chéquiers"
    assert operations.by_slug("remises").name == "SIGN_ORDER_BATCH"


def test_operation_kinds_refuse_a_purpose_without_the_operation_binding():
    with pytest.raises(ValueError):
        OperationKind("X", "x", "X", "PAYMENT", 4)
    with pytest.raises(ValueError):
        OperationKind("X", "x", "X", "OPERATION")


def test_every_tier_reads_the_board_catalogue():
    assert set(BOARD_ARCH) == set(SIM_HEAP) == set(boards.BOARDS)
    assert SIM_HEAP[boards.DEFAULT_PROFILE] == 190 * 1024
    assert USB_IDS[(0x2E8A, 0x0005)].startswith("Raspberry Pi Pico")
    with pytest.raises(ValueError, match="one of rpi_pico"):
        boards.board("pico")
