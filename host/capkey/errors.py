"""The one base of every error capkey raises on purpose (``except capkey.Error``).

Each tier's errors also keep the built-in base they always had (``ValueError`` for bad input, …),
so existing ``except`` clauses still catch them. The opaque verification failures
(:class:`capkey.emv.verifier.InvalidCode`, :class:`capkey.cert.verifier.InvalidSignature`,
:class:`capkey.rules.Rejected`) stay opaque: one exception each, whatever the reason.
"""

from __future__ import annotations

__all__ = ["Error"]


class Error(Exception):
    """Base class of every exception the capkey package raises by design."""
