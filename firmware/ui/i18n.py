# UI strings as (fr, en) pairs; Ui.t() picks one. French is the default language (index 0).
# Apps keep their own labels next to their flows; the ones shared by several flows live here.
FR = 0
EN = 1
LANGS = ("fr", "en")
LANG_NAMES = ("Français", "English")

CHOOSE = ("Choisir la fonction", "Choose a function")
MENU = ("Menu", "Menu")
MENU_KEY = ("#:MENU", "#:MENU")
INFO = ("Infos appareil", "Device info")
LANGUAGE = ("Langue / Language", "Langue / Language")
CANCELLED = ("Opération annulée", "Operation cancelled")
ERROR = ("Erreur", "Error")
TIMEOUT = ("Temps écoulé", "Timed out")
NOT_AVAILABLE = ("Fonction non disponible", "Function not available")
RETRY = ("Réessayez", "Try again")
WAIT = ("Patientez...", "Please wait...")

# hints (16 columns at most)
HINT_OK = ("D:OK *:ANNULER", "D:OK *:CANCEL")
HINT_DIGITS = ("C:CORR D:OK", "C:DEL D:OK")

# device info
MODEL = ("Modèle", "Model")
SERIAL = ("N° série", "Serial no.")
VERSION = ("Version", "Version")
HEAP_FREE = ("RAM libre", "Free RAM")
HEAP_TOTAL = ("RAM totale", "Total RAM")

# PIN dialogues used by both the CAP reader and the certificate key
PIN = ("Code PIN", "PIN")
PIN_WRONG = ("Code PIN incorrect", "Wrong PIN")
PIN_BLOCKED = ("Code PIN bloqué", "PIN blocked")
TRIES_LEFT = ("Essais restants", "Tries left")
