# Status and error codes of link protocol v1 (docs/protocol.md, "Status codes").
# The host mirrors them in host/capkey/link/errors.py (LinkError.ERR); host/tests/test_link_codes.py keeps
# the two lists and the table of docs/protocol.md identical.
#
# Apps import what they raise:  from link.codes import ERR_DENIED
from micropython import const

ERR_OK = const(0x00)
ERR_INVALID_FRAME = const(0x01)  # well-formed frame that makes no sense here (kind, truncation)
ERR_CRC = const(0x02)  # frame CRC-16 mismatch
ERR_TOO_LONG = const(0x03)  # LEN over MAX_PAYLOAD
ERR_UNKNOWN_COMMAND = const(0x04)
ERR_INVALID_PARAMETER = const(0x05)  # payload malformed for this command
ERR_VERSION = const(0x06)  # HELLO: no common protocol version
ERR_BUSY = const(0x07)  # too many requests in flight, or RID already in flight
ERR_CANCELLED = const(0x08)  # the request was cancelled by a CANCEL frame
ERR_TIMEOUT = const(0x09)  # the person did not answer in time
ERR_DENIED = const(0x0A)  # the person pressed ANNULER or refused
ERR_PIN_INVALID = const(0x0B)  # payload: 1 byte, attempts remaining
ERR_PIN_BLOCKED = const(0x0C)
ERR_NOT_PERSONALISED = const(0x0D)
ERR_ALREADY_PERSONALISED = const(0x0E)
ERR_WRONG_STATE = const(0x0F)
ERR_UNSUPPORTED = const(0x10)  # command known but not available on this board
ERR_INTERNAL = const(0x7F)  # unexpected exception in a handler

# KEEPALIVE statuses
KA_PROCESSING = const(1)
KA_WAITING_FOR_USER = const(2)
