"""One list of status codes: firmware/link/codes.py, capkey.link.errors.LinkError.ERR and the table of
docs/protocol.md must agree name for name, number for number."""

from __future__ import annotations

import re

from link_fakes import ROOT

from capkey.link.errors import LinkError

NAMES = ["OK", "INVALID_FRAME", "CRC", "TOO_LONG", "UNKNOWN_COMMAND", "INVALID_PARAMETER",
         "VERSION", "BUSY", "CANCELLED", "TIMEOUT", "DENIED", "PIN_INVALID", "PIN_BLOCKED",
         "NOT_PERSONALISED", "ALREADY_PERSONALISED", "WRONG_STATE", "UNSUPPORTED", "INTERNAL"]


def _firmware() -> dict[str, int]:
    text = (ROOT / "firmware/link/codes.py").read_text()
    return {m[1]: int(m[2], 0) for m in re.finditer(r"^ERR_(\w+) = const\((0x[0-9A-Fa-f]+|\d+)\)",
                                                   text, re.M)}


def _doc() -> dict[str, int]:
    text = (ROOT / "docs/protocol.md").read_text()
    text = text[text.index("## Status codes") : text.index("## Command ranges")]
    return {m[2]: int(m[1], 16) for m in re.finditer(r"^\| (0x[0-9A-F]{2}) \| ([A-Z_]+) \|", text,
                                                     re.M)}


def test_the_required_names_exist_everywhere():
    host = {e.name: e.value for e in LinkError.ERR if e.name != "UNKNOWN"}
    assert sorted(host) == sorted(NAMES)
    assert _firmware() == host
    assert _doc() == host


def test_unknown_is_never_a_wire_code():
    assert LinkError.ERR.UNKNOWN.value not in _firmware().values()
    assert LinkError.ERR(0x42) is LinkError.ERR.UNKNOWN
