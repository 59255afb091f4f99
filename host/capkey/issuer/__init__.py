"""The issuer side: keys the bank holds and what it loads into its devices.

- :mod:`capkey.issuer.cap`: issuer master keys (IMK) for EMV CAP, the HSM-shaped key backend the
  CAP verifier calls, key wrapping at rest (R18) and card personalisation data.
- :mod:`capkey.issuer.ca`: the bank CA (device and user certificates, CRLs).

Submodules are imported on demand, so importing one never pulls in the other.
"""
