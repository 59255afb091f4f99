"""Shared CLI helpers: the one place where failures become sentences and exit statuses, where
secrets are asked for, and where the database is opened."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from ..link.errors import LinkError, ProtocolError
from ..link.transport import Keepalive

# The exit statuses `capkey --help` and README.md document.
EXIT_REFUSED = 1  # refused, or a verification failed
EXIT_USAGE = 2  # as click's own usage errors
EXIT_DEVICE = 3  # device or link error
EXIT_UNEXPECTED = 4  # a bug: the traceback is shown with -v
EXIT_CANCELLED = 130  # Ctrl-C, or ANNULER on the device

# What the device answers when it (or the person at its keypad) turns a request down.
_REFUSALS = frozenset((
    ProtocolError.ERR.PIN_INVALID, ProtocolError.ERR.PIN_BLOCKED, ProtocolError.ERR.TIMEOUT,
    ProtocolError.ERR.NOT_PERSONALISED, ProtocolError.ERR.ALREADY_PERSONALISED,
    ProtocolError.ERR.WRONG_STATE, ProtocolError.ERR.INVALID_PARAMETER,
    ProtocolError.ERR.UNSUPPORTED,
))
_CANCELS = frozenset((ProtocolError.ERR.CANCELLED, ProtocolError.ERR.DENIED))


class CliFail(Exception):
    """An expected failure: printed as one line, exit status `status`."""

    def __init__(self, message: str, status: int = EXIT_REFUSED):
        super().__init__(message)
        self.status = status


def exit_status(exc: LinkError) -> int:
    """The exit status of a device link failure."""
    if isinstance(exc, ProtocolError):
        if exc.code in _CANCELS:
            return EXIT_CANCELLED
        if exc.code in _REFUSALS:
            return EXIT_REFUSED
    return EXIT_DEVICE


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def waiting_printer(waits_for: str) -> Callable[[int], None]:
    """An on_keepalive that says what the device waits for, once each time it starts waiting
    for the person (keepalives come every 500 ms)."""
    last: dict[str, int | None] = {"status": None}

    def on_keepalive(status: int) -> None:
        if status != last["status"]:
            last["status"] = status
            if status == Keepalive.WAITING_FOR_USER:
                echo_err(f"The device waits for you: {waits_for}…")

    return on_keepalive


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def read_secret_file(path: Path) -> str:
    """The first line of `path` (a secret given to a script instead of a prompt)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliFail(f"cannot read {path}: {exc}", EXIT_USAGE) from None
    if not lines or not lines[0]:
        raise CliFail(f"{path} is empty.", EXIT_USAGE)
    return lines[0]


def ask_secret(what: str, *, alternative: str, confirm: bool = False) -> str:
    """A secret typed, hidden, at the terminal. Without a terminal the command stops (getpass
    would read stdin in the clear after a GetPassWarning), naming `alternative`."""
    if not stdin_is_terminal():
        raise CliFail(f"the {what} is needed and there is no terminal to ask for it: "
                      f"{alternative}.", EXIT_USAGE)
    return click.prompt(what[0].upper() + what[1:], hide_input=True,
                        confirmation_prompt=f"Repeat the {what}" if confirm else False, err=True)


def open_db(db: str | None, *, existing: bool = False):
    """The store at `db` (a SQLite file or a postgresql:// DSN). `existing`: a missing SQLite file
    is refused instead of created (a typo must not read as an empty, intact database)."""
    from capkey.store import DEFAULT_PATH, AuditKeyError, StoreError, open_store

    target = db or DEFAULT_PATH
    if existing and not target.startswith(("postgresql://", "postgres://")) \
            and not Path(target.removeprefix("sqlite:///")).is_file():
        raise CliFail(f"no database at {target} (--db, or $CAPKEY_DB).", EXIT_USAGE)
    try:
        return open_store(target)
    except AuditKeyError as exc:
        raise CliFail(f"{exc}.", EXIT_USAGE) from None
    except StoreError as exc:
        raise CliFail(f"unusable database: {exc}") from None
    except Exception as exc:  # connection refused, bad path…
        raise CliFail(f"cannot open the database ({type(exc).__name__})") from None
