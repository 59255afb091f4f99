"""The developer commands the `capkey` command line gains when capkey-dev is installed (entry
point "capkey.commands"): `capkey sim`, `capkey demo`, `capkey deploy`."""

from __future__ import annotations

from .demo import COMMANDS as _DEMO
from .deploy import COMMANDS as _DEPLOY
from .sim import COMMANDS as _SIM

COMMANDS = [*_DEPLOY, *_SIM, *_DEMO]
