# Power-loss-safe records: new file + atomic rename, CRC32, sequence numbers.
# (one metadata() for the whole image: boards/drivers/manifest.py; MicroPython's manifest
# tool refuses a second one among included manifests)

package("store", files=("__init__.py",), base_path="..")
