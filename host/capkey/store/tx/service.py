"""What the HTTP service (`capkey.server`) keeps: its callers' API keys and the answers it gave
to requests that carried an Idempotency-Key."""

from __future__ import annotations

from typing import NamedTuple

from .core import TxCore


class ApiKeyRow(NamedTuple):
    id: str
    digest: bytes
    scopes: str  # space-separated
    label: str
    created_at: int
    revoked_at: int | None


class IdempotentAnswer(NamedTuple):
    request_digest: bytes
    status: int
    body: bytes


class ServiceTx(TxCore):
    def api_key_insert(self, row: ApiKeyRow) -> None:
        self.execute("INSERT INTO api_keys (id, digest, scopes, label, created_at, revoked_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", tuple(row))

    def api_key_get(self, key_id: str) -> ApiKeyRow | None:
        row = self._one("SELECT id, digest, scopes, label, created_at, revoked_at FROM api_keys "
                        "WHERE id = ?", (key_id,))
        return None if row is None else ApiKeyRow(row[0], bytes(row[1]), *row[2:])

    def api_keys(self) -> list[ApiKeyRow]:
        return [ApiKeyRow(r[0], bytes(r[1]), *r[2:]) for r in self.execute(
            "SELECT id, digest, scopes, label, created_at, revoked_at FROM api_keys "
            "ORDER BY created_at, id").fetchall()]

    def api_key_revoke(self, key_id: str, now: int) -> bool:
        return self._changed("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at "
                             "IS NULL", (now, key_id)) == 1

    def idempotent_get(self, key_id: str, idem_key: str) -> IdempotentAnswer | None:
        row = self._one("SELECT request_digest, status, body FROM idempotency WHERE key_id = ? "
                        "AND idem_key = ?", (key_id, idem_key))
        return None if row is None else IdempotentAnswer(bytes(row[0]), row[1], bytes(row[2]))

    def idempotent_put(self, key_id: str, idem_key: str, answer: IdempotentAnswer,
                       now: int) -> bool:
        """Keeps the first answer given under (`key_id`, `idem_key`); False if one was kept."""
        return self._changed(
            "INSERT INTO idempotency (key_id, idem_key, request_digest, status, body, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (key_id, idem_key, answer.request_digest, answer.status, answer.body, now)) == 1

    def idempotent_purge(self, before: int) -> int:
        return self._changed("DELETE FROM idempotency WHERE created_at < ?", (before,))
