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
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SECRETS = ".streamlit/secrets.toml"
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")  # what Streamlit needs
CXR_KEYS = ("trainers", "trainer_claim", "trainer_value")


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
                   trainer_value=str(value) if value else None)

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
