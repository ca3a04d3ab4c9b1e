"""`make demo` works as the README promises: a real click-to-call and its status."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.daemon import PROJECT_ROOT, twistd_env


def test_demo_shows_a_complete_click_to_call():
    out = subprocess.run([sys.executable, "-m", "tests.integration.demo", "--once"],
                         cwd=PROJECT_ROOT, env=twistd_env(), capture_output=True, text=True,
                         timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<error-flag>OK</error-flag>" in out.stdout  # the POST
    assert "<status-line>SIP/2.0 180 Ringing</status-line>" in out.stdout
    assert "<method>NOTIFY</method>\n\t<status-line>SIP/2.0 200 OK" in out.stdout
