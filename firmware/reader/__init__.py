# The CAP reader's modes and input limits (reader/cap.py), here so that what asks for a code
# (commands/cap.py, flows/cap.py, the GET_CODE mode byte of docs/protocol.md) knows them without
# the reader's 9 KB loaded: commands/cap.py loads reader/cap.py only while the card computes.
# (Plain names, no import: the host's pytest imports this package to collect its tests.)
MODE_IDENTIFY = 1  # Mode 2: UN = 0, amount = 0
MODE_RESPOND = 2  # Mode 1: UN = challenge
MODE_SIGN = 3  # Mode 1 with amount
MODE_TDS = 4  # Mode 2 + TDS: the fields are MACed with the AC by the reader

MAX_TDS_FIELDS = 10
MAX_FIELD_DIGITS = 10
