# Host link protocol v1: frame codec (frame.py), request server (server.py), system commands
# (system.py), status codes (codes.py). Spec: docs/protocol.md.

__version__ = "1.0.0"
PROTOCOL_VERSION = 1


class LinkError(Exception):
    """Raised by a link handler to answer with an error status (a code of link.codes) and an
    optional payload (for example the attempts remaining with ERR_PIN_INVALID)."""

    def __init__(self, code, payload=b""):
        super().__init__(code)
        self.code = code
        self.payload = payload
