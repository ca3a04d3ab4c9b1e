"""Digest client (RFC 2617, RFC 7616) answering 401/407 challenges from a stored HA1."""

import hashlib

import pytest

from sipxcc.sip.digest import Challenge, DigestCredentials, authorization, make_cnonce


def fields(header: str) -> dict[str, str]:
    assert header.startswith("Digest ")
    out = {}
    for part in header[len("Digest "):].split(", "):
        name, _, value = part.partition("=")
        out[name] = value.strip('"')
    return out


def test_rfc2617_section_3_5_example():
    challenge = Challenge.parse(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    ha1 = hashlib.md5(b"Mufasa:testrealm@host.com:Circle Of Life").hexdigest()
    value = authorization(challenge, DigestCredentials("Mufasa", {"MD5": ha1}), "GET",
                          "/dir/index.html", 1, "0a4f113b")
    got = fields(value)
    assert got["response"] == "6629fae49393a05397450978507c4ef1"
    assert (got["qop"], got["nc"], got["cnonce"]) == ("auth", "00000001", "0a4f113b")
    assert got["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert (got["username"], got["realm"], got["uri"]) == (
        "Mufasa", "testrealm@host.com", "/dir/index.html")


RFC7616 = ('Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
           'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
           'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize("alg, hasher, expected", [
    ("MD5", hashlib.md5, "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", hashlib.sha256,
     "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")])
def test_rfc7616_section_3_9_1_examples(alg, hasher, expected):
    ha1 = hasher(b"Mufasa:http-auth@example.org:Circle of Life").hexdigest()
    creds = DigestCredentials("Mufasa", {alg: ha1})
    value = authorization(Challenge.parse(RFC7616.format(alg=alg)), creds, "GET",
                          "/dir/index.html", 1, CNONCE)
    assert fields(value)["response"] == expected
    assert fields(value)["algorithm"] == alg


def test_sess_variant_is_derived_from_the_plain_ha1():
    ha1 = hashlib.md5(b"u:r:p").hexdigest()
    challenge = Challenge.parse('Digest realm="r", nonce="n", algorithm=MD5-sess, qop=auth')
    value = authorization(challenge, DigestCredentials("u", {"MD5": ha1}), "INVITE",
                          "sip:b@r", 2, "c")
    sess = hashlib.md5(f"{ha1}:n:c".encode()).hexdigest()
    ha2 = hashlib.md5(b"INVITE:sip:b@r").hexdigest()
    want = hashlib.md5(f"{sess}:n:00000002:c:auth:{ha2}".encode()).hexdigest()
    assert fields(value)["response"] == want


def test_rfc2069_when_no_qop_is_offered():
    ha1 = hashlib.md5(b"u:r:p").hexdigest()
    value = authorization(Challenge.parse("Digest realm=r,nonce=n"),
                          DigestCredentials("u", {"md5": ha1}), "REGISTER", "sip:r", 1, "c")
    ha2 = hashlib.md5(b"REGISTER:sip:r").hexdigest()
    got = fields(value)
    assert got["response"] == hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert "qop" not in got and "nc" not in got and "opaque" not in got


def test_unsupported_cases_give_none():
    creds = DigestCredentials("u", {"MD5": "0" * 32})
    assert authorization(Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-256'),
                         creds, "INVITE", "sip:x", 1, "c") is None
    assert authorization(Challenge.parse('Digest realm="r", nonce="n", algorithm=AKAv1-MD5'),
                         creds, "INVITE", "sip:x", 1, "c") is None
    assert authorization(Challenge.parse('Digest realm="r", nonce="n", qop="auth-int"'),
                         creds, "INVITE", "sip:x", 1, "c") is None


def test_challenge_parsing_is_tolerant():
    c = Challenge.parse('digest   realm = "sip.example.com" ,nonce="a\\"b",  stale=TRUE,'
                        ' qop="auth", algorithm=md5, domain="sip:example.com" ,')
    assert (c.realm, c.nonce, c.stale, c.qop, c.algorithm) == (
        "sip.example.com", 'a"b', True, ("auth",), "md5")
    assert Challenge.parse('Digest realm="r", nonce="n"').algorithm == "MD5"
    assert Challenge.parse('Digest realm="r", nonce="n"').stale is False


def test_quotes_in_username_are_escaped():
    creds = DigestCredentials('a"b', {"MD5": "0" * 32})
    value = authorization(Challenge.parse('Digest realm="r", nonce="n", qop=auth'),
                          creds, "INVITE", "sip:x", 1, make_cnonce())
    assert 'username="a\\"b"' in value


@pytest.mark.parametrize("text", [
    "", "Basic realm=x", "Digest", 'Digest realm="r"', 'Digest nonce="n"',
    'Digest realm="r", nonce="n", garbage', 'Digest realm="unterminated, nonce=n'])
def test_garbage_challenges(text):
    with pytest.raises(ValueError):
        Challenge.parse(text)
