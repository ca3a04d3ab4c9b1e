"""A TLS handshake between two pyOpenSSL connections through memory BIOs (no sockets)."""

from __future__ import annotations

from OpenSSL import SSL


def pump(client: SSL.Connection, server: SSL.Connection) -> None:
    """Run the handshake; raises C{SSL.Error} when one end refuses it, AssertionError
    when it does not finish within 50 round trips."""
    client.set_connect_state()
    server.set_accept_state()
    done = {id(client): False, id(server): False}
    for _ in range(50):
        for this, other in ((client, server), (server, client)):
            if not done[id(this)]:
                try:
                    this.do_handshake()
                    done[id(this)] = True
                except SSL.WantReadError:
                    pass
            try:
                data = this.bio_read(65536)
            except SSL.WantReadError:
                data = b""
            if data:
                other.bio_write(data)
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")
