"""`cxr pacs watch`: pull on a loop, as a long-running service.

Every --every seconds: search the PACS for studies with CR or DX instances (from --since, by
default the day the watcher started), enqueue the new ones as work items of the worklist, and
read every pending one (cxr.pacs.pull.Puller.run_leased). A study is read once per checkpoint,
also after a restart: the worklist remembers it. When the PACS goes away the client retries
with back-off; when that fails the round ends with one log line saying so ("PACS unreachable"),
the study being read stays leased to this watcher and is read first when the server answers
again; nothing is lost and nothing is read twice. Ctrl-C or SIGTERM: the current study is
finished (or left leased) and the watcher exits with status 0.

Each round writes --progress (JSON, atomically): state ("running", "pacs unreachable",
"worklist unreachable" (its database server is down: the same, the round is tried again),
"pacs error" (the PACS refused a search, e.g. HTTP 401: the line names the status),
"stopped"), the time, the last round's totals and the message of the last error.
"""
from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime

from cxr.pacs.client import PacsError
from cxr.worklist import WorklistUnavailable


class Stopped(Exception):
    """SIGTERM or Ctrl-C during a wait."""


class Watcher:
    def __init__(self, puller, every: float, since: str | None, progress=None, log=print):
        self.puller, self.every, self.since = puller, float(every), since
        self.progress, self.log = progress, log
        self.stop = threading.Event()
        self.rounds = 0
        puller.pacs.sleep = self.sleep  # the client's back-off wakes up on a stop

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped

    def run(self, rounds: int | None = None) -> int:
        """Rounds until stopped (or `rounds` of them, for tests)."""
        handlers = _install(self.stop)
        try:
            self.log(f"watching {self.puller.pacs.server} every {self.every:g} s for studies "
                     f"with CR/DX instances{f' from {self.since}' if self.since else ''}; "
                     "Ctrl-C or SIGTERM stops")
            while not self.stop.is_set() and (rounds is None or self.rounds < rounds):
                self.round()
                self.rounds += 1
                if rounds is None or self.rounds < rounds:
                    try:
                        self.sleep(self.every)
                    except Stopped:
                        break
        finally:
            _restore(handlers)
            self._write_progress("stopped", None)
            self.log("stopped")
        return 0

    def round(self) -> None:
        try:
            found = self.puller.find_studies(since=self.since)
            new = self.puller.enqueue(found)
            totals = self.puller.run_leased(stop=self.stop.is_set)
            totals.sent += self.puller.send_unsent(stop=self.stop.is_set)
        except Stopped:
            return
        except WorklistUnavailable as exc:
            self._write_progress("worklist unreachable", None, str(exc))
            self.log(f"worklist unreachable: {exc}; trying again in {self.every:g} s")
            return
        except PacsError as exc:
            if not exc.transient:  # refused (401, 403...): says so, and tries again next round
                self._write_progress("pacs error", None, str(exc))
                self.log(f"PACS error: {exc}; trying again in {self.every:g} s")
                return
            self._write_progress("pacs unreachable", None, str(exc))
            self.log(f"PACS unreachable: {exc}; trying again in {self.every:g} s "
                     f"({len(self.puller.held)} study leased, kept for then)")
            return
        if new or totals.instances or totals.sent:
            self.log(f"round {self.rounds + 1}: {new} new studies; {totals.line()}")
        self._write_progress("running", totals)

    def _write_progress(self, state: str, totals, error: str | None = None) -> None:
        if self.progress is None:
            return
        from cxr.atomic import write_json
        write_json(self.progress, {
            "state": state, "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rounds": self.rounds, "server": self.puller.pacs.server,
            "last_round": None if totals is None else vars(totals), "error": error})


def _install(stop: threading.Event):
    if threading.current_thread() is not threading.main_thread():
        return None
    handler = lambda signum, frame: stop.set()  # noqa: E731
    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore(handlers) -> None:
    for s, h in (handlers or {}).items():
        signal.signal(s, h)


def parse_every(text: str) -> float:
    """'30s', '5m', '1h' or plain seconds -> seconds."""
    text = str(text).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], None)
    try:
        value = float(text[:-1] if scale else text) * (scale or 1)
    except ValueError:
        raise ValueError(f"--every {text!r}: expected seconds, or e.g. 30s, 5m, 1h") from None
    if value <= 0:
        raise ValueError(f"--every {text!r} must be positive")
    return value


def today() -> str:
    return time.strftime("%Y%m%d")
