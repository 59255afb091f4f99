"""Named settings, replaced by compare-and-set so concurrent writers cannot both win."""

from __future__ import annotations

from .core import TxCore


class SettingsTx(TxCore):
    def setting_get(self, name: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE name = ?", (name,))
        return None if row is None else row[0]

    def setting_replace(self, name: str, old: str | None, new: str) -> bool:
        """Sets `name` to `new` if it is still `old` (None: absent)."""
        if old is None:
            if self._one("SELECT 1 FROM settings WHERE name = ?", (name,)) is not None:
                return False
            self.execute("INSERT INTO settings (name, value) VALUES (?, ?)", (name, new))
            return True
        return self._changed(
            "UPDATE settings SET value = ? WHERE name = ? AND value = ?", (new, name, old)
        ) == 1
