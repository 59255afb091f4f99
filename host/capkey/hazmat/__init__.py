"""Hazardous materials: the raw EMV building blocks (DES/3DES, ISO/IEC 9797-1 MACs, EMV key
derivation, application cryptograms, CAP OTP extraction).

These functions make no decision about what is safe to accept. A bank back end should call
:mod:`capkey.verifier.cap` (recipes with one opaque failure) and :mod:`capkey.issuer.cap`
(keys, personalisation) instead; this package exists for them, for test vectors and for tools.
"""
