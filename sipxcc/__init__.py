"""sipxcc: third-party call control ("click-to-call") for a sipX PBX, built on Twisted."""

__version__ = "0.1.0"
