# Uses the sibling packages crypto, store (all included once by firmware/manifest.py).
# capkey applets: APDU in / APDU out (soft EMV CAP card, BER-TLV helpers).
# (one metadata() for the whole image: boards/drivers/manifest.py; MicroPython's manifest
# tool refuses a second one among included manifests)

package("applets", files=("tlv.py", "emv_card.py"), base_path="..", opt=3)

# Certificate key: signing payloads (parse + French display), the signing applet, its DER.
package("applets", files=("payload.py", "signer.py", "x509.py"), base_path="..", opt=3)
