"""The app answers only to the host names it is served under (cxr/dashboard/auth.host_problem),
against a real `streamlit run app.py`:

- DNS rebinding in a real browser: Chromium resolves evil.example to 127.0.0.1 (as a rebinding
  attacker's DNS would make it) and opens the app under that name: only the error shows.
- Over Streamlit's own WebSocket, as any page script could speak it: a session whose Host is
  evil.example receives the error and nothing of the runs, the worklist or its films, on the
  home page and on a page asked for directly; the same client under 127.0.0.1 gets the app.
- With sign-in, the host of redirect_uri gets the sign-in screen and any other name the error.

    .venv/bin/python -m pytest tests/browser/test_host.py
"""
from __future__ import annotations

import asyncio
import time
from secrets import token_hex

import pytest
import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

import dashboard_env
from browser import body, chromium, free_port, streamlit_app, wait_text

REBINDING = "DNS rebinding"  # in the local-mode refusal
SERVER_NAME = "cxr.hospital.example"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return dashboard_env.build(tmp_path_factory.mktemp("host"), model="simple_cnn")


@pytest.fixture(scope="module")
def local_server(world):
    """Local mode: a secrets file that does not exist (no [auth])."""
    with streamlit_app(world.env(), world.root / "streamlit-host.log",
                       world.root / "no-secrets.toml") as url:
        yield int(url.rsplit(":", 1)[1])


def session(port: int, host: str, page: str = "", drop_early_run: bool = False
            ) -> list[ForwardMsg]:
    """A page load over the app's WebSocket, connected to 127.0.0.1:port but addressed to `host`
    (its Host header, and a same-origin Origin, as a browser page there would send): every
    message up to the end of the script run that draws the page. A first run may end early for
    a rerun (app_ui's leave_pages_folder_mode); its messages are kept, since what it sent went
    to the browser too, unless `drop_early_run` (tests/browser/test_replicas.py reads tables)."""
    async def run() -> list[ForwardMsg]:
        async with websockets.connect(
                f"ws://{host}/_stcore/stream", host="127.0.0.1", port=port,
                subprotocols=["streamlit"], additional_headers={"Origin": f"http://{host}"},
                open_timeout=30) as ws:
            rerun = BackMsg()
            rerun.rerun_script.query_string = ""
            rerun.rerun_script.page_name = page
            await ws.send(rerun.SerializeToString())
            got, deadline = [], time.time() + 120
            while time.time() < deadline:
                msg = ForwardMsg()
                msg.ParseFromString(await asyncio.wait_for(ws.recv(), 120))
                got.append(msg)
                if msg.WhichOneof("type") == "script_finished":
                    if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                        return got
                    if drop_early_run:
                        got = []
            raise AssertionError(f"no finished script run in 120 s; got {len(got)} messages")
    return asyncio.run(run())


def elements(messages: list[ForwardMsg]) -> list:
    return [m.delta.new_element for m in messages
            if m.WhichOneof("type") == "delta" and m.delta.WhichOneof("type") == "new_element"]


def everything(messages: list[ForwardMsg]) -> str:
    return "\n".join(str(m) for m in messages)


def assert_refused(messages: list[ForwardMsg], world, message: str) -> None:
    [only] = elements(messages)  # one element: the error
    assert only.WhichOneof("type") == "alert" and message in only.alert.body, only
    sent = everything(messages)
    for secret in (world.run_dir.name, world.films[0].name, str(world.runs), str(world.data),
                   str(world.worklist), "What to do next", "Datasets", "not for diagnosis"):
        assert secret not in sent, secret


def test_a_rebinding_host_gets_only_the_error_over_the_websocket(local_server, world):
    for host in ("evil.example", f"evil.example:{local_server}", f"10.0.0.7:{local_server}"):
        messages = session(local_server, host)
        assert_refused(messages, world, REBINDING)
        assert repr(host) in elements(messages)[0].alert.body
    for page in ("Triage", "Train", "Predict"):  # a page asked for directly
        assert_refused(session(local_server, f"evil.example:{local_server}", page), world,
                       REBINDING)


def test_loopback_names_get_the_app(local_server, world):
    for host in (f"127.0.0.1:{local_server}", f"localhost:{local_server}",
                 f"cxr.localhost:{local_server}"):
        sent = everything(session(local_server, host))
        assert "What to do next" in sent and REBINDING not in sent, host
    assert world.run_dir.name in everything(session(local_server, f"localhost:{local_server}",
                                                    "Train"))


def test_the_server_takes_uploads_up_to_the_configured_limit_only(local_server):
    """The real server runs with .streamlit/config.toml's maxUploadSize (tests/app/
    test_config.py: the smallest the largest film needs), and tells the uploader so."""
    import tomllib
    limit = tomllib.loads((dashboard_env.REPO / ".streamlit" / "config.toml").read_text())
    uploaders = [e.file_uploader for e in elements(session(local_server, "127.0.0.1", "Predict"))
                 if e.WhichOneof("type") == "file_uploader"]
    assert [u.max_upload_size_mb for u in uploaders] == [limit["server"]["maxUploadSize"]] == [40]


def test_dns_rebinding_in_a_real_browser_shows_only_the_error(local_server, world):
    with chromium("--host-resolver-rules=MAP evil.example 127.0.0.1") as d:
        d.get(f"http://evil.example:{local_server}/Triage")
        wait_text(d, REBINDING, 120)
        text = body(d)
        assert f"'evil.example:{local_server}'" in text
        for secret in ("Your review", "What to do next", world.films[0].name,
                       world.run_dir.name, "not for diagnosis"):
            assert secret not in text, secret


@pytest.fixture(scope="module")
def signed_in_server(world):
    port = free_port()
    secrets = world.root / "host-secrets.toml"
    secrets.write_text(f"""
[auth]
redirect_uri = "https://{SERVER_NAME}/oauth2callback"
cookie_secret = "{token_hex(32)}"
client_id = "cxr-review"
client_secret = "test-client-secret"
server_metadata_url = "http://127.0.0.1:9/.well-known/openid-configuration"
""")
    with streamlit_app(world.env(), world.root / "streamlit-host-auth.log", secrets, port):
        yield port


def test_with_sign_in_only_the_redirect_host_and_loopback_are_answered(signed_in_server, world):
    port = signed_in_server
    for host in (SERVER_NAME, f"{SERVER_NAME}:{port}", f"127.0.0.1:{port}"):
        sent = everything(session(port, host))
        assert "Sign in" in sent and "not served under" not in sent, host
    for host in ("evil.example", f"www.{SERVER_NAME}", f"{SERVER_NAME}.evil.example"):
        assert_refused(session(port, host), world, f"Open it at '{SERVER_NAME}'")
