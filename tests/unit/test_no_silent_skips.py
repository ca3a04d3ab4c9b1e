"""tests/conftest.py turns skips into failures under CI=true or SIPXCC_NO_SKIP=1.

Each case runs pytest on small files outside the tree with the project's conftest loaded as
a plugin, and reads its exit status and summary as a developer would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ALLOWED_SKIPS, PROJECT_ROOT

CALLS = """
    import pytest

    @pytest.mark.skipif(True, reason="kamailio is not installed")
    def test_needs_kamailio():
        pass

    def test_needs_curl():
        pytest.skip("curl is not installed")

    @pytest.mark.xfail(reason="a known bug", strict=True)
    def test_known_bug():
        assert False
"""
MODULE = """
    import pytest

    pytest.importorskip("no_such_module_sipxcc_test")

    def test_property():
        pass
"""
NOT_PLUGINS = ("cacheprovider", "randomly", "twisted", "hypothesispytest", "timeout")


def run_pytest(tmp_path, files: dict[str, str], **env) -> subprocess.CompletedProcess:
    for name, source in files.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    environment = {k: v for k, v in os.environ.items() if k not in ("CI", "SIPXCC_NO_SKIP")}
    environment.update(env, PYTHONPATH=str(PROJECT_ROOT))
    disabled = [arg for name in NOT_PLUGINS for arg in ("-p", f"no:{name}")]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *disabled, "-p", "tests.conftest",
         "--rootdir", str(tmp_path), *files],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)


def summary(result) -> str:
    return result.stdout.strip().splitlines()[-1]


def test_skips_are_only_skips_by_default(tmp_path):
    result = run_pytest(tmp_path, {"test_calls.py": CALLS, "test_module.py": MODULE})
    assert (result.returncode, summary(result).split(" in ")[0]) == (
        0, "3 skipped, 1 xfailed"), result.stdout + result.stderr


@pytest.mark.parametrize("switch", [{"CI": "true"}, {"SIPXCC_NO_SKIP": "1"}])
def test_skipped_tests_fail_under_ci_or_make_test(tmp_path, switch):
    result = run_pytest(tmp_path, {"test_calls.py": CALLS}, **switch)
    assert (result.returncode, summary(result).split(" in ")[0]) == (
        1, "1 failed, 1 xfailed, 1 error"), result.stdout + result.stderr  # skipif: at setup
    assert "FAILED test_calls.py::test_needs_curl" in result.stdout
    assert "ERROR test_calls.py::test_needs_kamailio" in result.stdout
    assert "kamailio is not installed" in result.stdout
    assert "curl is not installed" in result.stdout


def test_a_skipped_module_is_a_collection_error_under_make_test(tmp_path):
    result = run_pytest(tmp_path, {"test_module.py": MODULE}, SIPXCC_NO_SKIP="1")
    assert (result.returncode, summary(result).split(" in ")[0]) == (
        2, "1 error"), result.stdout + result.stderr
    assert "no_such_module_sipxcc_test" in result.stdout


def test_allowed_skips_name_existing_tests_with_a_reason():
    for nodeid, reason in ALLOWED_SKIPS.items():
        path, _, name = nodeid.partition("::")
        source = (PROJECT_ROOT / path).read_text()
        assert not name or f"def {name}(" in source, nodeid
        assert len(reason) > 20, nodeid
