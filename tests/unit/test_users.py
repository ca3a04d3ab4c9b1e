"""sipxcc.users: both sipX directory formats, lookups, and reloads polled on a Clock."""

import hashlib
import os

import pytest
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from sipxcc.users import DirectoryError, UserDirectory, parse_directory

NS = "http://www.sipfoundry.org/sipX/schema/xml/validusers-00-00"


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def validusers(*names):
    users = "".join(
        f"<user><identity>{name}@sipx.test</identity><userName>{name}</userName>"
        f"<aliases><alias>{alias}</alias></aliases>"
        f"<pintoken>{md5(name + ':sipx.test:123')}</pintoken></user>"
        for name, alias in names
    )
    return f'<?xml version="1.0"?>\n<validusers xmlns="{NS}">{users}</validusers>\n'


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def messages(events):
    return [formatEvent(event) for event in events]


def write(path, text, mtime_step=0):
    path.write_text(text)
    if mtime_step:
        # Make the change visible even on file systems with a coarse mtime.
        status = os.stat(path)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + mtime_step))


def test_demo_validusers(demo_validusers):
    directory = UserDirectory(str(demo_validusers), Clock())
    directory.load()
    user1 = directory.lookup("user1")
    assert user1.identity == "user1@sipx.test"
    assert user1.aliases == ("201",)
    assert user1.display_name == "User One"
    assert user1.pintoken == md5("user1:sipx.test:123")
    assert user1.passtoken == md5("user1:sipx.test:pass1")
    assert user1.names == frozenset({"user1", "201", "user1@sipx.test"})
    assert directory.lookup("201") is user1
    assert directory.lookup("user1@sipx.test") is user1
    assert directory.lookup("user4").passtoken == md5("user4:sipx.test:pass4")
    assert directory.lookup("204").user_name == "user4"
    assert directory.lookup("user5") is None
    assert directory.lookup("User1") is None
    assert len(directory) == 4


def test_demo_credentials_match_the_validusers(demo_credentials, demo_validusers):
    credentials = {user.user_name: user for user in parse_directory(str(demo_credentials))}
    for user in parse_directory(str(demo_validusers)):
        twin = credentials[user.user_name]
        assert (twin.identity, twin.pintoken, twin.passtoken) == (
            user.identity, user.pintoken, user.passtoken)


def test_credential_format(tmp_path):
    path = tmp_path / "credential.xml"
    write(path, """<?xml version="1.0"?>
<items type="credential" xmlns="http://www.sipfoundry.org/sipX/schema/xml/credential-00-00">
  <item><uri>"Alice" &lt;sip:alice@pbx.example;transport=udp&gt;</uri><realm>pbx.example</realm>
    <userid>alice</userid><passtoken>ABCDEF0123456789ABCDEF0123456789</passtoken>
    <pintoken>0123456789abcdef0123456789abcdef</pintoken><authtype>DIGEST</authtype></item>
  <item><uri>sip:~~id~media@pbx.example</uri><realm>pbx.example</realm>
    <userid>~~id~media</userid><passtoken>ffffffffffffffffffffffffffffffff</passtoken>
    <authtype>DIGEST</authtype></item>
</items>""")
    directory = UserDirectory(str(path), Clock())
    directory.load()
    alice = directory.lookup("alice")
    assert alice.identity == "alice@pbx.example"
    assert alice.passtoken == "abcdef0123456789abcdef0123456789"
    assert alice.aliases == ()
    assert directory.lookup("alice@pbx.example") is alice
    assert directory.lookup("~~id~media").pintoken is None


@pytest.mark.parametrize("text, problem", [
    ("<validusers><user><identity>a@b", "malformed XML"),
    ("", "malformed XML"),
    ("<users/>", "neither <validusers>"),
    ('<items type="other"/>', "neither <validusers>"),
    ("<validusers><user><userName>a</userName></user></validusers>", "has no <identity>"),
    ('<items type="credential"><item><uri>tel:123</uri><userid>a</userid></item></items>',
     "not sip:user@domain"),
    ('<!DOCTYPE v [<!ENTITY x "y">]><validusers/>', "DOCTYPE is not allowed"),
])
def test_bad_files_raise_one_line_errors(tmp_path, text, problem):
    path = tmp_path / "users.xml"
    write(path, text)
    with pytest.raises(DirectoryError) as caught:
        UserDirectory(str(path), Clock()).load()
    message = str(caught.value)
    assert message.startswith(str(path) + ": ")
    assert problem in message
    assert "\n" not in message


def test_external_entities_are_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top-secret")
    path = tmp_path / "users.xml"
    write(path, f'<!DOCTYPE v [<!ENTITY x SYSTEM "file://{secret}">]>'
                f'<validusers><user><identity>a@b</identity><userName>&x;</userName>'
                f'</user></validusers>')
    with pytest.raises(DirectoryError):
        parse_directory(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(DirectoryError, match="cannot read user directory"):
        UserDirectory(str(tmp_path / "nope.xml"), Clock()).load()


def test_user_names_win_over_other_users_aliases(tmp_path, logged):
    path = tmp_path / "users.xml"
    write(path, validusers(("user1", "user2"), ("user2", "202")))
    directory = UserDirectory(str(path), Clock())
    directory.load()
    assert directory.lookup("user2").identity == "user2@sipx.test"
    assert any("already belongs to" in text for text in messages(logged))


def test_reload_on_change(tmp_path):
    path = tmp_path / "users.xml"
    write(path, validusers(("user1", "201")))
    clock = Clock()
    directory = UserDirectory(str(path), clock, interval=2.0)
    directory.load()
    directory.start()
    write(path, validusers(("user1", "201"), ("user9", "209")), mtime_step=10**9)
    clock.advance(1.9)
    assert directory.lookup("user9") is None
    clock.advance(0.2)
    assert directory.lookup("209").user_name == "user9"
    directory.stop()
    write(path, validusers(("user8", "208")), mtime_step=2 * 10**9)
    clock.advance(10)
    assert directory.lookup("user8") is None
    assert clock.getDelayedCalls() == []


def test_bad_reload_keeps_the_previous_directory_and_logs_why(tmp_path, logged):
    path = tmp_path / "users.xml"
    write(path, validusers(("user1", "201")))
    clock = Clock()
    directory = UserDirectory(str(path), clock)
    directory.load()
    directory.start()
    write(path, validusers(("user1", "201"))[:60], mtime_step=10**9)  # half-written
    clock.advance(2)
    assert directory.lookup("201").user_name == "user1"
    warnings = [text for text in messages(logged) if "keeping the previous" in text]
    assert len(warnings) == 1 and "malformed XML" in warnings[0]
    clock.advance(10)  # the same bad file is not re-parsed and re-logged every poll
    assert len([text for text in messages(logged) if "keeping the previous" in text]) == 1
    write(path, validusers(("user2", "202")), mtime_step=2 * 10**9)
    clock.advance(2)
    assert directory.lookup("user1") is None
    assert directory.lookup("202").user_name == "user2"
    directory.stop()


def test_a_vanished_file_keeps_the_previous_directory(tmp_path, logged):
    path = tmp_path / "users.xml"
    write(path, validusers(("user1", "201")))
    clock = Clock()
    directory = UserDirectory(str(path), clock)
    directory.load()
    directory.start()
    path.unlink()
    clock.advance(2)
    clock.advance(2)
    assert directory.lookup("user1") is not None
    assert len([text for text in messages(logged) if "cannot read" in text]) == 1
    directory.stop()
