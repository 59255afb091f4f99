# UI strings. The device speaks French, the words of the bank's customer guide, and only French:
# one language per surface, and a second language in every label cost heap in every flow.
# Apps keep their own labels next to their flows; the ones shared by several flows live here.

CHOOSE = "Choisir la fonction"
MENU = "Menu"
MENU_KEY = "#:MENU"
INFO = "Infos appareil"
CANCELLED = "Opération annulée"
ERROR = "Erreur"
RETRY = "Réessayez"
WAIT = "Patientez..."

# hints (16 columns at most)
HINT_OK = "D:OK *:ANNULER"
HINT_DIGITS = "C:CORR D:OK"

# device info
MODEL = "Modèle"
SERIAL = "N° série"
VERSION = "Version"
HEAP_FREE = "RAM libre"

# PIN dialogues used by both the CAP reader and the certificate key
PIN = "Code PIN"
PIN_WRONG = "Code PIN incorrect"
PIN_BLOCKED = "Code PIN bloqué"
TRIES_LEFT = "Essais restants"
