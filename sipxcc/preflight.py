"""``python3 -m sipxcc.preflight CONFIG``: is this host configured for sipxcc yet?

The systemd unit runs it as ``ExecCondition=``. Exit status 1 (the unit is skipped, stays
inactive and is not restarted) when the user directory that ``users.directory`` names does
not exist -- a fresh install on a host without sipX user data -- with one line saying what
to edit. Everything else exits 0, so that the daemon itself starts and reports any other
problem (a bad key, an unreadable file) as its own one-line error.
"""

from __future__ import annotations

import errno
import os
import sys

from sipxcc.config import ConfigError, load_config

DEFAULT_CONFIG = "/etc/sipxcc/sipxcc.ini"
NOT_CONFIGURED = 1


def not_configured_reason(config_path: str) -> str | None:
    """One line on what to edit when the host is not configured yet, else None."""
    try:
        config = load_config(config_path)
    except ConfigError:
        return None  # the daemon reports it, naming file, key and problem
    path = config.users.directory
    try:
        os.stat(path)
    except OSError as error:
        if error.errno != errno.ENOENT:
            return None
        return (f"sipxcc not started: {config.source}: users.directory: {path} does not "
                f"exist; point users.directory (and sip.domain, sip.proxy) at this sipX "
                f"host in {config.source}, then run: systemctl restart sipxcc")
    return None


def main(argv: list[str] | None = None) -> int:
    """Print the reason and return 1 when not configured; return 0 otherwise."""
    arguments = sys.argv[1:] if argv is None else argv
    reason = not_configured_reason(arguments[0] if arguments else DEFAULT_CONFIG)
    if reason is None:
        return 0
    print(reason, flush=True)
    return NOT_CONFIGURED


if __name__ == "__main__":
    sys.exit(main())
