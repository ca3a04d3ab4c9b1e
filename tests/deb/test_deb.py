"""The Debian package, end to end: build, lintian, install, run, verify, purge.

Every command runs with a minimal environment whose PATH holds only the system
directories, so Debian's python3 and python3-twisted are used, never the venv's.
The tests share one build and one installation and run in file order; the
last one purges the package, and the fixture purges it again if a test failed. A package
that an aborted run left installed is purged before the install.

``make deb`` ends with ``lintian --fail-on error --display-info``. Its
informational tags are accepted: package-supports-alternative-init-but-no-init.d-script
(the service is systemd-only, as the sipX hosts are) and spare-manual-page (sipxcc(8)
documents a twistd plugin, not a command of its own). Warnings we keep are listed in
KEPT_LINTIAN_WARNINGS with the reason.
"""

import grp
import hashlib
import os
import pathlib
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from tests.integration.daemon import free_ports
from tests.integration.peers import Kamailio, SippPhone, demo_aliases, demo_ha1s

ROOT = pathlib.Path(__file__).resolve().parents[2]
SYSTEM_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}
PLUGIN = pathlib.Path("/usr/lib/python3/dist-packages/twisted/plugins/sipxcc_plugin.py")
CONFIG = pathlib.Path("/etc/sipxcc/sipxcc.ini")
STATE_DIR = pathlib.Path("/var/lib/sipxcc")
UNIT = pathlib.Path("/lib/systemd/system/sipxcc.service")
KEPT_LINTIAN_WARNINGS: dict[str, str] = {}  # tag -> why it is acceptable


def _sipxcc_installed():
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status}", "sipxcc"],
        env=SYSTEM_ENV, capture_output=True, text=True,
    )
    return result.returncode == 0 and result.stdout.strip() not in ("", "not-installed")


pytestmark = [
    # The first test builds the package and the first installed one installs it.
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a Debian package: needs root"),
    pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs a Debian system"),
]


def run(*command, check=True, timeout=300, **kwargs):
    """Run a command in the system environment; on failure show its output."""
    result = subprocess.run(
        command, env=SYSTEM_ENV, capture_output=True, text=True, timeout=timeout, **kwargs,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"--- stdout (end) ---\n{result.stdout[-6000:]}\n"
            f"--- stderr (end) ---\n{result.stderr[-6000:]}"
        )
    return result


def purge():
    run("apt-get", "purge", "-y", "sipxcc", check=False)


def purge_leftover():
    """Purge a sipxcc that an aborted run left installed; refuse to touch one in real use.

    A leftover still has the packaged /etc/sipxcc/sipxcc.ini; a configured installation has
    its own, and the test fails with what to do rather than purge it.
    """
    if not _sipxcc_installed():
        return
    conffiles = run("dpkg-query", "-W", "-f", "${Conffiles}", "sipxcc").stdout
    packaged = {fields[0]: fields[1] for fields in map(str.split, conffiles.splitlines())
                if len(fields) >= 2}
    if CONFIG.is_file() and hashlib.md5(CONFIG.read_bytes()).hexdigest() != packaged.get(
            str(CONFIG)):
        pytest.fail(f"sipxcc is installed here with a changed {CONFIG}: this test would "
                    "replace and purge it. Run it on a machine without sipxcc in use, or "
                    "`apt-get purge sipxcc` first.")
    purge()
    assert not _sipxcc_installed(), "apt-get purge sipxcc left the package installed"


@pytest.fixture(scope="module")
def build():
    """``make deb``: returns (path of the .deb, make's output)."""
    result = run("make", "-C", str(ROOT), "deb", timeout=600)
    debs = sorted((ROOT / "build" / "deb").glob("sipxcc_*_all.deb"))
    assert len(debs) == 1, debs
    return debs[0], result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(build):
    """The package installed with apt (purged again at the end in any case)."""
    deb, _ = build
    purge_leftover()
    try:
        install = ("apt-get", "install", "-y", f"./{deb.relative_to(ROOT)}")
        if run(*install, cwd=ROOT, timeout=600, check=False).returncode != 0:
            # A fresh machine may have no package lists to resolve the dependencies.
            run("apt-get", "update", timeout=600)
            run(*install, cwd=ROOT, timeout=600)
        yield deb
    finally:
        purge()


def test_build_has_no_lintian_errors_or_new_warnings(build):
    _, output = build
    assert "lintian" in output, "make deb did not run lintian"
    errors = re.findall(r"^E: .*$", output, re.MULTILINE)
    warnings = set(re.findall(r"^W: sipxcc: (\S+)", output, re.MULTILINE))
    assert not errors
    assert warnings <= KEPT_LINTIAN_WARNINGS.keys(), warnings


def test_package_metadata_and_contents(build):
    deb, _ = build
    version = run("dpkg-deb", "-f", str(deb), "Version").stdout.strip()
    init = (ROOT / "sipxcc" / "__init__.py").read_text()
    assert f'__version__ = "{version}"' in init, "debian/changelog and sipxcc disagree"

    files = run("dpkg-deb", "-c", str(deb)).stdout
    paths = {line.split()[-1].lstrip(".") for line in files.splitlines()}
    for expected in (str(PLUGIN), str(CONFIG), str(UNIT), "/usr/share/man/man8/sipxcc.8.gz"):
        assert expected in paths, expected
    twisted_dir = "/usr/lib/python3/dist-packages/twisted/"
    assert twisted_dir + "__init__.py" not in paths
    assert twisted_dir + "plugins/__init__.py" not in paths
    assert twisted_dir + "plugins/dropin.cache" not in paths

    with tempfile.TemporaryDirectory() as control:
        run("dpkg-deb", "-e", str(deb), control)
        conffiles = pathlib.Path(control, "conffiles").read_text().split()
        triggers = pathlib.Path(control, "triggers").read_text()
    assert str(CONFIG) in conffiles
    assert "activate-noawait twisted-plugins-cache" in triggers


def test_install_creates_user_config_and_state_dir(installed):
    user = pwd.getpwnam("sipxcc")
    assert grp.getgrgid(user.pw_gid).gr_name == "sipxcc"
    assert user.pw_uid < 1000, "not a system user"
    assert CONFIG.is_file()
    assert "/etc/sipxpbx/validusers.xml" in CONFIG.read_text()
    state = STATE_DIR.stat()
    assert (state.st_uid, state.st_gid) == (user.pw_uid, user.pw_gid)
    assert state.st_mode & 0o777 == 0o750


def test_twistd_lists_plugin_with_fresh_cache(installed):
    # As the daemon's own user: python3-twisted's trigger must have rebuilt
    # dropin.cache, since this user cannot rewrite a stale one.
    result = run("runuser", "-u", "sipxcc", "--", "twistd3", "--help")
    assert re.search(r"^\s+sipxcc\s", result.stdout, re.MULTILINE), result.stdout
    assert "Unable to write to plugin cache" not in result.stdout + result.stderr


def test_systemd_accepts_unit(installed):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    result = run("systemd-analyze", "verify", str(UNIT), check=False)
    assert result.returncode == 0, result.stderr
    assert "sipxcc" not in result.stderr, result.stderr


def _unit_condition():
    """The installed unit's ExecCondition= command line, as a list."""
    lines = [line for line in UNIT.read_text().splitlines()
             if line.startswith("ExecCondition=")]
    assert len(lines) == 1, lines
    return lines[0].partition("=")[2].split()


def test_install_enables_the_unit_which_waits_for_the_user_directory(installed):
    """On a host without sipX user data the unit's start is skipped, not failed.

    There is no systemd as PID 1 here (nor a container engine to boot one), so the unit's
    ExecCondition= command is run as systemd would: as the sipxcc user, exit status 1
    meaning "skipped, stay inactive, no restart", printing the one journal line.
    """
    assert run("systemctl", "is-enabled", "sipxcc", check=False).stdout.strip() == "enabled"
    command = _unit_condition()
    assert command[-1] == str(CONFIG)
    result = run("runuser", "-u", "sipxcc", "--", *command, check=False)
    if pathlib.Path("/etc/sipxpbx/validusers.xml").exists():  # a sipX host: configured
        assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr
        return
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"sipxcc not started: {CONFIG}: users.directory: /etc/sipxpbx/validusers.xml does "
        f"not exist; point users.directory (and sip.domain, sip.proxy) at this sipX host in "
        f"{CONFIG}, then run: systemctl restart sipxcc"]


def test_the_unit_starts_once_the_user_directory_exists(installed):
    sip_port, https_port, http_port, proxy_port = free_ports(4)
    with tempfile.TemporaryDirectory(prefix="sipxcc-deb-") as scratch:
        directory = pathlib.Path(scratch)
        directory.chmod(0o755)
        config = _write_test_config(directory, sip_port, https_port, http_port, proxy_port)
        command = [*_unit_condition()[:-1], str(config)]
        result = run("runuser", "-u", "sipxcc", "--", *command, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def _write_test_config(directory, sip_port, https_port, http_port, proxy_port):
    """A config readable by the sipxcc user, with the demo users and free ports."""
    users = directory / "validusers.xml"
    shutil.copyfile(ROOT / "etc" / "validusers.xml", users)
    state = directory / "state"
    state.mkdir()
    sipxcc = pwd.getpwnam("sipxcc")
    os.chown(state, sipxcc.pw_uid, sipxcc.pw_gid)
    config = directory / "sipxcc.ini"
    config.write_text(
        "[sip]\n"
        "domain = sipx.test\n"
        f"proxy = sip:127.0.0.1:{proxy_port};lr\n"
        "address = 127.0.0.1\n"
        f"port = {sip_port}\n"
        "[http]\n"
        "address = 127.0.0.1\n"
        f"https = {https_port}\n"
        f"http = {http_port}\n"
        "[users]\n"
        f"directory = {users}\n"
        "[daemon]\n"
        f"state_dir = {state}\n"
    )
    for path in (directory, users, config):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return config


def _wait_for_health(url, daemon, log, deadline):
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            pytest.fail(f"daemon exited {daemon.returncode}:\n{log.read_text()[-4000:]}")
        probe = run("curl", "-k", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                    "--max-time", "2", url, check=False)
        if probe.stdout == "200":
            return
        time.sleep(0.2)  # polling interval, not synchronisation
    pytest.fail(f"{url} never answered 200:\n{log.read_text()[-4000:]}")


def test_installed_daemon_places_the_seed_call_as_sipxcc_user(installed):
    """Debian's twistd3 and Twisted 22.4 run the seed's click-to-call through Kamailio."""
    sip_port, https_port, http_port, proxy_port, phone_port = free_ports(5)
    with tempfile.TemporaryDirectory(prefix="sipxcc-deb-") as scratch:
        directory = pathlib.Path(scratch)
        config = _write_test_config(directory, sip_port, https_port, http_port, proxy_port)
        phone = SippPhone("refer_transferee", phone_port, directory / "sipp")
        proxy = Kamailio(directory / "kamailio", proxy_port, demo_ha1s(),
                         {"user1": phone.contact}, f"127.0.0.1:{sip_port}",
                         aliases=demo_aliases())
        log = directory / "daemon.log"
        with log.open("wb") as output, proxy, phone:
            daemon = subprocess.Popen(
                ["runuser", "-u", "sipxcc", "--", "twistd3", "-n", "--pidfile=",
                 "sipxcc", "--config", str(config)],
                env=SYSTEM_ENV, cwd=scratch, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                base = f"https://127.0.0.1:{https_port}"
                _wait_for_health(f"{base}/health", daemon, log, time.monotonic() + 30)
                post = run("curl", "-k", "-s", "-X", "POST", "-u", "user1:123",
                           f"{base}/callcontroller/user1/user2")
                assert "<error-flag>OK</error-flag>" in post.stdout
                assert phone.wait(20) == 0, phone.errors()
                status = run("curl", "-k", "-s", "-u", "user1:123",
                             f"{base}/callcontroller/user1/user2")
                assert "<method>NOTIFY</method>\n\t<status-line>SIP/2.0 200 OK" in status.stdout
            finally:
                # runuser passes SIGTERM on to twistd; the group is only killed if it hangs.
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(daemon.pid, signal.SIGKILL)
                    daemon.wait()
        assert "Traceback" not in log.read_text()


def test_purge_removes_everything_but_the_system_user(installed):
    run("apt-get", "purge", "-y", "sipxcc")
    assert not _sipxcc_installed()
    package_dir = PLUGIN.parents[2] / "sipxcc"
    for path in (PLUGIN, package_dir, CONFIG, CONFIG.parent, STATE_DIR, UNIT):
        assert not path.exists(), path
    # The trigger fires on removal too: the rebuilt cache forgets the plugin.
    result = run("twistd3", "--help")
    assert not re.search(r"^\s+sipxcc\s", result.stdout, re.MULTILINE)
