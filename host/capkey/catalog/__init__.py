"""Catalogues declared once for the whole project: the boards capkey runs on
(:mod:`capkey.catalog.boards`) and the guide's sensitive operations with their French titles
(:mod:`capkey.catalog.operations`). The CAP card profiles are a catalogue too; they live with the
EMV code that defines them (:mod:`capkey.emv.profiles`).

The lowest tier of the package: it imports nothing else from capkey. The firmware cannot import
host code, so ``make catalog`` writes the firmware's copy (``firmware/catalog.py``) from these
declarations and ``make lint`` fails when that copy is stale.
"""
