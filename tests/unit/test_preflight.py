"""The unit's start condition: skipped with one line until the user directory exists."""

from __future__ import annotations

from pathlib import Path

from sipxcc.preflight import NOT_CONFIGURED, main

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "sipxcc.ini"


def write(tmp_path: Path, directory: str, domain: str = "sipx.test") -> Path:
    config = tmp_path / "sipxcc.ini"
    config.write_text(f"[sip]\ndomain = {domain}\nproxy = sip:127.0.0.1:5060;lr\n"
                      f"[users]\ndirectory = {directory}\n")
    return config


def test_a_missing_user_directory_skips_the_start_with_one_line_naming_what_to_edit(
        tmp_path, capsys):
    config = write(tmp_path, "absent/validusers.xml")
    assert main([str(config)]) == NOT_CONFIGURED
    out = capsys.readouterr().out
    assert out == (f"sipxcc not started: {config}: users.directory: "
                   f"{tmp_path / 'absent' / 'validusers.xml'} does not exist; point "
                   f"users.directory (and sip.domain, sip.proxy) at this sipX host in "
                   f"{config}, then run: systemctl restart sipxcc\n")


def test_an_existing_user_directory_lets_the_daemon_start(tmp_path, capsys):
    (tmp_path / "validusers.xml").write_text("<validusers/>")
    assert main([str(write(tmp_path, "validusers.xml"))]) == 0
    assert capsys.readouterr().out == ""


def test_a_broken_config_is_left_to_the_daemon_to_report(tmp_path, capsys):
    config = write(tmp_path, "absent.xml", domain="")
    assert main([str(config)]) == 0
    assert capsys.readouterr().out == ""


def test_the_shipped_example_is_not_configured_while_its_user_directory_is_missing(
        tmp_path, capsys):
    absent = tmp_path / "sipxpbx" / "validusers.xml"
    config = tmp_path / "sipxcc.ini"
    config.write_text(EXAMPLE.read_text().replace("/etc/sipxpbx/validusers.xml", str(absent)))
    assert main([str(config)]) == NOT_CONFIGURED
    assert f"users.directory: {absent} does not exist" in capsys.readouterr().out
