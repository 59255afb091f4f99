"""Shared CLI helpers: the one place where failures become sentences for people."""

from __future__ import annotations

import click


class CliFail(Exception):
    """An expected failure: printed as one line, exit status `status`."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def echo_err(message: str) -> None:
    click.echo(message, err=True)
