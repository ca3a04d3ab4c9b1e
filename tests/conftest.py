"""Fixtures shared by every test: where the project and its demo data live."""

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_VALIDUSERS = PROJECT_ROOT / "etc" / "validusers.xml"
DEMO_CREDENTIALS = PROJECT_ROOT / "etc" / "credential.xml"


@pytest.fixture
def project_root() -> Path:
    """The checkout's root directory."""
    return PROJECT_ROOT


@pytest.fixture
def demo_validusers() -> Path:
    """etc/validusers.xml: user1..user4, aliases 201..204, PIN 123, passwords pass1..pass4."""
    return DEMO_VALIDUSERS


@pytest.fixture
def demo_credentials() -> Path:
    """etc/credential.xml: the same users in sipX credential.xml form."""
    return DEMO_CREDENTIALS
