"""sipxcc.tls: self-signed generation and reuse, configured pairs, TLS 1.2 minimum."""

import ipaddress
import os
import socket
import stat

import pytest
from cryptography import x509
from OpenSSL import SSL

from sipxcc.config import load_config
from sipxcc.tls import TLSError, ensure_self_signed, server_context_factory
from tests.unit.tlspump import pump


def make_config(tmp_path, tls=""):
    path = tmp_path / "sipxcc.ini"
    path.write_text(
        "[sip]\ndomain = sipx.test\nproxy = sip:127.0.0.1:5080;lr\n"
        "[users]\ndirectory = users.xml\n"
        f"[daemon]\nstate_dir = state\n{tls}"
    )
    return load_config(str(path))


def handshake(server_context, client_context):
    """Run a TLS handshake through memory BIOs; return the negotiated version name."""
    client = SSL.Connection(client_context, None)
    pump(client, SSL.Connection(server_context, None))
    return client.get_protocol_version_name()


def client_context(max_version):
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_max_proto_version(max_version)
    if max_version < SSL.TLS1_2_VERSION:
        # Let the client offer old versions at all (OpenSSL 3 refuses them at level >= 1).
        context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    return context


def test_generates_a_self_signed_pair_with_a_private_key_file(tmp_path):
    cert_path, key_path = ensure_self_signed(str(tmp_path / "state"),
                                             ["localhost", "pbx.example", "127.0.0.1", "::1",
                                              "0.0.0.0"])
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    with open(cert_path, "rb") as stream:
        certificate = x509.load_pem_x509_certificate(stream.read())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "pbx.example"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    assert certificate.issuer == certificate.subject
    assert sorted(os.listdir(tmp_path / "state")) == ["sipxcc-cert.pem", "sipxcc-key.pem"]


def test_server_context_factory_generates_once_and_reuses(tmp_path):
    config = make_config(tmp_path)
    server_context_factory(config)
    state = tmp_path / "state"
    first = {name: (state / name).read_bytes() for name in os.listdir(state)}
    server_context_factory(config)
    assert {name: (state / name).read_bytes() for name in os.listdir(state)} == first
    certificate = x509.load_pem_x509_certificate(first["sipxcc-cert.pem"])
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", socket.gethostname()} <= set(san.get_values_for_type(x509.DNSName))
    assert ipaddress.ip_address("::1") in san.get_values_for_type(x509.IPAddress)


def test_tls_1_2_is_the_minimum(tmp_path):
    server = server_context_factory(make_config(tmp_path)).getContext()
    options = server.set_options(0)  # returns the options in force (before any connection)
    assert options & SSL.OP_NO_TLSv1 and options & SSL.OP_NO_TLSv1_1
    assert handshake(server, client_context(SSL.TLS1_2_VERSION)) == "TLSv1.2"
    assert handshake(server, SSL.Context(SSL.TLS_METHOD)) == "TLSv1.3"
    with pytest.raises(SSL.Error):
        handshake(server, client_context(SSL.TLS1_1_VERSION))


def test_configured_pair_is_used(tmp_path):
    cert_path, key_path = ensure_self_signed(str(tmp_path / "elsewhere"), ["pbx.example"])
    config = make_config(tmp_path, f"[tls]\ncertificate = {cert_path}\nkey = {key_path}\n")
    server = server_context_factory(config).getContext()
    assert handshake(server, client_context(SSL.TLS1_2_VERSION)) == "TLSv1.2"
    assert not (tmp_path / "state").exists()


def test_mismatched_key_is_a_clear_error(tmp_path):
    cert_path, _ = ensure_self_signed(str(tmp_path / "one"), ["a.example"])
    _, other_key = ensure_self_signed(str(tmp_path / "two"), ["b.example"])
    config = make_config(tmp_path, f"[tls]\ncertificate = {cert_path}\nkey = {other_key}\n")
    with pytest.raises(TLSError) as caught:
        server_context_factory(config)
    assert cert_path in str(caught.value) and "\n" not in str(caught.value)


def test_missing_or_garbage_files_are_clear_errors(tmp_path):
    config = make_config(tmp_path, "[tls]\ncertificate = cert.pem\nkey = key.pem\n")
    with pytest.raises(TLSError, match="cert.pem: cannot read"):
        server_context_factory(config)
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(TLSError, match="cannot load certificate and key"):
        server_context_factory(config)


def test_unwritable_state_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TLSError, match="cannot write a self-signed certificate"):
        ensure_self_signed(str(blocker / "state"), ["localhost"])
