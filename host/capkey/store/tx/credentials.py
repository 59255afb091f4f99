"""A user's credentials: CAP cards with their ATC floor (R9) and client certificates."""

from __future__ import annotations

from ..errors import Conflict
from ..rows import CardRow, CertRow
from .core import TxCore


class CredentialsTx(TxCore):
    def card_add(self, user_id: int, label: str, profile: str, now: int) -> int:
        return self._one(
            "INSERT INTO cap_cards (user_id, label, profile, created_at) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            (user_id, label, profile, now),
        )[0]

    def cards_of(self, user_id: int, *, active_only: bool = True) -> list[CardRow]:
        where = " AND active = 1" if active_only else ""
        rows = self.execute(
            f"SELECT id, user_id, label, profile, last_atc, active, reader_family FROM cap_cards "
            f"WHERE user_id = ?{where} ORDER BY id",
            (user_id,),
        ).fetchall()
        return [CardRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows]

    def card_raise_atc(self, card_id: int, atc: int, reader_family: str | None = None) -> bool:
        """The ATC floor only moves up, and only one writer can move it to a given value (R9).
        The reader family of the accepted code, when given, is stored by the same write."""
        return self._changed(
            "UPDATE cap_cards SET last_atc = ?, reader_family = COALESCE(?, reader_family) "
            "WHERE id = ? AND active = 1 AND last_atc < ?",
            (atc, reader_family, card_id, atc),
        ) == 1

    def card_deactivate(self, card_id: int) -> int | None:
        row = self._one(
            "UPDATE cap_cards SET active = 0 WHERE id = ? AND active = 1 RETURNING user_id",
            (card_id,),
        )
        return None if row is None else row[0]

    def cert_add(self, user_id: int, fingerprint: str, serial: str, now: int) -> int:
        if self._one("SELECT id FROM certificates WHERE fingerprint = ?", (fingerprint,)):
            raise Conflict("certificate already registered")
        return self._one(
            "INSERT INTO certificates (user_id, fingerprint, serial, created_at) "
            "VALUES (?, ?, ?, ?) RETURNING id",
            (user_id, fingerprint, serial, now),
        )[0]

    def cert_find(self, user_id: int, fingerprint: str) -> CertRow | None:
        row = self._one(
            "SELECT id, user_id, fingerprint, serial, active FROM certificates "
            "WHERE user_id = ? AND fingerprint = ? AND active = 1",
            (user_id, fingerprint),
        )
        return None if row is None else CertRow(row[0], row[1], row[2], row[3], bool(row[4]))

    def certs_of(self, user_id: int) -> list[CertRow]:
        rows = self.execute(
            "SELECT id, user_id, fingerprint, serial, active FROM certificates WHERE user_id = ? "
            "ORDER BY id",
            (user_id,),
        ).fetchall()
        return [CertRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def cert_deactivate(self, cert_id: int) -> int | None:
        row = self._one(
            "UPDATE certificates SET active = 0 WHERE id = ? AND active = 1 RETURNING user_id",
            (cert_id,),
        )
        return None if row is None else row[0]
