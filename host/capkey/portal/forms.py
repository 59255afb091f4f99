"""The forms of the sensitive operations (`capkey.catalog.operations.SENSITIVE`): what the person
types, and the server's record of the operation built from it (`PendingOperation`), which is what
the step-up binds (R7: the payment or the batch; R8: the operation and its id).

An operation has its own form here, or else the one of its binding: a payment, a batch, or
(R8) nothing to type, the operation bound by its id. So an operation added to the catalogue has a
working page without a change here."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any, NamedTuple

from ..catalog.operations import OperationKind
from ..errors import Error
from ..rules import (
    Batch,
    InvalidTransaction,
    PayloadError,
    Payment,
    check_iban,
    check_payee_name,
    format_amount,
    format_iban,
)
from .render import Markup, esc, join, tag
from .session import PendingOperation
from .web import Form

_IDENT = re.compile(r"^[A-Za-z0-9_-]{1,12}$")

RIGHTS = {"consultation": "Consultation des comptes", "saisie": "Saisie des virements",
          "signature": "Signature des remises"}

DEMO_IBAN = "FR76 3000 6000 0112 3456 7890 189"
DEMO_PAYEE = "ATELIER DU PORT"
DEMO_BATCH = (f"{DEMO_IBAN} ; 1 250,00\n"
              "DE89 3704 0044 0532 0130 00 ; 310,50\n"
              f"{DEMO_IBAN} ; 89,90")


class FormError(Error, ValueError):
    """A field the person typed is not acceptable (the message is shown as is)."""


def parse_amount(text: str) -> int:
    """'1 250,50' / '1250.5' / '12' (euros) -> minor units."""
    t = text.replace("\u00a0", "").replace(" ", "").replace("€", "").strip()
    m = re.fullmatch(r"(\d{1,10})(?:[.,](\d{1,2}))?", t)
    if not m:
        raise FormError("Montant invalide : par exemple 125,00.")
    minor = int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))
    if minor <= 0:
        raise FormError("Le montant doit être positif.")
    return minor


def _iban(text: str) -> str:
    value = text.replace(" ", "").upper()
    try:
        return check_iban(value)
    except PayloadError:
        raise FormError("IBAN invalide : vérifiez-le (clé de contrôle).") from None


def _payee_name(text: str) -> str:
    name = " ".join(text.split())
    try:
        return check_payee_name(name)
    except PayloadError:
        raise FormError("Nom du bénéficiaire : lettres non accentuées, chiffres et "
                        "/ - ? : ( ) . , ' + (70 caractères au plus).") from None


def _amount_text(minor: int, currency: str) -> str:
    return f"{format_amount(minor, currency)} {currency}"


def _operation_id(prefix: str) -> str:
    """The id an R8 operation is bound by (the device shows it): drawn by the server."""
    return f"{prefix}-{secrets.token_hex(4).upper()}"


# -- the fields ---------------------------------------------------------------------------------


def _input(label: str, name: str, value: str, **attrs: Any) -> Markup:
    return join([tag("label", label, for_=name),
                 Markup(f'<input id="{esc(name)}" name="{esc(name)}" value="{esc(value)}"'
                        + "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
                        + " required>")])


def _select(label: str, name: str, options: dict[str, str], form: Form) -> Markup:
    chosen = form.get(name, "")
    opts = join(tag("option", text, value=value, selected=value == chosen)
                for value, text in options.items())
    return join([tag("label", label, for_=name), tag("select", opts, id=name, name=name)])


# -- one form per operation: its fields, refilled with what was typed, and its record -----------


def _habilitations_fields(form: Form) -> Markup:
    return join([_input("Numéro Utilisateur concerné", "utilisateur",
                        form.get("utilisateur", "0002"), maxlength="12"),
                 _select("Droit à accorder", "droit", RIGHTS, form)])


def _habilitations(kind: OperationKind, form: Form, currency: str,
                   subscription: str) -> PendingOperation:
    user = form.get("utilisateur", "").strip()
    if not _IDENT.match(user):
        raise FormError("Numéro Utilisateur invalide.")
    right = form.get("droit", "")
    if right not in RIGHTS:
        raise FormError("Choisissez un droit.")
    return PendingOperation(kind.slug, kind.name, [
        ("Utilisateur", f"{subscription}/{user}"), ("Droit accordé", RIGHTS[right])],
        operation_id=_operation_id("HAB"))


def _payee_fields(form: Form) -> Markup:
    return join([_input("Nom du destinataire", "nom", form.get("nom", DEMO_PAYEE),
                        maxlength="70"),
                 _input("IBAN", "iban", form.get("iban", DEMO_IBAN), maxlength="42",
                        spellcheck="false")])


def _payee(kind: OperationKind, form: Form, currency: str, subscription: str
           ) -> PendingOperation:
    name, iban = _payee_name(form.get("nom", "")), _iban(form.get("iban", ""))
    return PendingOperation(kind.slug, kind.name, [
        ("Nouveau destinataire", name), ("IBAN", format_iban(iban))],
        operation_id=_operation_id("BEN"))


def _chequebook_fields(form: Form) -> Markup:
    return _select("Nombre de chéquiers", "nombre", {"1": "1", "2": "2", "3": "3"}, form)


def _chequebook(kind: OperationKind, form: Form, currency: str, subscription: str
                ) -> PendingOperation:
    count = form.get("nombre", "")
    if count not in {"1", "2", "3"}:
        raise FormError("Choisissez de 1 à 3 chéquiers.")
    return PendingOperation(kind.slug, kind.name, [
        ("Chéquiers commandés", count), ("Envoi", "à l'adresse de l'abonnement")],
        operation_id=_operation_id("CHQ"))


def _payment_fields(form: Form) -> Markup:
    return join([_input("Montant (EUR)", "montant", form.get("montant", "125,00"),
                        inputmode="decimal", maxlength="16"),
                 _input("IBAN du bénéficiaire", "iban", form.get("iban", DEMO_IBAN),
                        maxlength="42", spellcheck="false"),
                 _input("Nom du bénéficiaire", "nom", form.get("nom", DEMO_PAYEE),
                        maxlength="70")])


def _payment(kind: OperationKind, form: Form, currency: str, subscription: str
             ) -> PendingOperation:
    amount = parse_amount(form.get("montant", ""))
    iban, name = _iban(form.get("iban", "")), _payee_name(form.get("nom", ""))
    try:
        payment = Payment(amount, currency, iban, name)
    except InvalidTransaction:
        raise FormError("Virement invalide.") from None
    return PendingOperation(kind.slug, kind.name, [
        ("Montant", _amount_text(amount, currency)), ("Bénéficiaire", name),
        ("IBAN du bénéficiaire", format_iban(iban))], transaction=payment)


def _batch_fields(form: Form) -> Markup:
    return join([tag("label", "Ordres de la remise : un par ligne, « IBAN ; montant »",
                     for_="ordres"),
                 tag("textarea", form.get("ordres", DEMO_BATCH), id="ordres", name="ordres",
                     rows="5", spellcheck="false")])


def _batch(kind: OperationKind, form: Form, currency: str, subscription: str
           ) -> PendingOperation:
    payments = []
    for n, line in enumerate(form.get("ordres", "").splitlines(), 1):
        if not line.strip():
            continue
        iban_text, sep, amount_text = line.partition(";")
        if not sep:
            raise FormError(f"Ordre {n} : « IBAN ; montant » attendu.")
        payments.append(Payment(parse_amount(amount_text), currency, _iban(iban_text),
                                "ORDRE " + str(n)))
    if not 1 <= len(payments) <= 24:
        raise FormError("Une remise compte de 1 à 24 ordres.")
    batch = Batch.from_payments(payments)
    return PendingOperation(kind.slug, kind.name, [
        ("Nombre d'ordres", str(batch.count)),
        ("Montant total", _amount_text(batch.total_minor, currency)),
        ("Bénéficiaires", ", ".join(format_iban(p) for p in sorted(set(batch.payees))))],
        transaction=batch)


# An R8 operation with no form of its own: nothing to type, the operation alone is bound. Its
# reference is in the summary, since the device shows it ("Opération OPE-…").


def _operation_fields(form: Form) -> Markup:
    return Markup("")


def _operation(kind: OperationKind, form: Form, currency: str, subscription: str
               ) -> PendingOperation:
    operation_id = _operation_id("OPE")
    return PendingOperation(kind.slug, kind.name, [("Référence", operation_id)],
                            operation_id=operation_id)


class OperationForm(NamedTuple):
    fields: Callable[[Form], Markup]
    #: (kind, form, currency, subscription) -> the record; raises FormError
    build: Callable[[OperationKind, Form, str, str], PendingOperation]


_BY_SLUG = {
    "habilitations": OperationForm(_habilitations_fields, _habilitations),
    "destinataires": OperationForm(_payee_fields, _payee),
    "chequiers": OperationForm(_chequebook_fields, _chequebook),
}
_BY_BINDING = {
    "PAYMENT": OperationForm(_payment_fields, _payment),
    "BATCH": OperationForm(_batch_fields, _batch),
    "OPERATION": OperationForm(_operation_fields, _operation),
}


def _form(kind: OperationKind) -> OperationForm:
    return _BY_SLUG.get(kind.slug) or _BY_BINDING[kind.binding]


def build_operation(kind: OperationKind, form: Form, currency: str,
                    subscription: str) -> PendingOperation:
    """The server's record of the operation the person asked for (raises FormError)."""
    return _form(kind).build(kind, form, currency, subscription)


def operation_fields(kind: OperationKind, form: Form) -> Markup:
    """The form of an operation, refilled with what the person typed."""
    return _form(kind).fields(form)
