"""Verifiers: pure functions over explicit inputs, no I/O, one opaque failure each.

- `capkey.verifier.cap` — CAP codes (raises ``InvalidCode``);
- `capkey.verifier.signature` — certificate signatures (raises ``InvalidSignature``);
- `capkey.verifier.code` — confidential codes: Argon2id hashing, verification
  (raises `InvalidConfidentialCode`) and the change policy.

Submodules are imported on demand, so importing one never pulls in the others.
"""
