"""Who is using the dashboard and what they may do: the sign-in settings read from Streamlit's
secrets, the identity a decision is recorded under, and the trainer role. No Streamlit here:
app_ui.py passes in `st.secrets` and `st.user` as plain dicts.

    settings = AuthSettings.from_secrets({"auth": {...}, "cxr": {"trainers": ["a@x.org"]}})
    viewer = settings.viewer({"is_logged_in": True, "email": "a@x.org", "sub": "8f2c"})
    viewer.identity, viewer.can_train          # ("a@x.org", True)

With an [auth] section (Streamlit's OpenID Connect settings) everyone must sign in; trainers,
named in `[cxr] trainers` or by an ID-token claim (`[cxr] trainer_claim`, `trainer_value`), may
also launch and stop training and evaluation. Without one the app is in single-user local mode:
nobody signs in, the reviewer types a name, and the one local user may do everything.

The cookie secret must be a generated one (cookie_secret_problem), and the app answers only to
the host names it is meant to be reached under (host_problem): loopback names, and with
sign-in the host of redirect_uri; any other Host header is a DNS-rebinding page or a mistake.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SECRETS = ".streamlit/secrets.toml"
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")  # what Streamlit needs
CXR_KEYS = ("trainers", "trainer_claim", "trainer_value")
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_hex(32))"'
# Words people put in a secret they mean to replace; none may appear in a cookie_secret (the
# example file's value starts with REPLACE). Six letters or more: a generated base64 secret
# holds one by chance with odds below 1e-6.
PLACEHOLDER_WORDS = ("replace", "change", "example", "secret", "password", "placeholder",
                     "cookie", "random", "default", "insert")


class AuthConfigError(ValueError):
    """The secrets say something the dashboard cannot act on; the message names the key."""


@dataclass(frozen=True)
class Viewer:
    """The person using this browser session."""
    identity: str | None  # what decisions are recorded under; None in local mode (typed name)
    name: str             # for display
    can_train: bool       # may launch, stop and resume training and evaluation

    @property
    def local(self) -> bool:
        return self.identity is None


LOCAL_VIEWER = Viewer(identity=None, name="local user", can_train=True)


@dataclass(frozen=True)
class AuthSettings:
    enabled: bool                           # an [auth] section exists: sign-in is required
    providers: tuple[str | None, ...] = ()  # st.login() arguments; None = the [auth] provider
    trainers: frozenset[str] = frozenset()  # e-mail addresses or subjects, lower case
    trainer_claim: str | None = None        # ID-token claim (dotted path for nested claims)
    trainer_value: str | None = None        # the value of that claim (or one in its list)
    server_name: str | None = None          # redirect_uri's host: the app's public name

    @classmethod
    def from_secrets(cls, secrets: Mapping) -> "AuthSettings":
        """Read [auth] (Streamlit's own keys) and [cxr] (the roles); refuse what is unusable."""
        auth = secrets.get("auth")
        if not auth:
            return cls(enabled=False)
        if not isinstance(auth, Mapping):
            raise AuthConfigError(f"{SECRETS}: auth must be a table ([auth])")
        for key in ("redirect_uri", "cookie_secret"):
            if not auth.get(key):
                raise AuthConfigError(f"{SECRETS} [auth]: {key} is missing")
        if problem := cookie_secret_problem(str(auth["cookie_secret"])):
            raise AuthConfigError(f"{SECRETS} [auth]: cookie_secret {problem}: anyone who "
                                  "knows or guesses it can sign a session cookie and be any "
                                  f"user. Make one with: {MAKE_SECRET}")
        server_name = host_name(urlsplit(str(auth["redirect_uri"])).netloc)
        if server_name is None:
            raise AuthConfigError(f"{SECRETS} [auth]: redirect_uri must be the app's address "
                                  "plus /oauth2callback, e.g. "
                                  f"https://cxr.hospital.example/oauth2callback, not "
                                  f"{auth['redirect_uri']!r}")
        cxr = secrets.get("cxr") or {}
        if not isinstance(cxr, Mapping):
            raise AuthConfigError(f"{SECRETS}: cxr must be a table ([cxr])")
        unknown = sorted(set(cxr) - set(CXR_KEYS))
        if unknown:
            raise AuthConfigError(f"{SECRETS} [cxr]: unknown key(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(CXR_KEYS)}")
        claim, value = cxr.get("trainer_claim"), cxr.get("trainer_value")
        if bool(claim) != bool(value):
            raise AuthConfigError(f"{SECRETS} [cxr]: trainer_claim and trainer_value go "
                                  "together (e.g. trainer_claim = \"groups\", "
                                  "trainer_value = \"cxr-trainers\")")
        return cls(enabled=True, providers=_providers(auth), trainers=_trainers(cxr),
                   trainer_claim=str(claim) if claim else None,
                   trainer_value=str(value) if value else None, server_name=server_name)

    def viewer(self, user: Mapping) -> Viewer | None:
        """The session's viewer from `st.user`; None when sign-in is required and missing."""
        if not self.enabled:
            return LOCAL_VIEWER
        if user.get("is_logged_in") is not True:
            return None
        who = identity(user)
        return Viewer(identity=who, name=str(user.get("name") or who),
                      can_train=self.is_trainer(user))

    def is_trainer(self, user: Mapping) -> bool:
        """Named in `trainers` (by verified e-mail or by subject), or holding the claim."""
        names = {str(user.get("sub") or "").lower(), (_verified_email(user) or "").lower()}
        if self.trainers & (names - {""}):
            return True
        if self.trainer_claim is None:
            return False
        found = claim(user, self.trainer_claim)
        values = found if isinstance(found, (list, tuple, set)) else [found]
        return self.trainer_value in {str(v) for v in values if v is not None}

    @property
    def role_rule(self) -> str:
        """Who has the trainer role, in words (for the Train page's read-only notice)."""
        rules = []
        if self.trainers:
            rules.append(f"the {len(self.trainers)} user(s) in [cxr] trainers")
        if self.trainer_claim:
            rules.append(f"users whose {self.trainer_claim!r} claim holds "
                         f"{self.trainer_value!r}")
        return " and ".join(rules) or f"nobody yet (set [cxr] trainers in {SECRETS})"


def load_settings(secrets: Mapping | None, files: Iterable[str | Path]) -> AuthSettings:
    """The settings from what Streamlit loaded (`secrets`; None when it loaded nothing) and its
    `secrets.files`. A secrets file that exists but did not load (a TOML syntax error) must
    never quietly mean "no sign-in": that would open the app to whoever reaches it."""
    if secrets is None:
        broken = [str(f) for f in files if Path(f).is_file()]
        if broken:
            raise AuthConfigError(f"{broken[0]} exists but could not be read (a TOML syntax "
                                  "error?); the server's log says why")
        secrets = {}
    return AuthSettings.from_secrets(secrets)


def identity(user: Mapping) -> str:
    """What a signed-in user's decisions are recorded under: the e-mail address, unless the
    provider says it is unverified, else the subject (`sub`, unique per provider)."""
    who = _verified_email(user) or str(user.get("sub") or "").strip()
    if not who:
        raise AuthConfigError("the identity provider's token has neither an e-mail address "
                              "nor a subject (sub); add the 'email' scope or claim")
    return who


def claim(user: Mapping, path: str):
    """A claim by name; a dotted path reaches nested claims (Keycloak's realm_access.roles)."""
    value = user
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def is_loopback(address: str | None) -> bool:
    """Whether a server bound to `address` is reachable from this machine only. An empty
    address means every interface."""
    if not address:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def served_locally(address: str | None, host_header: str | None) -> bool:
    """Whether the app is bound to a loopback address and this request was addressed to one:
    a reverse proxy forwarding to 127.0.0.1 still sends the public name in its Host header."""
    host = (host_header or "").strip()
    if host.startswith("["):  # [::1]:8501
        host = host[1:].split("]")[0]
    elif host.count(":") == 1:  # 127.0.0.1:8501
        host = host.split(":")[0]
    return is_loopback(address) and (not host or is_loopback(host))


def cookie_secret_problem(secret: str) -> str | None:
    """What is wrong with a cookie secret, or None for one that holds 32 random bytes or more.

    A string cannot prove it is random, so the rule is about the form a generator gives: 64 or
    more hex digits (secrets.token_hex(32), `openssl rand -hex 32`) or 43 or more base64
    characters (secrets.token_urlsafe(32), `openssl rand -base64 32`) mixing upper and lower
    case; no placeholder word; no long repeated stretch; not a few characters over and over.
    A generated secret of that length passes all of these (the odds against are below 1e-6)."""
    text = secret.strip()
    if any(word in text.lower() for word in PLACEHOLDER_WORDS) or re.fullmatch(r"[xX]+", text):
        return "is a placeholder"
    body = text.rstrip("=")
    if re.fullmatch(r"[0-9a-fA-F]+", body):
        need, distinct, stretch = 64, 10, 10  # 4 bits a digit; 64 random ones show ~15 of 16
    elif re.fullmatch(r"[A-Za-z0-9_\-+/]+", body):
        need, distinct, stretch = 43, 20, 8   # 6 bits a character; 43 show ~31 of the 64
        if body.lower() == body or body.upper() == body:
            return "is not a generated secret (base64 mixes upper and lower case)"
    else:
        return ("has characters outside hex and base64: it looks typed, not generated "
                "(32 random bytes as 64 hex digits are wanted)")
    if len(body) < need:
        return (f"is too short ({len(body)} characters; at least {need} are needed for 32 "
                "random bytes)")
    if len(set(body)) < distinct or _repeats(body, stretch):
        return "repeats itself: it is not random"
    return None


def _repeats(text: str, n: int) -> bool:
    """Whether some stretch of n characters occurs twice (random text almost never does)."""
    seen: set[str] = set()
    for i in range(len(text) - n + 1):
        if (part := text[i:i + n]) in seen:
            return True
        seen.add(part)
    return False


def host_name(host_header: str | None) -> str | None:
    """The host name of a Host header (or a URL's netloc), lower case, without the port, the
    brackets of an IPv6 address and a trailing dot; None when there is none or it is malformed
    (a user part, a path, a fragment, a bad port, white space or a control character inside:
    urlsplit would drop a tab or a newline and read `local<TAB>host` as localhost)."""
    if not host_header:
        return None
    text = host_header.strip()
    if "#" in text or any(c.isspace() or not c.isprintable() for c in text):
        return None
    try:
        parts = urlsplit(f"//{text}")
        _ = parts.port  # validates the port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.path or parts.query:
        return None
    return parts.hostname.lower().rstrip(".") or None


def is_loopback_name(name: str) -> bool:
    """localhost, *.localhost (RFC 6761: always this machine), or a loopback IP address."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_problem(settings: AuthSettings, host_header: str | None) -> str | None:
    """Why the app must not answer a request with this Host header, or None when it may.

    A loopback name always, and with sign-in the host of redirect_uri: a page under any other
    name reaches the app only by DNS rebinding (a web page the user visits re-points its own
    name at 127.0.0.1 and drives the app from the user's browser) or by a misconfigured proxy.
    `host_header` is None only for a script run without any HTTP request (Streamlit's AppTest
    has no headers at all); a request without a Host header (HTTP/1.0) passes "" and is
    refused, and several Host headers joined with commas are refused as malformed."""
    if host_header is None:
        return None
    name = host_name(host_header)
    if name is not None and (is_loopback_name(name) or name == settings.server_name):
        return None
    # the header is the requester's own text: echoed only when it is a plain host[:port]
    shown = (f"the host name {host_header!r}"
             if re.fullmatch(r"[A-Za-z0-9.:\[\]-]{1,100}", host_header)
             else "this request's host name")
    if settings.enabled:
        return (f"This app is not served under {shown}. Open it at "
                f"{settings.server_name!r}, the host of redirect_uri in {SECRETS} (behind a "
                "reverse proxy: pass the Host header, `proxy_set_header Host $host`).")
    return (f"This app is in single-user local mode and answers only on this machine "
            f"(localhost, 127.0.0.1, [::1]), not under {shown}: that is how a "
            "web page could drive it (DNS rebinding). To share it with a team, configure "
            "sign-in (README: *Sign-in, roles and deploying for a team*).")


def _verified_email(user: Mapping) -> str | None:
    email = str(user.get("email") or "").strip()
    # An address the provider marks unverified could be anyone's: never an identity or a role.
    return email if email and user.get("email_verified") is not False else None


def _providers(auth: Mapping) -> tuple[str | None, ...]:
    """The [auth] provider itself (None) when it has client_id, and each named [auth.NAME]."""
    found: list[str | None] = []
    if "client_id" in auth:
        found.append(None)
    found += [name for name, section in auth.items()
              if isinstance(section, Mapping) and "client_id" in section]
    if not found:
        raise AuthConfigError(f"{SECRETS} [auth]: no identity provider: give "
                              f"{', '.join(PROVIDER_KEYS)} (or an [auth.NAME] table with them)")
    for name in found:
        section = auth if name is None else auth[name]
        where = "[auth]" if name is None else f"[auth.{name}]"
        missing = [key for key in PROVIDER_KEYS if not section.get(key)]
        if missing:
            raise AuthConfigError(f"{SECRETS} {where}: {', '.join(missing)} missing")
        if name is not None and "_" in name:  # Streamlit's own restriction
            raise AuthConfigError(f"{SECRETS} {where}: a provider name may not contain '_'")
    return tuple(found)


def _trainers(cxr: Mapping) -> frozenset[str]:
    trainers = cxr.get("trainers", [])
    if isinstance(trainers, str) or not isinstance(trainers, (list, tuple)):
        raise AuthConfigError(f"{SECRETS} [cxr]: trainers must be a list, e.g. "
                              f"trainers = [\"a@hospital.org\"], not {trainers!r}")
    return frozenset(str(t).strip().lower() for t in trainers if str(t).strip())
