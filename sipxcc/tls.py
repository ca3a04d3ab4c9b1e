"""TLS options: the server side (HTTPS and SIP-TLS listeners: the configured PEM pair or a
self-signed one) and the client side toward the SIP proxy (its certificate verified).

Both speak TLS 1.2 or later, and TLS 1.2 only with ECDHE key exchange and AEAD ciphers
(forward secrecy; no static RSA, no CBC).

The same code must work on Twisted 26.10 with pyOpenSSL 26 (which wants ``cryptography``
objects and warns about pyOpenSSL ones) and on Debian 12's Twisted 22.4 with pyOpenSSL 23
(which only accepts pyOpenSSL objects).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)

from sipxcc.config import Config

if TYPE_CHECKING:  # Twisted declares the interface in a private module only
    from twisted.internet._sslverify import IOpenSSLTrustRoot

CERT_FILE = "sipxcc-cert.pem"
KEY_FILE = "sipxcc-key.pem"
VALID_DAYS = 3650
#: TLS 1.2 suites we accept (OpenSSL syntax); TLS 1.3 suites are all ECDHE/AEAD already
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)


class TLSError(Exception):
    """The certificate or key cannot be used; ``str()`` is one line naming the file."""


def server_context_factory(config: Config) -> IOpenSSLServerConnectionCreator:
    """TLS 1.2+ server options from tls.certificate/tls.key, or a generated pair."""
    if config.tls.certificate and config.tls.key:
        cert_path, key_path = config.tls.certificate, config.tls.key
    else:
        names = ["localhost", socket.gethostname(), "127.0.0.1", "::1"]
        names += [config.http.address, config.sip.address]
        cert_path, key_path = ensure_self_signed(config.daemon.state_dir, names)
    return server_options(_read(cert_path), _read(key_path), cert_path, key_path)


def server_options(cert_pem: bytes, key_pem: bytes, cert_path: str = "certificate",
                   key_path: str = "key") -> ssl.CertificateOptions:
    """CertificateOptions for a PEM pair with TLS 1.2 as the minimum version."""
    try:
        # Twisted's loadPEM is unannotated
        pair = ssl.PrivateCertificate.loadPEM(  # type: ignore[no-untyped-call]
            cert_pem + b"\n" + key_pem)
    except Exception as error:  # pyOpenSSL raises several types for bad PEM
        raise TLSError(f"{cert_path}, {key_path}: cannot load certificate and key: "
                       f"{_describe(error)}") from None
    key, cert = pair.privateKey.original, pair.original
    try:  # new pyOpenSSL prefers cryptography objects; old one rejects them with TypeError
        SSL.Context(SSL.TLS_METHOD).use_certificate(cert.to_cryptography())
    except TypeError:
        pass
    else:
        key, cert = key.to_cryptography_key(), cert.to_cryptography()
    try:
        options = ssl.CertificateOptions(
            privateKey=key, certificate=cert, raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            acceptableCiphers=acceptable_ciphers(),
        )
        options.getContext()  # fails now, not at the first connection, if the key is wrong
    except SSL.Error as error:
        raise TLSError(f"{cert_path}, {key_path}: certificate and key do not match or are "
                       f"unusable: {_describe(error)}") from None
    return options


def acceptable_ciphers() -> ssl.AcceptableCiphers:
    """The TLS 1.2 cipher suites of L{CIPHERS} that this OpenSSL has."""
    # Twisted's fromOpenSSLCipherString is unannotated
    ciphers: ssl.AcceptableCiphers = (
        ssl.AcceptableCiphers.fromOpenSSLCipherString(CIPHERS))  # type: ignore[no-untyped-call]
    return ciphers


def client_options(hostname: str, ca_file: str | None) -> IOpenSSLClientConnectionCreator:
    """TLS toward the SIP proxy: its certificate must chain to C{ca_file}'s CAs (or the
    platform's trust store when None) and name C{hostname} (a DNS name or an address).
    Raises TLSError, one line naming C{ca_file}, when that file cannot be used."""
    # Twisted's platformTrust is unannotated
    trust = ssl.platformTrust() if ca_file is None else (  # type: ignore[no-untyped-call]
        _trust_root(ca_file))
    return ssl.optionsForClientTLS(hostname, trustRoot=trust, extraCertificateOptions={
        "raiseMinimumTo": ssl.TLSVersion.TLSv1_2, "acceptableCiphers": acceptable_ciphers()})


def _trust_root(ca_file: str) -> IOpenSSLTrustRoot:
    data = _read(ca_file, "tls.ca_file")
    certificates = []
    for pem in _PEM_CERTIFICATE.findall(data):
        try:
            certificates.append(ssl.Certificate.loadPEM(pem))
        except Exception as error:  # pyOpenSSL raises several types for bad PEM
            raise TLSError(f"{ca_file}: tls.ca_file: a certificate cannot be loaded: "
                           f"{_describe(error)}") from None
    if not certificates:
        raise TLSError(f"{ca_file}: tls.ca_file: no PEM certificate in the file")
    # Twisted's trustRootFromCertificates is unannotated
    root: IOpenSSLTrustRoot = ssl.trustRootFromCertificates(  # type: ignore[no-untyped-call]
        certificates)
    return root


def ensure_self_signed(state_dir: str, names: Iterable[str]) -> tuple[str, str]:
    """Reuse or create a self-signed pair under ``state_dir``; return (cert, key) paths.

    The key file is created with mode 0600; both files are written to temporary names and
    renamed, so a crash never leaves a half-written pair to be reused.
    """
    cert_path = os.path.join(state_dir, CERT_FILE)
    key_path = os.path.join(state_dir, KEY_FILE)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        cert_pem, key_pem = _generate(names)
        _write(key_path, key_pem, 0o600)
        _write(cert_path, cert_pem, 0o644)
    except OSError as error:
        raise TLSError(f"{state_dir}: cannot write a self-signed certificate: "
                       f"{error.strerror}") from None
    return cert_path, key_path


def _generate(names: Iterable[str]) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dns_names: list[str] = []
    ip_addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name in names:
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            if name and name not in dns_names:
                dns_names.append(name)
            continue
        if not address.is_unspecified and address not in ip_addresses:
            ip_addresses.append(address)
    common_name = next((n for n in dns_names if n != "localhost"), "localhost")
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sipxcc self-signed"),
    ])
    now = datetime.datetime.now(datetime.UTC)
    alternative_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alternative_names += [x509.IPAddress(a) for a in ip_addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: str, data: bytes, mode: int) -> None:
    temporary = f"{path}.tmp{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)  # os.open's mode is filtered by the umask
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _read(path: str, key: str | None = None) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as error:
        named = f" {key}:" if key else ""
        raise TLSError(f"{path}:{named} cannot read: {error.strerror}") from None


def _describe(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
