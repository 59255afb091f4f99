"""EMV CAP, from the bits up: :mod:`~capkey.emv.hazmat` (3DES, ISO 9797-1 MACs, EMV key derivation,
cryptograms: use the verifier instead) and :mod:`~capkey.emv.tlv`, the profile catalogue
(:mod:`~capkey.emv.profiles`), the issuer (:mod:`~capkey.emv.issuer`: master keys, key backend,
personalisation) and the code verifier (:mod:`~capkey.emv.verifier`)."""
