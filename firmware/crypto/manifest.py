# capkey crypto: DES/3DES and ISO 9797-1 MACs (viper: needs mpy-cross -march).
# (one metadata() for the whole image: boards/drivers/manifest.py; MicroPython's manifest
# tool refuses a second one among included manifests)

# Modules are added here by their owners; des.py uses @micropython.viper.
package("crypto", files=("des.py", "des_tables.py", "mac.py"), base_path="..", opt=3)

# Certificate key and CAP card: HMAC/HKDF/PBKDF2-SHA256, AES-CTR, constant-time compare, sealed
# blobs, the device secret (devkey.py), ECDSA P-256. p256.py reads its comb table from
# p256_comb.bin in the same folder (32 KB, not Python): a board's file system must receive it next
# to the .mpy files.
package("crypto", files=("hmac.py", "aes.py", "ct.py", "sealed.py", "devkey.py", "p256.py"), base_path="..", opt=3)
# Verification and the naive yardstick: imported only by self-tests and bench/bench_p256.py.
package("crypto", files=("p256_verify.py",), base_path="..", opt=3)
