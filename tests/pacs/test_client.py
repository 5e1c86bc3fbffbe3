"""cxr.pacs.client against a real Orthanc: store, search and retrieve; credentials; errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import instances as I
import orthanc as O

from cxr.pacs.client import Pacs, PacsError, credentials, tag


def test_store_search_and_retrieve_round_trip(orthanc, pacs_env):
    study = I.chest_study(seed=40)
    pacs = Pacs.connect(orthanc.dicomweb)
    pacs.store([I.read(data) for data in study["files"].values()])
    found = [tag(s, "StudyInstanceUID") for s in pacs.studies(modality="DX")]
    assert study["study_uid"] in found
    assert study["study_uid"] in [tag(s, "StudyInstanceUID") for s in pacs.studies(
        since=I.STUDY_DATE)]
    listed = pacs.instances(study["study_uid"])
    assert {tag(i, "SOPInstanceUID") for i in listed} == set(study["kinds"])
    sop = study["frontal"][0]
    row = next(i for i in listed if tag(i, "SOPInstanceUID") == sop)
    ds = pacs.instance(study["study_uid"], tag(row, "SeriesInstanceUID"), sop)
    original = I.read(study["files"][study["kinds"][sop]])
    assert ds.SOPInstanceUID == sop
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID  # as stored
    assert (ds.pixel_array == original.pixel_array).all()


def test_wrong_credentials_are_one_clear_error(orthanc, monkeypatch):
    monkeypatch.setenv("CXR_DICOMWEB_USER", O.USER)
    monkeypatch.setenv("CXR_DICOMWEB_PASSWORD", "not-the-Pa55word")
    slept = []
    pacs = Pacs.connect(orthanc.dicomweb, sleep=slept.append)
    with pytest.raises(PacsError) as info:
        pacs.studies(modality="DX")
    message = str(info.value)
    assert message.startswith(f"{orthanc.dicomweb}: search for studies failed: HTTP 401")
    assert "CXR_DICOMWEB_USER" in message and "Pa55word" not in message
    assert info.value.status == 401 and slept == []  # not retried: it would not get better


def test_a_server_that_is_down_is_retried_with_back_off_then_named(tmp_path, pacs_env):
    url = f"http://127.0.0.1:{O.free_port()}/dicom-web"
    slept, lines = [], []
    pacs = Pacs.connect(url, attempts=4, first_wait=0.5, max_wait=1.0, sleep=slept.append,
                        log=lines.append)
    with pytest.raises(PacsError, match=r"cannot connect \(is the PACS up\?\)") as info:
        pacs.studies()
    assert str(info.value).startswith(url) and info.value.transient
    assert slept == [0.5, 1.0, 1.0] and len(lines) == 3 and "retry 1/3 in 0.5 s" in lines[0]


def test_credentials_come_from_the_environment_or_a_private_file(tmp_path):
    assert credentials(env={"CXR_DICOMWEB_TOKEN": "t"}).token == "t"
    basic = credentials(env={"CXR_DICOMWEB_USER": "u", "CXR_DICOMWEB_PASSWORD": "p"})
    assert (basic.user, basic.password) == ("u", "p")
    with pytest.raises(ValueError, match="CXR_DICOMWEB_PASSWORD is not"):
        credentials(env={"CXR_DICOMWEB_USER": "u"})
    f = tmp_path / "auth.json"
    f.write_text(json.dumps({"user": "u2", "password": "p2"}))
    f.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others.*chmod 600"):
        credentials(f, env={})
    f.chmod(0o600)
    assert credentials(f, env={}).user == "u2"
    assert credentials(env={"CXR_DICOMWEB_AUTH_FILE": str(f)}).password == "p2"
    assert credentials(env={}).user is None


def test_credentials_in_the_url_are_refused():
    with pytest.raises(ValueError, match="without credentials") as info:
        Pacs.connect("http://u:pw@127.0.0.1:1/dicom-web")
    assert "pw" not in str(info.value)


def test_tls_is_verified_and_a_ca_bundle_must_exist(tmp_path):
    assert Pacs.connect("https://pacs.example.org/dicom-web").client._session.verify is True
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    pacs = Pacs.connect("https://pacs.example.org/dicom-web", ca_bundle=bundle)
    assert pacs.client._session.verify == str(bundle)
    with pytest.raises(ValueError, match="--ca-bundle .* does not exist"):
        Pacs.connect("https://pacs.example.org/dicom-web", ca_bundle=tmp_path / "none.pem")


def test_a_token_is_sent_as_a_bearer_header(monkeypatch):
    monkeypatch.setenv("CXR_DICOMWEB_TOKEN", "tok-123")
    pacs = Pacs.connect("https://pacs.example.org/dicom-web")
    assert pacs.client._session.headers["Authorization"] == "Bearer tok-123"
    assert pacs.client._session.auth is None
