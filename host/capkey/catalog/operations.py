"""The guide's sensitive operations (rules.md S), declared once with everything each tier needs:
the name the rules use, the portal's address, the French title the portal and the device show,
and what its step-up binds (R7: a payment or a batch; R8: a purpose number in the signed
payload).

To add a sensitive operation: add one :class:`OperationKind` to :data:`SENSITIVE` and run
``make catalog`` (the device's titles). The rules (``DEFAULT_SENSITIVE``), the payloads
(``Purpose``), the portal's menu and the firmware's titles all read this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["OperationKind", "SENSITIVE", "by_name", "by_slug", "by_purpose"]

#: What a step-up for the operation binds: the transaction (R7) or an operation id (R8).
Binding = Literal["PAYMENT", "BATCH", "OPERATION"]


@dataclass(frozen=True)
class OperationKind:
    name: str  #: the rules' name (``Operation`` value, audit records)
    slug: str  #: the portal's path segment
    title: str  #: the guide's words, shown on the portal and on the device
    binding: Binding
    #: Purpose number in an OPERATION payload (docs/payloads.md); None for R7 operations.
    purpose: int | None = None

    def __post_init__(self) -> None:
        if (self.binding == "OPERATION") != (self.purpose is not None):
            raise ValueError(f"{self.name}: a purpose number goes with the OPERATION binding only")


#: In the guide's order (its list of operations that need strong authentication).
SENSITIVE: tuple[OperationKind, ...] = (
    OperationKind("MANAGE_HABILITATIONS", "habilitations", "Gestion des habilitations",
                  "OPERATION", 1),
    OperationKind("MANAGE_PAYEES", "destinataires", "Gestion des destinataires", "OPERATION", 2),
    OperationKind("ORDER_CHEQUEBOOK", "chequiers", "Commande de chéquiers", "OPERATION", 3),
    OperationKind("SCT_INST_ENTRY", "virement-instantane",
                  "Saisie d'un ordre de virement SEPA instantané", "PAYMENT"),
    OperationKind("SIGN_ORDER_BATCH", "remises", "Signature des remises d'ordres de paiement",
                  "BATCH"),
)


def _index(key: str) -> dict[object, OperationKind]:
    table = {getattr(k, key): k for k in SENSITIVE if getattr(k, key) is not None}
    if len(table) != sum(getattr(k, key) is not None for k in SENSITIVE):
        raise ValueError(f"two sensitive operations share a {key}")
    return table


_BY_NAME = _index("name")
_BY_SLUG = _index("slug")
_BY_PURPOSE = _index("purpose")


def by_name(name: str) -> OperationKind | None:
    return _BY_NAME.get(name)


def by_slug(slug: str) -> OperationKind | None:
    return _BY_SLUG.get(slug)


def by_purpose(purpose: int) -> OperationKind | None:
    return _BY_PURPOSE.get(purpose)
