"""A DICOMweb session to one PACS (dicomweb-client): credentials, TLS, retries, clear errors.

    >>> from cxr.pacs.client import Pacs
    >>> pacs = Pacs.connect("https://pacs.example.org/dicom-web", ca_bundle=None)
    >>> pacs.studies(modality="DX", since="20250101")     # QIDO-RS, JSON datasets
    >>> pacs.instance(study, series, sop)                  # WADO-RS -> pydicom Dataset
    >>> pacs.store([sr])                                   # STOW-RS

Credentials are never taken from the command line (they would show in `ps` and shell history):
  CXR_DICOMWEB_TOKEN                        a bearer token, or
  CXR_DICOMWEB_USER + CXR_DICOMWEB_PASSWORD HTTP basic authentication, or
  a JSON file named by --auth-file or CXR_DICOMWEB_AUTH_FILE, readable by its owner only:
    {"token": "..."} or {"user": "...", "password": "..."}
The environment wins over the file. TLS certificates are verified (requests' default CA store,
or --ca-bundle FILE for a hospital's own CA); there is no switch to turn verification off.

Every request is retried on a connection error, a timeout and HTTP 429/502/503/504, waiting
1, 2, 4, ... s (at most `max_wait`) for `attempts` tries; then, or at once for any other HTTP
error (401 wrong credentials, 404, 400...), `PacsError` names the server, what was asked and the
HTTP status, in one line: callers print it, no traceback.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

RETRY_STATUS = (429, 502, 503, 504)
ENV_USER, ENV_PASSWORD = "CXR_DICOMWEB_USER", "CXR_DICOMWEB_PASSWORD"
ENV_TOKEN = "CXR_DICOMWEB_TOKEN"
ENV_AUTH_FILE = "CXR_DICOMWEB_AUTH_FILE"
TIMEOUT_S = 30.0
PAGE = 500  # QIDO results per request


class PacsError(RuntimeError):
    """The PACS cannot be reached or refused a request; the message names server and status."""

    def __init__(self, message: str, status: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status, self.transient = status, transient


@dataclass(frozen=True)
class Credentials:
    user: str | None = None
    password: str | None = None
    token: str | None = None
    origin: str = "none"  # where they came from, for a log line (never the values)


def credentials(auth_file: str | os.PathLike | None = None,
                env: dict | None = None) -> Credentials:
    """Credentials from the environment, else from the auth file; none is allowed (an open
    PACS on loopback), the server then says 401."""
    env = os.environ if env is None else env
    if env.get(ENV_TOKEN):
        return Credentials(token=env[ENV_TOKEN], origin=ENV_TOKEN)
    if env.get(ENV_USER):
        if not env.get(ENV_PASSWORD):
            raise ValueError(f"{ENV_USER} is set but {ENV_PASSWORD} is not")
        return Credentials(env[ENV_USER], env[ENV_PASSWORD], origin=ENV_USER)
    path = auth_file or env.get(ENV_AUTH_FILE)
    if not path:
        return Credentials()
    return _from_file(Path(path))


def _from_file(path: Path) -> Credentials:
    try:
        mode = path.stat().st_mode
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"auth file {path}: cannot read it ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"auth file {path} is not JSON (line {exc.lineno})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"auth file {path} is readable by others (mode "
                         f"{stat.S_IMODE(mode):o}): chmod 600 {path}")
    if not isinstance(data, dict):
        raise ValueError(f"auth file {path}: expected a JSON object")
    if data.get("token"):
        return Credentials(token=str(data["token"]), origin=f"auth file {path}")
    if data.get("user") and data.get("password"):
        return Credentials(str(data["user"]), str(data["password"]), origin=f"auth file {path}")
    raise ValueError(f"auth file {path}: expected {{\"token\": ...}} or "
                     "{\"user\": ..., \"password\": ...}")


def server_name(url: str) -> str:
    """The URL without user info, query or fragment: what messages name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class Pacs:
    """One DICOMweb server. `attempts`/`first_wait`/`max_wait`: the retry policy; `sleep` is
    time.sleep (a watcher passes one that wakes up on SIGTERM)."""

    def __init__(self, url: str, session: requests.Session, attempts: int = 5,
                 first_wait: float = 1.0, max_wait: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep,
                 log: Callable[[str], None] | None = None):
        from dicomweb_client.api import DICOMwebClient

        if urlsplit(url).scheme not in ("http", "https") or urlsplit(url).username:
            raise ValueError(f"--url {server_name(url)!r}: expected http(s)://host[:port]/path, "
                             "without credentials in it (use the environment or --auth-file)")
        self.url, self.server = url.rstrip("/"), server_name(url)
        self.attempts, self.first_wait, self.max_wait = attempts, first_wait, max_wait
        self.sleep, self.log = sleep, log or (lambda line: None)
        self.client = DICOMwebClient(self.url, session=session, timeout=TIMEOUT_S)
        self.client.set_http_retry_params(retry=False)  # one retry policy: ours, with its log
        # ... and `retrying`, which dicomweb-client still calls, logs each failure with its
        # traceback: our one line says it instead
        logging.getLogger("retrying").setLevel(logging.CRITICAL)

    @classmethod
    def connect(cls, url: str, ca_bundle: str | os.PathLike | None = None,
                auth_file: str | os.PathLike | None = None, **kwargs) -> Pacs:
        creds = credentials(auth_file)
        session = requests.Session()
        if ca_bundle is not None:
            if not Path(ca_bundle).is_file():
                raise ValueError(f"--ca-bundle {ca_bundle} does not exist")
            session.verify = str(ca_bundle)
        if creds.token:
            session.headers["Authorization"] = f"Bearer {creds.token}"
        elif creds.user:
            session.auth = (creds.user, creds.password)
        return cls(url, session, **kwargs)

    # -- requests, retried --------------------------------------------------------------
    def call(self, what: str, fn: Callable, *args, **kwargs):
        """fn(*args, **kwargs) under the retry policy; PacsError when it cannot succeed."""
        wait = self.first_wait
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                reason = exc.response.reason if exc.response is not None else ""
                error = PacsError(f"{self.server}: {what} failed: HTTP {status} {reason}"
                                  + _hint(status), status, status in RETRY_STATUS)
            except (requests.ConnectionError, requests.Timeout) as exc:
                kind = "timed out" if isinstance(exc, requests.Timeout) else "cannot connect"
                error = PacsError(f"{self.server}: {what} failed: {kind} (is the PACS up?)",
                                  None, True)
            except requests.RequestException as exc:
                error = PacsError(f"{self.server}: {what} failed: {type(exc).__name__}")
            if not error.transient or attempt == self.attempts:
                raise error from None
            self.log(f"{error}; retry {attempt}/{self.attempts - 1} in {wait:g} s")
            self.sleep(wait)
            wait = min(wait * 2, self.max_wait)
        raise AssertionError("unreachable")

    def studies(self, modality: str | None = None, since: str | None = None,
                study_uid: str | None = None) -> list[dict]:
        """QIDO-RS studies (DICOM JSON) matching a modality in the study, a study date from
        `since` (YYYYMMDD) on, or one Study Instance UID."""
        filters = {}
        if modality:
            filters["ModalitiesInStudy"] = modality
        if since:
            filters["StudyDate"] = f"{since}-"
        if study_uid:
            filters["StudyInstanceUID"] = study_uid
        return self._search("search for studies", self.client.search_for_studies,
                            "StudyInstanceUID", search_filters=filters,
                            fields=["StudyDate", "ModalitiesInStudy"])

    def instances(self, study_uid: str, sop_class: str | None = None,
                  sop_uid: str | None = None) -> list[dict]:
        """QIDO-RS instances of a study (with their series' modality, description and
        manufacturer), optionally of one SOP Class or one SOP Instance UID."""
        filters = {"SOPClassUID": sop_class} if sop_class else {}
        if sop_uid:
            filters["SOPInstanceUID"] = sop_uid
        return self._search("search for instances", self.client.search_for_instances,
                            "SOPInstanceUID", study_instance_uid=study_uid,
                            search_filters=filters,
                            fields=["Modality", "SeriesDescription", "SeriesInstanceUID",
                                    "Manufacturer"])

    def _search(self, what: str, fn: Callable, key: str, **kwargs) -> list[dict]:
        """Every result, PAGE at a time (limit/offset). dicomweb-client's get_remaining asks
        until a page is empty, forever on a server that ignores offset (Orthanc's plugin may):
        here a short page ends it, and so does a page with nothing new."""
        results, seen = [], set()
        while True:
            page = self.call(what, fn, limit=PAGE, offset=len(results), **kwargs)
            new = [r for r in page if tag(r, key) not in seen]
            seen.update(tag(r, key) for r in new)
            results.extend(new)
            if len(page) < PAGE or not new:
                return results

    def instance(self, study_uid: str, series_uid: str, sop_uid: str):
        """WADO-RS one instance, as stored (any transfer syntax) -> pydicom Dataset."""
        return self.call("retrieve an instance", self.client.retrieve_instance,
                         study_uid, series_uid, sop_uid,
                         media_types=(("application/dicom", "*"),))

    def store(self, datasets: Sequence, study_uid: str | None = None) -> None:
        """STOW-RS; a response that reports failed instances is an error."""
        result = self.call("store results", self.client.store_instances, list(datasets),
                           study_uid)
        failed = result.get("FailedSOPSequence") if result is not None else None
        if failed:
            raise PacsError(f"{self.server}: store results failed: the server refused "
                            f"{len(failed)} of {len(datasets)} instances")


def _hint(status: int | None) -> str:
    return {401: " (wrong or missing credentials: set CXR_DICOMWEB_USER/_PASSWORD or "
                 "CXR_DICOMWEB_TOKEN)",
            403: " (these credentials may not do this)",
            404: " (is the URL the server's DICOMweb root?)"}.get(status, "")


def tag(dataset: dict, keyword: str, default=None):
    """A value of a DICOM JSON dataset (QIDO result) by keyword."""
    from pydicom.datadict import tag_for_keyword

    element = dataset.get(f"{tag_for_keyword(keyword):08X}") or {}
    values = element.get("Value") or []
    return values[0] if values else default
