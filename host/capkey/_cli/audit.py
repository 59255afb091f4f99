"""`capkey audit …`: check and read the keyed audit trail, export signed checkpoints of its chain
heads, create the audit key (rules.md R20)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .util import EXIT_USAGE, CliFail, open_db

# Shown by `capkey audit --help` and `capkey admin --help`: both open the store with this key.
AUDIT_KEY_HELP = """\b
The audit key (links the trail; never stored in the database):
  $CAPKEY_AUDIT_KEY_FILE  the wrapped key file (`capkey audit new-key`)
  $CAPKEY_AUDIT_KEK_FILE  the key-encryption key that unwraps it
                          (16, 24 or 32 bytes, raw or hex)
  $CAPKEY_AUDIT_TEST_KEY=1 the published test key instead: development only,
                          anyone who can write the database can then
                          rewrite the trail unseen
Without any of them the database is not opened (exit status 2)."""


@click.group(epilog=AUDIT_KEY_HELP)
@click.option("--db", envvar="CAPKEY_DB", default=None,
              help="SQLite file or postgresql:// DSN (env CAPKEY_DB; default capkey.db).")
@click.pass_context
def audit(ctx: click.Context, db: str | None) -> None:
    """The audit trail: verify its keyed chains against checkpoints, export checkpoints of its
    heads, list records."""
    ctx.obj = db


def _key_name(store) -> str:
    from capkey.store import is_test_key

    return ("the published TEST key (not protected)" if is_test_key(store.audit_key)
            else f"audit key {store.audit_key.key_id}")


def _fail_on(report, consequence: str) -> None:
    for problem in report.problems:
        click.echo(f"ALTERED: {problem}", err=True)
    if not report.ok:
        raise CliFail(f"the audit trail does not verify ({len(report.problems)} problem(s) in "
                      f"{report.records} records){consequence}")


def _read_checkpoint(path: Path):
    from capkey.store import Checkpoint

    try:
        return Checkpoint.from_json(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CliFail(f"{path}: {exc}", EXIT_USAGE) from None


@audit.command()
@click.option("--checkpoint", "checkpoints", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A checkpoint written by `export-head` that the trail must still extend "
                   "(repeatable).")
@click.pass_obj
def verify(db: str | None, checkpoints: tuple[Path, ...]) -> None:
    """Check every record's link under the audit key and the chain heads, and that the trail
    still extends every --checkpoint (which catches its last records removed). Exit 1 on any
    problem, one line each; 2 if there is no database at --db (a typo must not read as an intact,
    empty trail) or a --checkpoint file is not a checkpoint."""
    wanted = [_read_checkpoint(path) for path in checkpoints]
    store = open_db(db, existing=True)
    report = store.verify_audit(wanted)
    _fail_on(report, "")
    unkeyed = (f", {report.unkeyed} of them unkeyed (before the keyed chain)" if report.unkeyed
               else "")
    extends = f"; extends {len(wanted)} checkpoint(s)" if wanted else ""
    click.echo(f"audit trail intact: {report.records} records{unkeyed}, keyed under "
               f"{_key_name(store)}{extends}")


@audit.command("export-head")
@click.argument("out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.pass_obj
def export_head(db: str | None, out: Path) -> None:
    """Write a checkpoint to OUT ('-': standard output), for write-once storage (an object-lock
    bucket, WORM media, the day's signed log): the trail id, every chain's last sequence number
    and link, the record count and the time, MACed with the audit key. `verify --checkpoint OUT`
    later fails if the trail no longer extends it. The trail is verified first: nothing is
    written if it does not verify (exit 1). OUT is never overwritten."""
    if str(out) != "-" and out.exists():
        raise CliFail(f"{out} already exists: a checkpoint is never overwritten.", EXIT_USAGE)
    store = open_db(db, existing=True)
    report, checkpoint = store.export_audit_head()
    _fail_on(report, ": no checkpoint written")
    if str(out) == "-":
        click.echo(checkpoint.to_json(), nl=False)
        return
    try:
        with open(out, "x") as f:
            f.write(checkpoint.to_json())
        os.chmod(out, 0o444)
    except OSError as exc:
        raise CliFail(f"cannot write {out}: {exc.strerror}.", EXIT_USAGE) from None
    click.echo(f"checkpoint of {report.records} records written to {out}, MACed with "
               f"{_key_name(store)}")


@audit.command("new-key")
@click.option("--kek-file", required=True, envvar="CAPKEY_AUDIT_KEK_FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Key-encryption key (16, 24 or 32 bytes, raw or hex) that wraps the audit key "
                   "(env CAPKEY_AUDIT_KEK_FILE).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The audit key file to write (JSON, wrapped): $CAPKEY_AUDIT_KEY_FILE.")
def new_key(kek_file: Path, out: Path) -> None:
    """Create a random audit key, stored wrapped under the KEK. Create it before the database is
    first opened (or migrated to the keyed chain): a trail stays keyed under the key it was
    started with."""
    from capkey.store import AuditKeyError, SoftwareAuditKey, read_kek

    key = SoftwareAuditKey.generate()
    try:
        text = key.key_file(read_kek(kek_file))
        with open(out, "x") as f:
            f.write(text)
        os.chmod(out, 0o600)
    except AuditKeyError as exc:
        raise CliFail(str(exc), EXIT_USAGE) from None
    except FileExistsError:
        raise CliFail(f"{out} already exists.", EXIT_USAGE) from None
    except OSError as exc:
        raise CliFail(f"cannot write {out}: {exc.strerror}.", EXIT_USAGE) from None
    click.echo(f"audit key {key.key_id} created in {out}.")


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
