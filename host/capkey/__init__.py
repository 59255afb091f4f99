"""capkey host package: talk to capkey devices, issue their credentials, verify what they produce."""

__version__ = "0.1.0"
