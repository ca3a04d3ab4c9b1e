"""
sipxcc.tls toward the SIP proxy and its cipher suites, through memory BIOs: the proxy's
certificate must chain to tls.ca_file and carry its name; TLS 1.2 is ECDHE with AEAD only,
on the client and on the servers.
"""

from __future__ import annotations

import datetime
import ipaddress
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock

from sipxcc.sip.transport import Target, TransportLayer
from sipxcc.tls import TLSError, client_options, server_options
from tests.unit.tlspump import pump


def _certificate(subject, issuer=None, ca=False, address="127.0.0.1"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    return cert, key


def _pem(cert, key=None) -> bytes:
    if key is None:
        return cert.public_bytes(serialization.Encoding.PEM)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki():
    ca = _certificate("test CA", ca=True)
    other_ca = _certificate("another CA", ca=True)
    return {"ca": ca, "other_ca": other_ca,
            "proxy": _certificate("proxy", ca), "rogue": _certificate("rogue"),
            "other_name": _certificate("proxy", ca, address="127.0.0.2")}


class _TLSProtocol:
    """What ClientTLSOptions reports a failed name check to (a TLSMemoryBIOProtocol)."""

    failed = None

    def __init__(self):
        self.factory = SimpleNamespace(wrappedFactory=Factory())  # no ALPN

    def failVerification(self, reason) -> None:
        self.failed = reason


def _run(client: SSL.Connection, server: SSL.Connection) -> bool:
    """Pump a handshake through memory BIOs; True if both ends finished it."""
    try:
        pump(client, server)
    except SSL.Error:
        return False
    return True


def _server(cert, key, tls12_cipher: str | None = None) -> SSL.Connection:
    context = server_options(_pem(cert), _pem(cert, key)).getContext()
    if tls12_cipher is not None:  # a server that offers only this suite, TLS 1.2 only
        context.set_max_proto_version(SSL.TLS1_2_VERSION)
        context.set_cipher_list(tls12_cipher.encode())
    return SSL.Connection(context, None)


def _client(ca_file, hostname="127.0.0.1"):
    protocol = _TLSProtocol()
    connection = client_options(hostname, str(ca_file)).clientConnectionForTLS(protocol)
    return connection, protocol


def _ca_file(tmp_path, *cas):
    path = tmp_path / "ca.pem"
    path.write_bytes(b"".join(_pem(cert) for cert, _ in cas))
    return path


def test_a_proxy_certificate_from_the_configured_ca_is_accepted(tmp_path, pki):
    # a bundle: the CA that signed the proxy is the second certificate in the file
    client, protocol = _client(_ca_file(tmp_path, pki["other_ca"], pki["ca"]))
    assert _run(client, _server(*pki["proxy"]))
    assert protocol.failed is None


@pytest.mark.parametrize("server", ["rogue", "proxy_of_another_ca"])
def test_a_certificate_that_does_not_chain_to_the_ca_file_fails_the_handshake(
        tmp_path, pki, server):
    ca = pki["other_ca"] if server == "proxy_of_another_ca" else pki["ca"]
    presented = pki["proxy"] if server == "proxy_of_another_ca" else pki["rogue"]
    client, protocol = _client(_ca_file(tmp_path, ca))
    assert not _run(client, _server(*presented))


def test_a_trusted_certificate_for_another_name_fails_verification(tmp_path, pki):
    client, protocol = _client(_ca_file(tmp_path, pki["ca"]))
    _run(client, _server(*pki["other_name"]))
    assert protocol.failed is not None  # Twisted aborts the connection before any data


@pytest.mark.parametrize("cipher, works", [
    ("AES128-SHA", False), ("AES128-GCM-SHA256", False), ("ECDHE-ECDSA-AES128-SHA", False),
    ("ECDHE-ECDSA-AES128-GCM-SHA256", True), ("ECDHE-ECDSA-CHACHA20-POLY1305", True)])
def test_the_client_offers_only_ecdhe_with_aead_in_tls_1_2(tmp_path, pki, cipher, works):
    client, protocol = _client(_ca_file(tmp_path, pki["ca"]))
    assert _run(client, _server(*pki["proxy"], tls12_cipher=cipher)) is works
    if works:
        assert client.get_cipher_name() == cipher


@pytest.mark.parametrize("cipher, works", [
    ("AES128-SHA", False), ("AES256-GCM-SHA384", False), ("ECDHE-ECDSA-AES256-SHA", False),
    ("ECDHE-ECDSA-AES128-GCM-SHA256", True)])
def test_the_server_takes_only_ecdhe_with_aead_in_tls_1_2(pki, cipher, works):
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(cipher.encode())
    client = SSL.Connection(context, None)
    assert _run(client, _server(*pki["proxy"])) is works


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read"), (b"", "no PEM certificate"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "cannot be loaded")])
def test_an_unusable_ca_file_is_one_line_naming_it(tmp_path, content, problem):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TLSError) as raised:
        client_options("127.0.0.1", str(path))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: tls.ca_file: ") and problem in message


def test_without_client_options_no_tls_connection_is_made_and_the_send_fails(pki, tmp_path):
    reactor = MemoryReactorClock()
    layer = TransportLayer(reactor, "127.0.0.1", 6050, ("udp", "tcp"))
    errors = []
    layer.send(b"INVITE", Target("TLS", "127.0.0.1", 5061), errors.append)
    reactor.advance(0)
    assert reactor.sslClients == [] and reactor.tcpClients == []
    assert len(errors) == 1
    # with options, the connection verifies the proxy (the creator given is the one used)
    layer.client_tls = client_options("127.0.0.1", str(_ca_file(tmp_path, pki["ca"])))
    layer.send(b"INVITE", Target("TLS", "127.0.0.1", 5061), errors.append)
    [(host, port, _, creator, *_)] = reactor.sslClients
    assert (host, port, creator) == ("127.0.0.1", 5061, layer.client_tls)
