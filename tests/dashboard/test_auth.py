"""cxr/dashboard/auth.py: local mode, the identity a decision is recorded under, the trainer
role from a list or from a claim, and secrets that are refused with the key named."""
from __future__ import annotations

import base64
import random
import tomllib
from pathlib import Path
from secrets import token_hex, token_urlsafe

import pytest

from cxr.dashboard.auth import (LOCAL_VIEWER, MAKE_SECRET, AuthConfigError, AuthSettings, claim,
                                cookie_secret_problem, host_name, host_problem, identity,
                                is_loopback, is_loopback_name, load_settings, served_locally)

REPO = Path(__file__).resolve().parents[2]

AUTH = {"redirect_uri": "https://cxr.example/oauth2callback",
        "cookie_secret": token_hex(32),
        "client_id": "cxr", "client_secret": "c",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}


BASE = {k: AUTH[k] for k in ("redirect_uri", "cookie_secret")}  # no provider


def settings(**cxr) -> AuthSettings:
    return AuthSettings.from_secrets({"auth": AUTH, "cxr": cxr})


def user(**claims) -> dict:
    return {"is_logged_in": True, **claims}


def test_local_mode_without_an_auth_section():
    for secrets in ({}, {"cxr": {"trainers": ["a@x.org"]}}, {"auth": {}}):
        s = AuthSettings.from_secrets(secrets)
        assert not s.enabled
        # anyone, signed in or not, is the one local user: typed name, may train
        assert s.viewer({}) == s.viewer(user(email="b@x.org")) == LOCAL_VIEWER
    assert LOCAL_VIEWER.local and LOCAL_VIEWER.can_train and LOCAL_VIEWER.identity is None


def test_sign_in_is_required_when_auth_is_configured():
    s = settings()
    assert s.enabled and s.providers == (None,)
    assert s.viewer({}) is None
    assert s.viewer({"is_logged_in": False, "email": "a@x.org"}) is None
    v = s.viewer(user(email="a@x.org", sub="123", name="Dr A"))
    assert (v.identity, v.name, v.local, v.can_train) == ("a@x.org", "Dr A", False, False)


def test_identity_is_the_email_else_the_subject():
    assert identity({"email": "a@x.org", "sub": "123"}) == "a@x.org"
    assert identity({"sub": "123"}) == "123"
    assert identity({"email": "  ", "sub": "123"}) == "123"
    # an address the provider has not verified could be anyone's
    assert identity({"email": "boss@x.org", "email_verified": False, "sub": "123"}) == "123"
    assert identity({"email": "a@x.org", "email_verified": True, "sub": "1"}) == "a@x.org"
    with pytest.raises(AuthConfigError, match="neither an e-mail address nor a subject"):
        identity({"name": "nobody"})


def test_trainer_role_from_the_list():
    s = settings(trainers=["Lead@X.org", "sub-42"])
    assert s.viewer(user(email="lead@x.org", sub="1")).can_train  # case-insensitive e-mail
    assert s.viewer(user(email="other@x.org", sub="sub-42")).can_train  # or by subject
    assert not s.viewer(user(email="other@x.org", sub="7")).can_train
    # an unverified address does not grant the role
    assert not s.viewer(user(email="lead@x.org", email_verified=False, sub="7")).can_train


def test_trainer_role_from_a_claim():
    s = settings(trainer_claim="groups", trainer_value="cxr-trainers")
    assert s.viewer(user(sub="1", groups=["radiology", "cxr-trainers"])).can_train
    assert s.viewer(user(sub="1", groups="cxr-trainers")).can_train  # a single value
    assert not s.viewer(user(sub="1", groups=["radiology"])).can_train
    assert not s.viewer(user(sub="1")).can_train  # no such claim
    nested = settings(trainer_claim="realm_access.roles", trainer_value="trainer")
    assert nested.viewer(user(sub="1", realm_access={"roles": ["trainer"]})).can_train
    assert not nested.viewer(user(sub="1", realm_access={"roles": ["viewer"]})).can_train
    assert claim({"a": {"b": 1}}, "a.b") == 1 and claim({"a": 1}, "a.b") is None


def test_role_rule_says_who_trains():
    assert "nobody" in settings().role_rule
    assert "1 user(s)" in settings(trainers=["a@x.org"]).role_rule
    assert "'groups' claim holds 'cxr-trainers'" in settings(
        trainer_claim="groups", trainer_value="cxr-trainers").role_rule


def test_named_providers():
    auth = dict(BASE)
    auth["hospital"] = {k: AUTH[k] for k in ("client_id", "client_secret", "server_metadata_url")}
    auth["client_kwargs"] = {"prompt": "login"}  # a table that is not a provider
    assert AuthSettings.from_secrets({"auth": auth}).providers == ("hospital",)


@pytest.mark.parametrize("secrets, message", [
    ({"auth": {**AUTH, "cookie_secret": ""}}, r"\[auth\]: cookie_secret is missing"),
    ({"auth": {k: v for k, v in AUTH.items() if k != "redirect_uri"}}, "redirect_uri"),
    ({"auth": {**AUTH, "client_secret": ""}}, r"\[auth\]: client_secret missing"),
    ({"auth": {**BASE}}, "no identity provider"),
    ({"auth": {**BASE, "my_idp": {"client_id": "a", "client_secret": "b",
                                  "server_metadata_url": "c"}}}, "may not contain '_'"),
    ({"auth": AUTH, "cxr": {"trainers": "a@x.org"}}, "trainers must be a list"),
    ({"auth": AUTH, "cxr": {"trainer": ["a@x.org"]}}, "unknown key.*trainer"),
    ({"auth": AUTH, "cxr": {"trainer_claim": "groups"}}, "go together"),
])
def test_unusable_secrets_are_refused_naming_the_key(secrets, message):
    with pytest.raises(AuthConfigError, match=message):
        AuthSettings.from_secrets(secrets)


def test_the_shipped_example_secrets_are_valid_once_given_a_generated_cookie_secret():
    example = tomllib.loads((REPO / ".streamlit" / "secrets.example.toml").read_text())
    # as shipped, its cookie_secret is known to everyone: refused, saying how to make one
    with pytest.raises(AuthConfigError, match="cookie_secret is a placeholder") as refused:
        AuthSettings.from_secrets(example)
    assert MAKE_SECRET in str(refused.value)
    assert "secrets.token_hex(32)" in MAKE_SECRET
    example["auth"]["cookie_secret"] = token_hex(32)
    s = AuthSettings.from_secrets(example)
    assert s.enabled and s.providers == (None,) and s.trainers
    assert s.server_name == "cxr.hospital.example"  # the host of its redirect_uri


@pytest.mark.parametrize("secret, problem", [
    ("REPLACE-with-a-long-random-string", "placeholder"),
    ("change-me", "placeholder"), ("changeme", "placeholder"), ("secret", "placeholder"),
    ("xxx", "placeholder"), ("XXXXXXXX", "placeholder"),
    ("my-cookie-secret-" + "9f" * 40, "placeholder"),
    ("a-test-cookie-secret-of-more-than-32-characters", "placeholder"),
    ("s" * 32, "not a generated secret"),          # what these tests used to use
    ("hunter2 is my password!", "placeholder"),
    ("correct horse battery staple, typed", "looks typed"),
    (token_hex(31), "too short (62 characters; at least 64"),   # 31 bytes
    (token_urlsafe(31)[:42], "too short (42 characters; at least 43"),
    ("a" * 64, "repeats itself"), ("0123456789abcdef" * 4, "repeats itself"),
    ("deadbeef" * 8, "repeats itself"), ("Xy1" * 20, "repeats itself"),
    (token_hex(16) * 2, "repeats itself"),           # 16 random bytes written twice
])
def test_a_known_or_weak_cookie_secret_is_refused(secret, problem):
    assert problem in (cookie_secret_problem(secret) or "accepted"), secret
    with pytest.raises(AuthConfigError, match="cookie_secret .*Make one with: python -c"):
        AuthSettings.from_secrets({"auth": {**AUTH, "cookie_secret": secret}})


def test_generated_cookie_secrets_are_accepted():
    """32 random bytes or more in the forms generators write: hex (token_hex, openssl rand
    -hex), URL-safe base64 (token_urlsafe) and standard base64 with padding (openssl rand
    -base64). Seeded, so a failure reproduces; 1000 draws of each."""
    rng = random.Random(18)
    for _ in range(1000):
        for n in (32, 48, 64):
            raw = rng.randbytes(n)
            for secret in (raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(),
                           base64.urlsafe_b64encode(raw).decode().rstrip("=")):
                assert cookie_secret_problem(secret) is None, secret
    assert cookie_secret_problem(token_hex(32)) is None
    assert cookie_secret_problem(f"  {token_urlsafe(32)}\n") is None  # TOML multi-line strings


def test_host_name_of_a_host_header():
    assert host_name("127.0.0.1:8501") == "127.0.0.1"
    assert host_name("[::1]:8501") == "::1" and host_name("[::1]") == "::1"
    assert host_name("LocalHost.:8501") == "localhost"  # case and the trailing dot
    assert host_name("cxr.hospital.example") == "cxr.hospital.example"
    for bad in (None, "", "a@localhost", "localhost:99999", "localhost:x", "localhost/x",
                "[::1", "localhost#.evil.example", "localhost#", "local\thost",
                "local\nhost", "local host", "localhost\x00.evil.example"):
        assert host_name(bad) is None, repr(bad)


def test_is_loopback_name():
    for name in ("localhost", "app.localhost", "127.0.0.1", "127.8.9.1", "::1"):
        assert is_loopback_name(name), name
    for name in ("localhost.evil.example", "evillocalhost", "0.0.0.0", "10.0.0.1",
                 "127.0.0.1.nip.io", "cxr.hospital.example", "localhos"):
        assert not is_loopback_name(name), name


def test_local_mode_answers_only_to_loopback_host_names():
    local = AuthSettings.from_secrets({})
    for host in ("localhost:8501", "127.0.0.1:8501", "[::1]:8501", "cxr.localhost:8501",
                 "localhost", None):  # None: no HTTP request (AppTest)
        assert host_problem(local, host) is None, host
    for host in ("a@localhost:8501", "localhost/x", "localhost,evil.example"):  # malformed
        assert "this request's host name" in host_problem(local, host), host
    for host in ("evil.example:8501", "evil.example", "10.1.2.3:8501", "0.0.0.0:8501",
                 "localhost.evil.example", "", "cxr.hospital.example"):
        problem = host_problem(local, host)
        assert problem and "single-user local mode" in problem and "DNS rebinding" in problem
        assert (f"the host name {host!r}" if host else "this request's host name") in problem
    # the requester's header is echoed only when it is a plain host name: never Markdown
    problem = host_problem(local, "x](http://evil.example/a.png)![y")
    assert "evil.example" not in problem and "this request's host name" in problem


def test_with_sign_in_the_host_of_redirect_uri_is_answered_too():
    s = settings()  # redirect_uri https://cxr.example/oauth2callback
    assert s.server_name == "cxr.example"
    for host in ("cxr.example", "CXR.example:443", "127.0.0.1:8501", "localhost:8501"):
        assert host_problem(s, host) is None, host
    for host in ("evil.example", "cxr.example.evil.example", "www.cxr.example"):
        problem = host_problem(s, host)
        assert problem and "Open it at 'cxr.example'" in problem, host
    # an IPv6 redirect_uri
    v6 = AuthSettings.from_secrets({"auth": {**AUTH, "redirect_uri":
                                             "https://[2001:db8::5]:8443/oauth2callback"}})
    assert host_problem(v6, "[2001:db8::5]:8443") is None
    assert host_problem(v6, "[2001:db8::6]:8443")


def test_a_redirect_uri_without_a_host_is_refused():
    for uri in ("oauth2callback", "/oauth2callback", "https:///oauth2callback"):
        with pytest.raises(AuthConfigError, match="redirect_uri must be the app's address"):
            AuthSettings.from_secrets({"auth": {**AUTH, "redirect_uri": uri}})


def test_is_loopback():
    for address in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert is_loopback(address), address
    for address in ("", None, "0.0.0.0", "::", "10.1.2.3", "cxr.hospital.example"):
        assert not is_loopback(address), address


def test_served_locally_needs_a_loopback_binding_and_a_loopback_host():
    assert served_locally("127.0.0.1", "127.0.0.1:8501")
    assert served_locally("127.0.0.1", "localhost:8501") and served_locally("::1", "[::1]:8501")
    assert served_locally("127.0.0.1", None)  # no request headers (tests)
    # a reverse proxy on the same host forwards to 127.0.0.1 with the public name
    assert not served_locally("127.0.0.1", "cxr.hospital.example")
    assert not served_locally("0.0.0.0", "127.0.0.1:8501")


def test_a_secrets_file_that_did_not_load_never_means_no_sign_in(tmp_path):
    broken = tmp_path / "secrets.toml"
    assert not load_settings(None, [broken]).enabled  # no file at all: local mode
    broken.write_text("[auth\nredirect_uri = ")
    with pytest.raises(AuthConfigError, match="secrets.toml exists but could not be read"):
        load_settings(None, [tmp_path / "absent.toml", broken])
    assert load_settings({"auth": AUTH}, [broken]).enabled
