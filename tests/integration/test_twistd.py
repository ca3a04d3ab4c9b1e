"""The real ``twistd sipxcc``: plugin discovery, start-up errors and serving /health."""

import os
import shutil
import socket
import ssl
import subprocess
import warnings

import pytest

from sipxcc.config import load_config
from tests.integration.daemon import (
    PROJECT_ROOT,
    Daemon,
    free_ports,
    run_twistd,
    write_config,
)

DEBIAN_TWISTD = "/usr/bin/twistd3"
DEBIAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(PROJECT_ROOT),
              "HOME": os.environ.get("HOME", "/root")}
needs_debian_twistd = pytest.mark.skipif(not os.path.exists(DEBIAN_TWISTD),
                                         reason="Debian's python3-twisted is not installed")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def assert_one_line_failure(result, *expected):
    """twistd failed with exit status != 0 and one line on stderr mentioning ``expected``."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    for text in expected:
        assert text in lines[0], output


def test_twistd_lists_the_plugin():
    result = run_twistd("--help")
    assert result.returncode == 0
    assert any(line.split()[:1] == ["sipxcc"] for line in result.stdout.splitlines())


@needs_debian_twistd
def test_debian_twistd3_finds_the_plugin_in_the_checkout():
    result = run_twistd("--help", twistd=[DEBIAN_TWISTD], env=DEBIAN_ENV)
    assert result.returncode == 0
    assert any(line.split()[:1] == ["sipxcc"] for line in result.stdout.splitlines())


def test_plugin_help_shows_one_option_per_config_key():
    result = run_twistd("sipxcc", "--help")
    assert result.returncode == 0
    for option in ("--config=", "--sip-port=", "--http-https=", "--calls-max-calls=",
                   "--calls-max-calls-per-agent=", "--calls-callback-hosts=",
                   "--daemon-state-dir=", "--users-directory="):
        assert option in result.stdout


@pytest.mark.parametrize("change, expected", [
    ({"sip_colour": "blue"}, ["sip.colour", "unknown key"]),
    ({"sip_port": "70000"}, ["sip.port", "out of range"]),
    ({"http_trusted": "10.0.0.0/40"}, ["http.trusted", "10.0.0.0/40"]),
    ({"sip_domain": None}, ["sip.domain", "required key is missing"]),
    ({"sip_transports": "udp sctp"}, ["sip.transports", "sctp"]),
])
def test_config_errors_stop_start_up_with_one_line(tmp_path, change, expected):
    path = write_config(tmp_path, **change)
    result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(path))
    assert_one_line_failure(result, str(path), *expected)


def test_unreadable_config_file(tmp_path):
    path = tmp_path / "absent.ini"
    result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(path))
    assert_one_line_failure(result, str(path), "cannot read config file")


def test_bad_command_line_override(tmp_path):
    path = write_config(tmp_path)
    result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(path),
                        "--calls-max-calls", "lots")
    assert_one_line_failure(result, str(path), "calls.max_calls", "command line")


def test_malformed_user_directory(tmp_path):
    path = write_config(tmp_path)
    (tmp_path / "validusers.xml").write_text("<validusers><user>")
    result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(path))
    assert_one_line_failure(result, str(tmp_path / "validusers.xml"), "malformed XML")


def test_unusable_certificate(tmp_path):
    (tmp_path / "cert.pem").write_text("garbage")
    (tmp_path / "key.pem").write_text("garbage")
    path = write_config(tmp_path, tls_certificate="cert.pem", tls_key="key.pem")
    result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(path))
    assert_one_line_failure(result, "cert.pem", "cannot load certificate")


@pytest.mark.parametrize("listener", ["https", "http"])
def test_port_in_use(tmp_path, listener):
    path = write_config(tmp_path)
    port = getattr(load_config(str(path)).http, listener)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(path))
    assert_one_line_failure(result, str(path), f"http.{listener}", f"127.0.0.1:{port}",
                            "in use")


@needs_debian_twistd
def test_debian_twistd3_config_error(tmp_path):
    path = write_config(tmp_path, sip_port="0")
    result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(path),
                        twistd=[DEBIAN_TWISTD], env=DEBIAN_ENV)
    assert_one_line_failure(result, str(path), "sip.port", "out of range")


@needs_curl
def test_serves_health_over_https_and_http(tmp_path):
    with Daemon(write_config(tmp_path)) as daemon:
        for url in (daemon.https_url, daemon.http_url):
            result = subprocess.run(
                ["curl", "-sS", "-k", "--max-time", "5", "-D", "-", url + "/health"],
                capture_output=True, text=True, timeout=10)
            assert result.returncode == 0, result.stderr
            head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
            assert head.split()[1] == "200"
            assert "content-type: text/plain" in head.lower()
            assert body == "ok\n"
        assert daemon.get("/no-such-page")[0] == 404
    state = tmp_path / "state"
    assert sorted(os.listdir(state)) == ["sipxcc-cert.pem", "sipxcc-key.pem"]
    assert daemon.process.returncode is not None


def test_tls_is_at_least_1_2(tmp_path):
    with Daemon(write_config(tmp_path, http_http="0")) as daemon:
        for version, works in ((ssl.TLSVersion.TLSv1_1, False), (ssl.TLSVersion.TLSv1_2, True),
                               (ssl.TLSVersion.TLSv1_3, True)):
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
                context.maximum_version = version
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            with socket.create_connection(("127.0.0.1", daemon.config.http.https), 5) as raw:
                try:
                    with context.wrap_socket(raw) as tls:
                        negotiated = tls.version()
                except ssl.SSLError:
                    negotiated = None
            assert (negotiated is not None) is works, (version, negotiated)


def test_ipv6_listener_from_command_line_overrides(tmp_path):
    try:
        https, http = free_ports(2, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    path = write_config(tmp_path)  # IPv4 listeners in the file, replaced on the command line
    overrides = {"http.address": "::1", "http.https": str(https), "http.http": str(http)}
    with Daemon(path, overrides) as daemon:
        assert daemon.https_url == f"https://[::1]:{https}"
        assert daemon.get("/health", secure=True) == (200, b"ok\n")
        assert daemon.get("/health", secure=False) == (200, b"ok\n")


@needs_debian_twistd
def test_debian_twistd3_serves_health(tmp_path):
    with Daemon(write_config(tmp_path), twistd=[DEBIAN_TWISTD], env=DEBIAN_ENV) as daemon:
        assert daemon.get("/health", secure=True) == (200, b"ok\n")
        assert daemon.get("/health", secure=False) == (200, b"ok\n")


def test_a_missing_user_directory_names_the_config_file_the_key_and_the_file(tmp_path):
    path = write_config(tmp_path)
    (tmp_path / "validusers.xml").unlink()
    result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(path))
    assert_one_line_failure(result, f"{path}: users.directory: {tmp_path / 'validusers.xml'}",
                            "No such file or directory")
