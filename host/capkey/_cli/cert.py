"""`capkey cert …` (the certificate key and the bank CA) and `capkey agent` (the local signing
agent).

    capkey cert ca init --ca DIR --name "Banque Exemple"      make the root and issuing CA
    capkey cert ca show|crl --ca DIR                          show the CA; publish fresh CRLs
    capkey cert provision --device URL --ca DIR               factory: record the attestation key
    capkey cert enrol --device URL --ca DIR --slot N --subscription ID --user NO
    capkey cert list --device URL                             slots, certificates, PIN/PUK tries
    capkey cert issued --ca DIR                               what the CA issued
    capkey cert revoke --ca DIR SERIAL|FINGERPRINT            revoke and publish CRLs
    capkey cert delete --device URL --slot N                  erase a slot (confirmed on device)
    capkey agent --device URL --origin https://banque.example the local signing agent

The CA folder comes from --ca or $CAPKEY_CA; its password from $CAPKEY_CA_PASSWORD or a prompt
(hidden, on stderr; none without a terminal). The PIN is never asked here: the person types it on
the device.

Key slots are numbered 1-4 here, as the device shows them ("Emplacement 1"); the link protocol
and the Python API (`KeyClient`, the CA's records, the agent's JSON) number them 0-3.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ..cert.attestation import SLOTS
from ..cert.ca import DEFAULT_POLICY_OID, CaError, CertificateAuthority, RevocationReason
from ..link.errors import PinBlocked, ProtocolError
from ..link.key import KeyClient, KeyState, enrol
from .device import device_option, open_device
from .util import EXIT_USAGE, CliFail, ask_secret, echo_err, waiting_printer

_PASSWORD_ENV = "CAPKEY_CA_PASSWORD"
_ON_KEYPAD = "follow its screen (OK, then the PIN, on its keypad)"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _slot_option(f):
    """--slot N, 1-4 as a person counts (the device's "Emplacement N"), passed on as `slot`,
    the protocol's 0-3."""
    return click.option(
        "--slot",
        type=click.IntRange(SLOTS.start + 1, SLOTS.stop),
        required=True,
        callback=lambda ctx, param, value: value - 1,
        help=f"Key slot {SLOTS.start + 1}-{SLOTS.stop}, as the device numbers them "
        '("Emplacement 1" is slot 1).',
    )(f)


def _shown(slot: int) -> int:
    """A protocol slot (0-3) as people number it (1-4)."""
    return slot + 1


def _ca_option(f):
    return click.option(
        "--ca",
        "ca_dir",
        envvar="CAPKEY_CA",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help=f"Folder of the bank CA (or $CAPKEY_CA). The CA password is asked for (hidden) "
        f"unless ${_PASSWORD_ENV} gives it, as it must for a script (no prompt without a "
        "terminal).",
    )(f)


def _password(confirm: bool = False) -> bytes:
    value = os.environ.get(_PASSWORD_ENV)
    if value is None:
        value = ask_secret("CA password", alternative=f"set ${_PASSWORD_ENV}", confirm=confirm)
    if not value:
        raise CliFail("empty password: use --no-encryption for keys in the clear.", EXIT_USAGE)
    return value.encode()


def _load_ca(ca_dir: Path) -> CertificateAuthority:
    if not (ca_dir / "ca.json").exists():
        raise CliFail(f"no CA in {ca_dir} (make one with `capkey cert ca init`).")
    clear = b"ENCRYPTED" not in (ca_dir / "issuing.key.pem").read_bytes()[:40]
    try:
        return CertificateAuthority.load(ca_dir, password=None if clear else _password())
    except CaError as exc:
        raise CliFail(f"unreadable CA: {exc}") from exc


def _device_failure(exc: ProtocolError) -> str | None:
    if isinstance(exc, PinBlocked):
        return "the PIN is blocked: unblock it with the PUK on the device."
    return None


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


@click.group("cert")
def cert() -> None:
    """Certificate key: bank CA, provisioning, enrolment, revocation."""


@cert.group("ca")
def ca_group() -> None:
    """The bank CA (root and issuing CA, CRLs)."""


@ca_group.command("init")
@_ca_option
@click.option("--name", required=True, help="Organisation name in the CA certificates.")
@click.option(
    "--policy-oid",
    default=DEFAULT_POLICY_OID.dotted_string,
    show_default=True,
    help="Certificate policy OID put in every certificate.",
)
@click.option(
    "--no-encryption", is_flag=True, help="Store the CA keys in clear (tests and demos only)."
)
def ca_init(ca_dir: Path, name: str, policy_oid: str, no_encryption: bool) -> None:
    """Make the root and issuing CA in an empty folder.

    Asks for the new CA password (hidden, twice) unless $CAPKEY_CA_PASSWORD gives it or
    --no-encryption is set; without a terminal and without either, stops (exit 2)."""
    try:
        oid = x509.ObjectIdentifier(policy_oid)
    except ValueError:
        raise click.BadParameter("not a dotted OID", param_hint="--policy-oid") from None
    encryption = (
        serialization.NoEncryption()
        if no_encryption
        else serialization.BestAvailableEncryption(_password(confirm=True))
    )
    try:
        ca = CertificateAuthority.create(
            ca_dir, name=name, encryption=encryption, now=_now(), policy_oid=oid
        )
    except CaError as exc:
        raise CliFail(str(exc)) from exc
    click.echo(f"CA made in {ca_dir}")
    click.echo(f"Root    : {_fingerprint(ca.root_certificate)}")
    click.echo(f"Issuing : {_fingerprint(ca.issuing_certificate)}")


@ca_group.command("show")
@_ca_option
def ca_show(ca_dir: Path) -> None:
    """Show the CA certificates, policy and counts."""
    ca = _load_ca(ca_dir)
    for label, c in (("Root", ca.root_certificate), ("Issuing", ca.issuing_certificate)):
        click.echo(f"{label:9}: {c.subject.rfc4514_string()}")
        click.echo(f"{'':9}  SHA-256 {_fingerprint(c)}  until {c.not_valid_after_utc:%Y-%m-%d}")
    click.echo(f"Policy   : {ca.policy_oid.dotted_string}")
    issued = ca.issued()
    revoked = sum(1 for r in issued if r.revoked_at)
    click.echo(f"Devices  : {len(ca.devices())}  certificates: {len(issued)} (revoked {revoked})")


@ca_group.command("crl")
@_ca_option
def ca_crl(ca_dir: Path) -> None:
    """Publish fresh CRLs (root.crl.pem, issuing.crl.pem)."""
    ca = _load_ca(ca_dir)
    _, issuing = ca.publish_crls(now=_now())
    click.echo(f"CRLs published, valid until {issuing.next_update_utc:%Y-%m-%d %H:%M} UTC")


@cert.command("provision")
@device_option
@_ca_option
def provision(url: str | None, ca_dir: Path) -> None:
    """Factory step: record the device's attestation public key in the CA's registry."""
    ca = _load_ca(ca_dir)
    with open_device(url, _device_failure) as dev:
        serial = dev.info().serial
        point = KeyClient(dev).attestation_key()
    try:
        ca.provision_device(serial, point, now=_now())
    except CaError as exc:
        raise CliFail(str(exc)) from exc
    click.echo(f"Device {serial} recorded (attestation key {point.hex()[:16]}…).")


@cert.command("enrol")
@device_option
@_ca_option
@_slot_option
@click.option("--subscription", required=True, help="The subscription (the portal's \"Identifiant client\").")
@click.option("--user", required=True, help="The user's number (the portal's \"Numéro Utilisateur\").")
def enrol_cmd(url: str | None, ca_dir: Path, slot: int, subscription: str, user: str) -> None:
    """Make a key on the device, certify it after checking its attestation, load the
    certificate into the slot.

    The person confirms on the device and types the PIN on its keypad (on first use, chooses
    the PIN and the PUK there)."""
    ca = _load_ca(ca_dir)
    with open_device(url, _device_failure) as dev:
        try:
            certificate = enrol(
                KeyClient(dev),
                ca,
                slot=slot,
                subscription=subscription,
                user=user,
                now=_now(),
                on_keepalive=waiting_printer(_ON_KEYPAD),
            )
        except CaError as exc:
            raise CliFail(f"certificate refused by the CA: {exc}") from exc
    click.echo(
        f"Certificate loaded into slot {_shown(slot)}: {certificate.subject.rfc4514_string()}"
    )
    click.echo(f"Serial number {certificate.serial_number:x}")
    click.echo(f"SHA-256 {_fingerprint(certificate)}")


@cert.command("list")
@device_option
def list_cmd(url: str | None) -> None:
    """The device's key slots and certificates, and the PIN/PUK tries left."""
    with open_device(url, _device_failure) as dev:
        key = KeyClient(dev)
        status = key.status()
        certs = key.certificates()
    if status.state is KeyState.FACTORY:
        click.echo("No PIN chosen yet (the first enrolment asks for it on the device).")
    else:
        click.echo(
            f"PIN tries left: {status.pin_left} (before unplugging: {status.pin_now})   "
            f"PUK tries left: {status.puk_left}"
        )
    for info in status.slots:
        n = _shown(info.slot)
        if not info.has_key:
            click.echo(f"[{n}] empty")
        elif info.slot not in certs:
            click.echo(f"[{n}] key without a certificate (enrolment not finished)")
        else:
            c = certs[info.slot]
            click.echo(f"[{n}] {c.subject.rfc4514_string()}")
            click.echo(f"    serial {c.serial_number:x}  until {c.not_valid_after_utc:%Y-%m-%d}")
            click.echo(f"    SHA-256 {_fingerprint(c)}")


@cert.command("issued")
@_ca_option
def issued_cmd(ca_dir: Path) -> None:
    """Certificates the CA issued."""
    ca = _load_ca(ca_dir)
    for r in ca.issued():
        state = f"revoked on {r.revoked_at[:10]} ({r.reason})" if r.revoked_at else "valid"
        click.echo(
            f"{r.serial_number}  {r.subscription}/{r.user}  device {r.device_serial}"
            f" slot {_shown(r.slot)}  until {r.not_after[:10]}  {state}"
        )


@cert.command("revoke")
@_ca_option
@click.argument("ref")
@click.option(
    "--reason",
    type=click.Choice([r.name for r in RevocationReason]),
    default="unspecified",
    show_default=True,
)
def revoke(ca_dir: Path, ref: str, reason: str) -> None:
    """Revoke a certificate (serial number or SHA-256 fingerprint, hex) and publish CRLs."""
    ca = _load_ca(ca_dir)
    try:
        ca.revoke(ref, now=_now(), reason=RevocationReason[reason])
    except CaError as exc:
        raise CliFail(str(exc)) from exc
    click.echo("Certificate revoked; CRLs published.")


@cert.command("delete")
@device_option
@_slot_option
def delete(url: str | None, slot: int) -> None:
    """Erase a slot's key and certificate (the person confirms and types the PIN on the
    device)."""
    with open_device(url, _device_failure) as dev:
        KeyClient(dev).delete(slot, on_keepalive=waiting_printer(_ON_KEYPAD))
    click.echo(f"Slot {_shown(slot)} erased.")


@click.command("agent")
@device_option
@click.option(
    "--origin",
    "origins",
    multiple=True,
    required=True,
    help="Web origin allowed to use the agent (repeatable), e.g. https://banque.example",
)
@click.option("--port", type=click.IntRange(1024, 65535), default=8731, show_default=True)
def agent(url: str | None, origins: tuple[str, ...], port: int) -> None:
    """Run the local signing agent on 127.0.0.1 (the role of TURBO SIGN) until Ctrl-C."""
    import uvicorn

    from ..agent.app import AgentConfig, create_app, device_opener, parse_origins
    from .device import resolve_device

    try:
        allowed = parse_origins(origins)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--origin") from None
    config = AgentConfig(allowed_origins=allowed, port=port, open_key=device_opener(resolve_device(url)))
    echo_err(f"Signing agent on http://127.0.0.1:{port} for {', '.join(sorted(allowed))}")
    uvicorn.run(create_app(config), host="127.0.0.1", port=port, log_level="warning")


COMMANDS = [cert, agent]
