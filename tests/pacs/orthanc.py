"""A real Orthanc PACS for the tests: started as an ordinary process from a JSON config in a
temporary folder, on free loopback ports, with HTTP basic authentication and DICOMweb on.

    server = Orthanc(tmp_path).start()     # waits until it answers
    server.dicomweb                        # http://127.0.0.1:PORT/dicom-web
    server.stop(); server.start()          # the same ports and storage: "the PACS went away"
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "cxr-test", "s3cret-pacs"


def missing() -> str | None:
    """Why Orthanc cannot run here, or None."""
    if not Path(ORTHANC).is_file() and shutil.which("Orthanc") is None:
        return "Orthanc is not installed (Debian packages orthanc and orthanc-dicomweb)"
    if not Path(DICOMWEB_PLUGIN).is_file():
        return f"the Orthanc DICOMweb plugin is not installed ({DICOMWEB_PLUGIN})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None
        self.config = self.folder / "orthanc.json"
        (self.folder / "storage").mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps({
            "Name": "CXR-TEST", "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD}, "HttpServerEnabled": True,
            "Plugins": [DICOMWEB_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "ConcurrentJobs": 1, "HttpThreadsCount": 4, "StorageCompression": False,
        }, indent=2))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self, timeout: float = 30.0) -> Orthanc:
        log = open(self.folder / "orthanc.log", "ab")
        self.process = subprocess.Popen([ORTHANC, str(self.config)], cwd=self.folder,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: "
                                   f"{(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/system", auth=(USER, PASSWORD),
                                timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def rest(self, path: str):
        """GET Orthanc's own REST API (JSON), for checks the DICOMweb side cannot make."""
        r = requests.get(f"{self.url}{path}", auth=(USER, PASSWORD), timeout=10)
        r.raise_for_status()
        return r.json()

    def store(self, data: bytes) -> None:
        r = requests.post(f"{self.url}/instances", data=data, auth=(USER, PASSWORD), timeout=10)
        r.raise_for_status()
