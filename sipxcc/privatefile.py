"""Secrets kept in files (a signing key, a password): read only from a file that only its
owner may read."""

from __future__ import annotations

import os
import stat

#: bytes read of a secret file (its first line is the secret)
MAX_SECRET_FILE = 4096


class SecretError(Exception):
    """An unusable secret or secret file; C{str()} is one line for the operator, naming
    the configuration key."""


def read_private_line(path: str, key: str) -> bytes:
    """The first line of C{path} (stripped), a file only its owner may read (mode 0600 or
    0400); C{key} is the configuration key that names it, for the error."""
    try:
        with open(path, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            data = stream.read(MAX_SECRET_FILE)
    except OSError as error:
        raise SecretError(f"{key}: cannot read {path}: {error.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"{key}: {path} is readable by group or others "
                          f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it")
    return data.split(b"\n", 1)[0].strip()
