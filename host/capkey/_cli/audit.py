"""`capkey audit …`: check and read the hash-chained audit trail (rules.md R20)."""

from __future__ import annotations

import click

from .util import CliFail


def _store(db: str | None):
    from capkey.store import StoreError, open_store

    try:
        return open_store(db)
    except StoreError as exc:
        raise CliFail(f"base de données inutilisable : {exc}") from None
    except Exception as exc:
        raise CliFail(f"ouverture de la base impossible ({type(exc).__name__})") from None


@click.group()
@click.option("--db", envvar="CAPKEY_DB", default=None,
              help="SQLite file or postgresql:// DSN (env CAPKEY_DB; default capkey.db).")
@click.pass_context
def audit(ctx: click.Context, db: str | None) -> None:
    """The audit trail: verify the hash chains, list records."""
    ctx.obj = db


@audit.command()
@click.pass_obj
def verify(db: str | None) -> None:
    """Check every record's hash and link and the chain heads; exit 1 on any problem."""
    report = _store(db).verify_audit()
    for problem in report.problems:
        click.echo(f"ALTÉRATION : {problem}", err=True)
    if not report.ok:
        raise CliFail(f"journal d'audit altéré ({len(report.problems)} anomalie(s) sur "
                      f"{report.records} enregistrements)")
    click.echo(f"journal d'audit intègre : {report.records} enregistrements")


@audit.command("list")
@click.option("--subject", default=None, help="Only records about this subject (C1/U1).")
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def list_records(db: str | None, subject: str | None, limit: int) -> None:
    """Print the latest records (time, actor, subject, method, result, reason)."""
    from capkey.rules import from_us

    with _store(db).read() as tx:
        rows = tx.audit_rows()
    rows = [r for r in rows if subject is None or r[4] == subject]
    rows.sort(key=lambda r: (r[2], r[0], r[1]))
    for chain, seq, at, actor, subj, method, result, reason, _prev, _hash in rows[-limit:]:
        click.echo(f"{from_us(at):%Y-%m-%d %H:%M:%S.%f} {chain:2d}/{seq:<6d} {actor:<16} "
                   f"{subj:<14} {method:<14} {result:<20} {reason}")


COMMANDS = [audit]
