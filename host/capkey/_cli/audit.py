"""`capkey audit …`: check and read the hash-chained audit trail (rules.md R20)."""

from __future__ import annotations

import click

from .util import CliFail, open_db


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
    """Check every record's hash and link and the chain heads; exit 1 on any problem (2 if there
    is no database at --db: a typo must not read as an intact, empty trail)."""
    report = open_db(db, existing=True).verify_audit()
    for problem in report.problems:
        click.echo(f"ALTERED: {problem}", err=True)
    if not report.ok:
        raise CliFail(f"the audit trail was altered ({len(report.problems)} problem(s) in "
                      f"{report.records} records)")
    click.echo(f"audit trail intact: {report.records} records")


@audit.command("list")
@click.option("--subject", default=None, help="Only records about this subject (C1/U1).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many of the latest records.")
@click.pass_obj
def list_records(db: str | None, subject: str | None, limit: int) -> None:
    """Print the latest records (time, actor, subject, method, result, reason)."""
    from capkey.rules import from_us

    with open_db(db, existing=True).read() as tx:
        rows = tx.audit_rows()
    rows = [r for r in rows if subject is None or r[4] == subject]
    rows.sort(key=lambda r: (r[2], r[0], r[1]))
    for chain, seq, at, actor, subj, method, result, reason, _prev, _hash in rows[-limit:]:
        click.echo(f"{from_us(at):%Y-%m-%d %H:%M:%S.%f} {chain:2d}/{seq:<6d} {actor:<16} "
                   f"{subj:<14} {method:<14} {result:<20} {reason}")


COMMANDS = [audit]
