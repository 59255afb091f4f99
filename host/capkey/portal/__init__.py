"""The demo web portal: the bank's "Accès à l'Espace Client Internet" on `capkey.rules.AuthService`
(login by CAP reader, confidential code or certificate; Espace Client; step-up for the sensitive
operations), and `capkey demo`'s orchestration (`capkey_dev.demo.run_demo`)."""

from .app import Portal, PortalConfig, create_app
from .operations import OPERATIONS

__all__ = ["OPERATIONS", "Portal", "PortalConfig", "create_app"]
