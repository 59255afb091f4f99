"""`capkey admin …`: the bank's back office over the rules store (subscriptions, users,
credentials, codes, unblock, revocation, user state). Every change is audited with `--actor`."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .audit import AUDIT_KEY_HELP
from .util import CliFail, open_db

if TYPE_CHECKING:
    from ..store import Store

_DB_HELP = "SQLite file or postgresql:// DSN (env CAPKEY_DB; default capkey.db)."


def _default_actor() -> str:
    try:
        return f"ops:{getpass.getuser()}"
    except Exception:
        return "ops"


class _Ctx:
    def __init__(self, db: str | None, actor: str):
        self.db = db
        self.actor = actor
        self._store: Store | None = None

    def directory(self, *, existing: bool = False):
        """`existing`: a read command, which must not create a database."""
        from capkey.rules import Directory

        if self._store is None:
            self._store = open_db(self.db, existing=existing)
        return Directory(self._store)


def _run(fn, *args, **kwargs):
    from capkey.rules import DirectoryError
    from capkey.rules.codes import WeakCode

    try:
        return fn(*args, **kwargs)
    except DirectoryError as exc:
        raise CliFail(str(exc)) from None
    except WeakCode as exc:
        raise CliFail(f"code refused by the policy ({exc.reason})") from None


@click.group(epilog=AUDIT_KEY_HELP)
@click.option("--db", envvar="CAPKEY_DB", default=None, help=_DB_HELP)
@click.option("--actor", default=_default_actor, show_default="ops:<login>",
              help="Operator name written to the audit trail.")
@click.pass_context
def admin(ctx: click.Context, db: str | None, actor: str) -> None:
    """Back office: subscriptions, users, credentials, unblock, revocation."""
    ctx.obj = _Ctx(db, actor)


@admin.command("create-subscription")
@click.argument("subscription")
@click.pass_obj
def create_subscription(obj: _Ctx, subscription: str) -> None:
    """Create a subscription (the portal's "Identifiant client")."""
    _run(obj.directory().create_subscription, subscription, actor=obj.actor)
    click.echo(f"subscription {subscription} created")


@admin.command("add-user")
@click.argument("subscription")
@click.argument("user_no")
@click.option("--role", type=click.Choice(["principal", "admin", "user"]), default="user",
              show_default=True)
@click.pass_obj
def add_user(obj: _Ctx, subscription: str, user_no: str, role: str) -> None:
    """Add a user (the portal's "Numéro Utilisateur") to a subscription."""
    _run(obj.directory().add_user, subscription, user_no, role, actor=obj.actor)
    click.echo(f"user {subscription}/{user_no} created ({role})")


@admin.command("set-code")
@click.argument("subscription")
@click.argument("user_no")
@click.pass_obj
def set_code(obj: _Ctx, subscription: str, user_no: str) -> None:
    """Give a user a new one-time confidential code (printed once; change forced at first login).
    Also clears failure counters and blocks."""
    code = _run(obj.directory().set_code, subscription, user_no, actor=obj.actor)
    click.echo(f"one-time confidential code for {subscription}/{user_no}: {code}")
    click.echo("It will not be shown again; only its Argon2id hash is kept.", err=True)


admin.add_command(set_code, "reset-code")


@admin.command("attach-card")
@click.argument("subscription")
@click.argument("user_no")
@click.argument("profile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label", default="", help="Label (default: the masked PAN).")
@click.pass_obj
def attach_card(obj: _Ctx, subscription: str, user_no: str, profile: Path, label: str) -> None:
    """Attach a CAP card: PROFILE is the card's verifier profile (JSON, key references only)."""
    try:
        data = json.loads(profile.read_text())
    except (OSError, ValueError) as exc:
        raise CliFail(f"unreadable profile: {exc}") from None
    card_id = _run(obj.directory().attach_card, subscription, user_no, data, actor=obj.actor,
                   label=label)
    click.echo(f"card {card_id} attached to {subscription}/{user_no}")


@admin.command("attach-cert")
@click.argument("subscription")
@click.argument("user_no")
@click.argument("certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def attach_cert(obj: _Ctx, subscription: str, user_no: str, certificate: Path) -> None:
    """Register a certificate (PEM or DER file) to a user."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    raw = certificate.read_bytes()
    try:
        cert = (x509.load_pem_x509_certificate(raw) if b"-----BEGIN" in raw
                else x509.load_der_x509_certificate(raw))
    except ValueError:
        raise CliFail("unreadable X.509 certificate (PEM or DER expected)") from None
    cert_id = _run(obj.directory().attach_certificate, subscription, user_no,
                   cert.public_bytes(Encoding.DER), actor=obj.actor)
    click.echo(f"certificate {cert_id} (serial number {cert.serial_number:x}) attached to "
               f"{subscription}/{user_no}")


@admin.command()
@click.argument("subscription")
@click.argument("user_no")
@click.pass_obj
def unblock(obj: _Ctx, subscription: str, user_no: str) -> None:
    """Lift a temporary or permanent block (bank back-office action, audited)."""
    changed = _run(obj.directory().unblock, subscription, user_no, actor=obj.actor)
    click.echo(f"{subscription}/{user_no} unblocked" if changed else
               f"{subscription}/{user_no} was not blocked")


@admin.command()
@click.argument("kind", type=click.Choice(["card", "certificate", "user", "subscription"]))
@click.argument("subscription")
@click.argument("user_no", required=False)
@click.option("--id", "credential_id", type=int, help="Card or certificate id (see `show`).")
@click.pass_obj
def revoke(obj: _Ctx, kind: str, subscription: str, user_no: str | None,
           credential_id: int | None) -> None:
    """Deactivate a card, certificate, user or subscription; voids its open challenges."""
    if kind in ("card", "certificate") and credential_id is None:
        raise click.UsageError(f"{kind} needs --id")
    if kind != "subscription" and user_no is None:
        raise click.UsageError(f"{kind} needs USER_NO")
    changed = _run(obj.directory().deactivate, kind, actor=obj.actor, subscription=subscription,
                   user_no=user_no, credential_id=credential_id)
    click.echo("deactivated" if changed else "already inactive")


admin.add_command(revoke, "deactivate")


def _fmt(dt) -> str:
    return "-" if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S UTC")


@admin.command()
@click.argument("subscription")
@click.argument("user_no", required=False)
@click.pass_obj
def show(obj: _Ctx, subscription: str, user_no: str | None) -> None:
    """Show a user's state (tries, blocks, last SCA, credentials), or every user's."""
    directory = obj.directory(existing=True)
    states = ([_run(directory.user_state, subscription, user_no)] if user_no
              else _run(directory.users, subscription))
    for st in states:
        block = ("permanent" if st.permanently_blocked else
                 f"until {_fmt(st.blocked_until)}" if st.blocked_until else "no")
        click.echo(f"{st.subscription}/{st.user_no}  role {st.role.value}  "
                   f"{'active' if st.active else 'INACTIVE'}")
        click.echo(f"  consecutive failures {st.failures}  blocked {block}  "
                   f"temporary blocks {st.temporary_blocks}")
        click.echo(f"  last strong authentication {_fmt(st.last_sca_at)}")
        click.echo(f"  confidential code {'yes' if st.has_code else 'no'}"
                   f"{' (to be changed)' if st.must_change else ''}")
        for cid, label, atc, active in st.cards:
            click.echo(f"  card {cid} {label}  last ATC {atc}  "
                       f"{'active' if active else 'revoked'}")
        for cid, serial, fingerprint, active in st.certificates:
            click.echo(f"  certificate {cid} serial {serial}  sha256 {fingerprint[:16]}…  "
                       f"{'active' if active else 'revoked'}")


COMMANDS = [admin]
