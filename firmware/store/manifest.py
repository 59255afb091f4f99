metadata(
    version="0.1.0",
    description="Power-loss-safe records: new file + atomic rename, CRC32, sequence numbers.",
)

package("store", files=("__init__.py",), base_path="..")
