# The whole firmware, for a board image with capkey frozen in (see docs/boards.md). Frozen
# bytecode runs from flash: the code then takes no heap, only the objects it makes.
include("link/manifest.py")
include("ui/manifest.py")
include("store/manifest.py")
include("crypto/manifest.py")
include("applets/manifest.py")
include("reader/manifest.py")
include("flows/manifest.py")
include("commands/manifest.py")
module("ondemand.py", opt=3)
module("maintenance.py", opt=3)  # loaded at boot and by the MAINTENANCE command, then dropped
module("selftest.py", opt=3)  # loaded by the SELFTEST command, then dropped
module("catalog.py", opt=3)  # generated from the host catalogues (make catalog)
module("purposes.py", opt=3)  # generated too: the operations' titles
package("apps", files=("cap.py", "key.py"), base_path=".", opt=3)
module("slots.py", opt=3)  # picks the app slot at boot (update with rollback)
module("main.py")  # the app: slots.start() runs its main()
module("compose.py", opt=3)  # main() builds the firmware with it at power-up, then drops it
