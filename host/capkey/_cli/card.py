"""`capkey card …`: the CAP card of a device (personalise, status, code, wipe, pcsc) and the
issuer's tools (new-imk, verify).

Issuer keys at rest are wrapped (rules.md R18): an IMK file is JSON {"label", "wrapped", "kcv"}
whose key is AES-key-wrapped under a key-encryption key read from --kek-file (32 bytes, raw or
hex). `--test-keys` uses the published EMV test IMK instead (tests and demos only).

A card file (JSON, written by `personalise --card-file`) is what the bank keeps per card for
`capkey card verify`: profile, PAN, PSN, IMK label, PIN try limit and the last accepted ATC.

The one prompt is the card's PIN in `personalise` (hidden, twice); `--pin-file` replaces it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import click

from ..emv import hazmat as emv
from ..emv.issuer import (
    TEST_IMK_LABEL,
    SoftwareIssuerBackend,
    generate_imk,
    load_imk_file,
    personalisation_data,
    read_kek_file,
    wrap_key,
)
from ..emv.profiles import PROFILES, profile_by_id
from ..emv.verifier import CapCard, InvalidCode, Mode, resync, verify_cap
from ..link.card import CapMode, CardClient, CardState
from ..link.errors import PinBlocked, ProtocolError
from ..link.transport import mask_pan
from .device import device_option, open_device
from .util import EXIT_DEVICE, EXIT_USAGE, CliFail, ask_secret, read_secret_file, waiting_printer

_MODES = {"identify": CapMode.IDENTIFY, "respond": CapMode.RESPOND, "sign": CapMode.SIGN, "tds": CapMode.TDS}
_VERIFY_MODES = {"identify": Mode.IDENTIFY, "respond": Mode.RESPOND, "sign": Mode.SIGN, "tds": Mode.SIGN_TDS}
_STATES = {CardState.FACTORY: "blank (factory)", CardState.PERSONALISED: "personalised",
           CardState.ERROR: "unreadable (wipe it)"}


def _read_kek(path: Path) -> bytes:
    try:
        return read_kek_file(path)
    except (OSError, ValueError) as exc:
        raise CliFail(f"{exc}.") from exc


def _backend(imk_file: Path | None, kek_file: Path | None, test_keys: bool) -> tuple[SoftwareIssuerBackend, str]:
    if test_keys:
        if imk_file is not None:
            raise click.UsageError("--test-keys and --imk-file exclude each other.")
        return SoftwareIssuerBackend.for_tests(), TEST_IMK_LABEL
    if imk_file is None or kek_file is None:
        raise click.UsageError("give --imk-file and --kek-file (or --test-keys for the public test key).")
    try:
        return load_imk_file(imk_file, kek_file)
    except (OSError, ValueError) as exc:
        raise CliFail(f"{exc}.") from exc


def _keys_options(f):
    f = click.option("--test-keys", is_flag=True, help="Use the published EMV test IMK (tests, demos).")(f)
    f = click.option("--kek-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Key-encryption key (32 bytes raw or hex) that wraps the IMK.")(f)
    f = click.option("--imk-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Issuer master key file (JSON, wrapped; see `capkey card new-imk`).")(f)
    return f


_SENTENCES = {
    ProtocolError.ERR.ALREADY_PERSONALISED: "the card is already personalised: wipe it first "
    "(`capkey card wipe`, confirmed on the device).",
    ProtocolError.ERR.NOT_PERSONALISED: "the card is not personalised.",
    ProtocolError.ERR.WRONG_STATE: "the card is unreadable: wipe it first.",
}


def _protocol_fail(exc: ProtocolError) -> str | None:
    if isinstance(exc, PinBlocked):
        return "the PIN is blocked: the bank must reset the card."
    return _SENTENCES.get(exc.code)


@click.group("card")
def card() -> None:
    """CAP card: personalisation, codes, verification, PC/SC."""


@card.command("new-imk")
@click.option("--kek-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Key-encryption key (32 bytes raw or hex) that wraps the IMK.")
@click.option("--label", default="imk-1", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The IMK file to write (JSON, wrapped).")
def new_imk(kek_file: Path, label: str, out: Path) -> None:
    """Create a random issuer master key, stored wrapped under the KEK."""
    if out.exists():
        raise CliFail(f"{out} already exists.")
    imk = generate_imk()
    doc = {"label": label, "wrapped": wrap_key(_read_kek(kek_file), imk).hex(), "kcv": emv.kcv(imk).hex().upper()}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    os.chmod(out, 0o600)
    click.echo(f"IMK {label} created, KCV {doc['kcv']}.")


@card.command("personalise")
@device_option
@click.option("--profile", required=True, type=click.Choice(sorted(PROFILES)))
@click.option("--pan", required=True, help="Card number, 12-19 digits.")
@click.option("--psn", required=True, type=click.IntRange(0, 99), help="PAN sequence number.")
@click.option("--pin-tries", default=3, show_default=True, type=click.IntRange(1, 15))
@click.option("--initial-atc", default=0, show_default=True, type=click.IntRange(0, 0xFF00))
@click.option("--card-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the bank's card record here (for `capkey card verify`).")
@click.option("--pin-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File whose first line is the card's PIN, instead of the prompt (for scripts).")
@_keys_options
def personalise(url, profile, pan, psn, pin_tries, initial_atc, card_file, pin_file, imk_file, kek_file,
                test_keys) -> None:
    """Derive the card key from the IMK and load card data and PIN into a factory-state device.

    Asks for the card's PIN (hidden, twice) unless --pin-file gives it; without a terminal and
    without --pin-file it stops (exit 2)."""
    backend, label = _backend(imk_file, kek_file, test_keys)
    prof = PROFILES[profile]
    try:
        CapCard(prof, pan, psn, label, initial_atc, pin_tries)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    pin = (read_secret_file(pin_file) if pin_file is not None
           else ask_secret("card's PIN", alternative="give it with --pin-file", confirm=True))
    try:
        data = personalisation_data(backend, profile=prof, imk_label=label, pan=pan, psn=psn, pin=pin,
                                    pin_try_limit=pin_tries, initial_atc=initial_atc)
    except ValueError as exc:
        raise CliFail(f"unusable PIN: {exc}.", EXIT_USAGE) from exc
    finally:
        del pin
    try:
        with open_device(url, _protocol_fail) as dev:
            CardClient(dev).personalise(data)
    finally:
        data[:] = bytes(len(data))
    if card_file is not None:
        record = {"profile": profile, "pan": pan, "psn": psn, "imk_label": label, "pin_try_limit": pin_tries,
                  "last_atc": initial_atc}
        card_file.write_text(json.dumps(record, indent=1) + "\n")
        os.chmod(card_file, 0o600)
    click.echo(f"Card personalised ({profile}, PAN {mask_pan(pan)}, PSN {psn:02d}).")


@card.command("status")
@device_option
def status(url) -> None:
    """State of the device's CAP card."""
    with open_device(url, _protocol_fail) as dev:
        s = CardClient(dev).status()
    click.echo(f"Card          : {_STATES[s.state]}")
    if s.state is CardState.PERSONALISED:
        name = next((p.name for p in PROFILES.values() if p.profile_id == s.profile_id), f"profile {s.profile_id}")
        click.echo(f"Profile       : {name}")
        click.echo(f"PAN           : {s.masked_pan} (PSN {s.psn:02d})")
        click.echo(f"PIN tries     : {s.tries}/{s.try_limit}")
        click.echo(f"ATC           : {s.atc}")
    click.echo(f"PC/SC reader  : {'on' if s.pcsc else 'off'}")


@card.command("wipe")
@device_option
def wipe(url) -> None:
    """Erase the card (the person confirms on the device's keypad: OK, or ANNULER)."""
    with open_device(url, _protocol_fail) as dev:
        CardClient(dev).wipe(on_keepalive=waiting_printer("OK on its keypad to erase the card"))
    click.echo("Card erased.")


@card.command("code")
@device_option
@click.option("--mode", required=True, type=click.Choice(list(_MODES)))
@click.option("--challenge", help="Challenge digits (respond, sign).")
@click.option("--amount", type=click.IntRange(1, 999_999_999_999), help="Amount in minor units (sign).")
@click.option("--currency", help="ISO 4217 code shown on the device (sign).")
@click.option("--field", "fields", multiple=True, help="A TDS field (tds; repeat, up to 10).")
def code(url, mode, challenge, amount, currency, fields) -> None:
    """Connected mode: ask the device for a code; the person confirms and types the PIN on its
    keypad (nothing is asked here)."""
    cancel = threading.Event()
    with open_device(url, _protocol_fail) as dev:
        try:
            result = CardClient(dev).get_code(
                _MODES[mode], challenge=challenge, amount=amount, currency=currency,
                fields=list(fields) if fields else None, cancel=cancel,
                on_keepalive=waiting_printer("OK, then the card's PIN, on its keypad"),
            )
        except ValueError as exc:  # caught here, or open_device would call it an unreadable answer
            raise click.UsageError(str(exc)) from exc
    click.echo(result)


@card.command("verify")
@click.option("--card-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mode", required=True, type=click.Choice(list(_VERIFY_MODES)))
@click.option("--challenge")
@click.option("--amount", type=int, help="Amount in minor units (sign).")
@click.option("--field", "fields", multiple=True, help="TDS field (tds).")
@click.option("--resync", "second", metavar="CODE2",
              help="Resynchronise with CODE and the next Identify code CODE2.")
@_keys_options
@click.argument("code")
def verify(card_file, mode, challenge, amount, fields, second, imk_file, kek_file, test_keys, code) -> None:
    """Check CODE against the card record; on success the record's ATC floor moves up."""
    backend, label = _backend(imk_file, kek_file, test_keys)
    try:
        rec = json.loads(card_file.read_text())
        c = CapCard(PROFILES[rec["profile"]] if rec["profile"] in PROFILES else profile_by_id(rec["profile"]),
                    rec["pan"], int(rec["psn"]), rec["imk_label"], int(rec["last_atc"]),
                    int(rec.get("pin_try_limit", 3)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliFail(f"{card_file}: unreadable card record ({exc}).") from exc
    if c.imk_label != label:
        raise CliFail(f"the card depends on the issuer key '{c.imk_label}', not '{label}'.")
    try:
        if second is not None:
            if mode != "identify":
                raise click.UsageError("--resync takes two Identify codes (--mode identify).")
            atc = resync(c, code, second, key_backend=backend)
        else:
            atc = verify_cap(c, code, mode=_VERIFY_MODES[mode], challenge=challenge, amount=amount,
                             tds=list(fields) if fields else None, key_backend=backend)
    except InvalidCode:
        raise CliFail("code refused.") from None
    rec["last_atc"] = atc
    tmp = card_file.with_suffix(card_file.suffix + ".new")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    os.replace(tmp, card_file)
    click.echo(f"Code accepted (ATC {atc}).")


@card.command("pcsc")
@device_option
@click.option("--soft-card", type=click.Path(file_okay=False, path_type=Path),
              help="Serve the firmware soft card of this store folder (MicroPython) instead of a device.")
@click.option("--port", default=35963, show_default=True, help="vpcd port of pcscd.")
def pcsc(url, soft_card, port) -> None:
    """Expose the card to PC/SC through pcscd's virtual reader (vpcd) until Ctrl-C."""
    from ..link.pcsc import LinkCard, SoftCardProcess, VpcdClient

    def serve(endpoint) -> None:
        client = VpcdClient(endpoint, port=port)
        try:
            client.connect(timeout=5)
        except OSError as exc:
            raise CliFail(f"pcscd does not answer on vpcd port {port} (are pcscd and vsmartcard-vpcd "
                          f"installed and running?): {exc}", EXIT_DEVICE) from exc
        click.echo("The card is on PC/SC ('Virtual PCD'). Ctrl-C stops.", err=True)
        try:
            client.serve()
        except KeyboardInterrupt:
            client.stop()

    if soft_card is not None:
        endpoint = SoftCardProcess(soft_card)
        try:
            serve(endpoint)
        finally:
            endpoint.close()
        return
    with open_device(url, _protocol_fail) as dev:
        client = CardClient(dev)
        try:
            client.card_reset()
        except ProtocolError as exc:
            if exc.code == ProtocolError.ERR.DENIED:
                raise CliFail("switch on 'Lecteur PC/SC' in the device's MENU first.") from exc
            raise
        serve(LinkCard(client))


COMMANDS = [card]
