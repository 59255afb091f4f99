"""The local signing agent: the role the bank's "TURBO SIGN" middleware plays.

A small HTTP server on 127.0.0.1 that web pages of allow-listed origins call to list the
certificates of the plugged capkey and to ask it to sign a canonical payload. The agent never sees
a PIN (the person types it on the device) and never decides anything: it forwards the payload, the
device shows it and signs it only after the person confirms, and the bank verifies the signature.
See `capkey.agent.app` for the HTTP API and `capkey agent --device URL` to run it.
"""

from .app import AgentConfig, create_app

__all__ = ["AgentConfig", "create_app"]
