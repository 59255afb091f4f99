"""The certificate key, bank side: canonical signing payloads (:mod:`~capkey.cert.payload`),
device attestation (:mod:`~capkey.cert.attestation`), the bank CA (:mod:`~capkey.cert.ca`) and the
signature verifier (:mod:`~capkey.cert.verifier`)."""
