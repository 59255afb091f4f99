"""`capkey serve`: the authentication service over HTTP (uvicorn, several workers), and
`capkey api-key …`: the keys its callers present (docs/service.md)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from pathlib import Path

import click

from ..errors import Error
from .audit import AUDIT_KEY_HELP
from .util import EXIT_USAGE, CliFail, open_db

_DB_HELP = "sqlite:///file.db, a SQLite file, or a postgresql:// URL (env CAPKEY_DB)."


def _log_config(level: str) -> dict:
    """Everything as JSON lines on stderr; uvicorn's own access log off (ours names routes,
    never paths)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stderr"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": "capkey.server.observe.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {"capkey": {"level": level}, "uvicorn": {"level": "INFO"},
                    "uvicorn.error": {"level": "INFO"}},
    }


@click.command()
@click.option("--db", envvar="CAPKEY_DB", required=True, help=_DB_HELP)
@click.option("--origin", required=True,
              help="The bank's login page origin, e.g. https://banque.example (login payloads "
                   "carry it).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8600, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="uvicorn worker processes.")
@click.option("--imk-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Issuer key file (capkey card new-imk) for CAP codes.")
@click.option("--kek-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Key-encryption key that wraps the IMK.")
@click.option("--test-keys", is_flag=True, help="CAP codes under the published EMV test key "
                                                 "(tests, demos).")
@click.option("--ca", "ca_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="CA folder (capkey cert ca init) whose certificates and CRLs verify "
                   "certificate logins; its keys are not read.")
@click.option("--max-body", default=64 * 1024, show_default=True, type=click.IntRange(1024),
              help="Largest request body, bytes.")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1),
              help="Longest wait for an answer, seconds.")
@click.option("--group-commit/--no-group-commit", default=None,
              help="Commit concurrent decisions together (default: on for SQLite, off for "
                   "PostgreSQL; docs/rules.md, Durability).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def serve(db: str, origin: str, host: str, port: int, workers: int, imk_file: Path | None,
          kek_file: Path | None, test_keys: bool, ca_dir: Path | None, max_body: int,
          timeout: float, group_commit: bool | None, log_level: str) -> None:
    """Serve the authentication service over HTTP (OpenAPI at /openapi.json)."""
    import uvicorn

    from capkey.server.config import ENV, ServeConfig, TcpConfig

    if test_keys and imk_file is not None:
        raise click.UsageError("--test-keys and --imk-file exclude each other.")
    if (imk_file is None) != (kek_file is None):
        raise click.UsageError("--imk-file and --kek-file go together.")
    config = ServeConfig(db, origin, str(imk_file) if imk_file else None,
                         str(kek_file) if kek_file else None, test_keys,
                         str(ca_dir) if ca_dir else None, max_body, timeout, group_commit)
    store = open_db(db)  # migrated once, here, before the workers start
    try:
        config.service(store)  # every file is read up front: a bad one fails here, not per worker
    except (OSError, ValueError, Error) as exc:
        raise CliFail(f"{exc}", EXIT_USAGE) from None
    finally:
        store.close()
    os.environ[ENV] = config.to_json()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="capkey-metrics-")
    uv = TcpConfig("capkey.server.config:app_from_environment", factory=True, host=host,
                   port=port, workers=workers, access_log=False, server_header=False,
                   log_config=_log_config(log_level.upper()))
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        with contextlib.suppress(KeyboardInterrupt):
            Multiprocess(uv, sockets=[uv.bind_socket()]).run()
        return
    uv.load_app()
    server = uvicorn.Server(uv)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise CliFail(f"could not serve on {host}:{port} (see the log above)", EXIT_USAGE)


@click.group(name="api-key", epilog=AUDIT_KEY_HELP)
@click.option("--db", envvar="CAPKEY_DB", required=True, help=_DB_HELP)
@click.pass_context
def api_key(ctx: click.Context, db: str) -> None:
    """The API keys of `capkey serve`'s callers (stored as digests, with scopes)."""
    ctx.obj = db


@api_key.command("create")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["login", "stepup", "admin", "audit", "metrics"]),
              help="What the key may call (repeat).")
@click.option("--label", required=True, help="Who holds it, e.g. 'web backend, node 1'.")
@click.pass_obj
def create(db: str, scopes: tuple[str, ...], label: str) -> None:
    """Make a key; it is printed once (only its digest is kept)."""
    from capkey.server import ApiKeyError, create_key

    store = open_db(db)
    try:
        key, row = create_key(store, scopes, label)
    except ApiKeyError as exc:
        raise CliFail(str(exc), EXIT_USAGE) from None
    finally:
        store.close()
    click.echo(key)
    click.echo(f"key {row.id} ({row.scopes}): shown once, keep it in the caller's secret store",
               err=True)


@api_key.command("list")
@click.pass_obj
def list_keys(db: str) -> None:
    """The keys: id, scopes, label, created, revoked (never the secret)."""
    store = open_db(db, existing=True)
    try:
        with store.read() as tx:
            rows = tx.api_keys()
    finally:
        store.close()
    for row in rows:
        revoked = "" if row.revoked_at is None else f"  revoked {_when(row.revoked_at)}"
        click.echo(f"{row.id}  {row.scopes:<28} {row.label}  created {_when(row.created_at)}"
                   f"{revoked}")


@api_key.command("revoke")
@click.argument("key_id")
@click.pass_obj
def revoke(db: str, key_id: str) -> None:
    """Revoke a key (in effect within 5 seconds on every worker)."""
    from capkey.server import ApiKeyError, revoke_key

    store = open_db(db, existing=True)
    try:
        revoke_key(store, key_id)
    except ApiKeyError as exc:
        raise CliFail(str(exc)) from None
    finally:
        store.close()


def _when(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


COMMANDS = [serve, api_key]
