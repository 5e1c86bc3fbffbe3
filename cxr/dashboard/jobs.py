"""Background `cxr` jobs launched from the dashboard: detached, one per run dir and kind.

A job runs `python -m cxr.dashboard.jobs --exit-file F -- <cxr args>`, i.e. the normal `cxr`
command line inside a thin wrapper that records its exit status, in a new session
(`start_new_session=True`): it survives page reloads, browser disconnects and the Streamlit
server stopping, and Ctrl-C in the server's terminal does not reach it. Its output goes to
`RUN_DIR/job-<kind>.log`; `RUN_DIR/job-<kind>.pid` (JSON: pid, argv, started) is created with
O_EXCL first, so two clicks (or two browser sessions) cannot start two jobs into the same run
dir; `RUN_DIR/job-<kind>.exit` gets the exit status. (The `job-` prefix keeps clear of the
trainer's own files such as train.log.)

    launch("train", ["train", "--data", "data/demo", "--model", "fusion", "--out", "runs/a"],
           Path("runs/a"))
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cxr.atomic import write_text
from cxr.rundir import RunDir, check_run_name, read_json

KINDS = ("train", "evaluate")
_STARTING_GRACE_S = 30.0


class JobError(RuntimeError):
    """A launch that was refused (already running, run dir taken, bad arguments)."""


def read_job(run_dir: Path, kind: str) -> dict | None:
    """The pid file's content, {} while it is being written, None when there is none."""
    path = RunDir(run_dir).job(kind, "pid")
    return read_json(path) if path.exists() else None


def pid_alive(pid: int, needle: bytes = b"cxr.dashboard.jobs") -> bool:
    """True while process `pid` runs and its command line holds `needle` (our job wrapper by
    default), so a zombie or a pid reused by another program does not count."""
    try:  # reap it if it is our own child that finished, else it stays a zombie forever
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    except OSError:
        return False
    proc = Path(f"/proc/{pid}")
    if proc.parent.is_dir() and Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        state = stat.rsplit(")", 1)[-1].split()[0]
        return state not in ("Z", "X") and needle in cmdline
    try:  # no /proc (macOS): signal 0 only says the pid exists
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def job_state(run_dir: Path, kind: str) -> str:
    """'none' (never launched here), 'running' or 'exited'."""
    job = read_job(run_dir, kind)
    if job is None:
        return "none"
    if not job.get("pid"):  # created but the pid not written yet, or a launch that crashed
        age = time.time() - RunDir(run_dir).job(kind, "pid").stat().st_mtime
        return "running" if age < _STARTING_GRACE_S else "exited"
    return "running" if pid_alive(int(job["pid"])) else "exited"


def exit_code(run_dir: Path, kind: str) -> int | None:
    """The job's exit status once it finished (None while running or if it was killed)."""
    try:
        return int(RunDir(run_dir).job(kind, "exit").read_text().strip())
    except (OSError, ValueError):
        return None


def log_tail(run_dir: Path, kind: str, lines: int = 30) -> str:
    return _tail(RunDir(run_dir).job(kind, "log"), lines)


def train_log_tail(run_dir: Path, lines: int = 20) -> str:
    """The last lines a training run printed: its dashboard job's log, else the trainer's
    train.log (a run started by `cxr demo` or in a terminal has no job log)."""
    return log_tail(run_dir, "train", lines) or _tail(RunDir(run_dir).log, lines)


def _tail(path: Path, lines: int) -> str:
    """The file's last `lines` lines ("" when absent), reading at most its last 64 KiB."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _claim(run_dir: Path, kind: str, new_run: bool) -> int:
    """Create the pid file exclusively: the lock against a second launch."""
    path = RunDir(run_dir).job(kind, "pid")
    if new_run:
        if taken := RunDir(run_dir).taken():
            state = job_state(run_dir, kind)
            detail = "a training job is running there" if state == "running" else \
                f"it already holds a run ({', '.join(taken)})"
            raise JobError(f"refused: {run_dir} is taken: {detail}; choose another run name")
    elif job_state(run_dir, kind) == "running":
        raise JobError(f"refused: a {kind} job is already running for {run_dir}")
    else:
        path.unlink(missing_ok=True)  # a finished job's file: this is a fresh launch
    try:
        return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise JobError(f"refused: a {kind} job was just launched for {run_dir}") from None


def launch(kind: str, cxr_args: list[str], run_dir: Path) -> int:
    """Start `cxr <cxr_args>` detached; returns its pid. Raises JobError when refused: a new run
    (a train job without --resume) refuses a run dir that already holds a run; otherwise only a
    job of the same kind still running there is refused."""
    if kind not in KINDS:
        raise JobError(f"unknown job kind {kind!r}; expected one of {sorted(KINDS)}")
    run_dir, run = Path(run_dir), RunDir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = _claim(run_dir, kind, new_run=kind == "train" and "--resume" not in cxr_args)
    try:
        run.job(kind, "exit").unlink(missing_ok=True)
        argv = [sys.executable, "-m", "cxr.dashboard.jobs",
                "--exit-file", str(run.job(kind, "exit")), "--", *map(str, cxr_args)]
        with open(run.job(kind, "log"), "ab") as log:
            log.write(f"$ cxr {' '.join(map(str, cxr_args))}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, close_fds=True,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        record = {"pid": proc.pid, "argv": list(map(str, cxr_args)), "started": time.time()}
        os.write(fd, json.dumps(record).encode())
    except BaseException:
        run.job(kind, "pid").unlink(missing_ok=True)  # release the lock
        raise
    finally:
        os.close(fd)
    return proc.pid


def request_stop(run_dir: Path) -> Path:
    """Ask a training run to stop after its current step (the trainer polls for this file)."""
    path = RunDir(run_dir).stop
    path.write_text(f"stop requested from the dashboard at {time.ctime()}\n")
    return path


def stop_requested(run_dir: Path) -> bool:
    return RunDir(run_dir).stop.exists()


def launch_train(runs_root: Path, data: str, model: str, name: str, settings: dict,
                 extra: str = "") -> tuple[str, int]:
    """The Train page's Launch: check the form, then start `cxr train` into RUNS_ROOT/NAME (NAME
    blank: MODEL-YYYYmmdd-HHMMSS; else one plain folder name, cxr.rundir.check_run_name).
    `extra` holds more key=value settings, one per line. Returns (run name, pid); raises
    check_run_name's, check_train_args' and launch's errors, before anything starts."""
    data, lines = data.strip(), [ln.strip() for ln in extra.splitlines() if ln.strip()]
    run_name = check_run_name(name.strip() or f"{model}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = Path(runs_root) / run_name
    if run_dir.exists() and not run_dir.is_dir():
        raise JobError(f"refused: {run_dir} is a file, not a run folder; choose another run name")
    args = train_args(data, model, run_dir, settings)
    args += [x for ln in lines for x in ("--set", ln)]
    check_train_args(data, model, settings, lines)
    return run_name, launch("train", args, run_dir)


def train_args(data: Path, model: str, out: Path, settings: dict | None = None) -> list[str]:
    """`cxr train` arguments for the Train page's form; `settings` become --set key=value."""
    args = ["train", "--data", str(data), "--model", str(model), "--out", str(out)]
    return args + [x for text in _overrides(settings) for x in ("--set", text)]


def check_train_args(data: str | Path, model: str, settings: dict, extra: list[str] = ()) -> None:
    """Fail now, with the config's own message, on what `cxr train` would reject after launch:
    a missing dataset folder or metadata, an unknown model, an unknown key or a bad value."""
    from cxr.data.layout import DatasetFiles

    DatasetFiles.locate(data)  # raises naming what is missing (the folder, its Data_Entry CSV)
    train_config(data, model, settings, extra)


def train_config(data: str | Path, model: str, settings: dict, extra: list[str] = ()):
    """The TrainConfig `cxr train` will run with from the form (its defaults, the form's
    settings, then the extra key=value lines); ValueError naming a bad key or value."""
    from cxr.train.config import load_config
    return load_config(None, [*_overrides(settings), *extra], data_dir=str(data), model=model)


def _overrides(settings: dict | None) -> list[str]:
    """The form's settings as key=value texts; an empty field keeps the config's default."""
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}"
            for key, value in (settings or {}).items() if value is not None and value != ""]


def resume_args(run_dir: Path) -> list[str]:
    return ["train", "--resume", str(run_dir)]


def evaluate_args(run_dir: Path) -> list[str]:
    return ["evaluate", "--checkpoint", str(RunDir(run_dir).best)]


def _main(argv: list[str]) -> int:
    """The wrapper a job runs: `cxr` in-process, then its exit status to --exit-file."""
    if len(argv) < 3 or argv[0] != "--exit-file" or argv[2] != "--":
        print("usage: python -m cxr.dashboard.jobs --exit-file FILE -- CXR_ARGS...",
              file=sys.stderr)
        return 2
    exit_file, cxr_args = Path(argv[1]), argv[3:]
    rc = 1
    try:
        from cxr.cli import main
        rc = int(main(cxr_args) or 0)
    except SystemExit as exc:  # argparse errors and commands that exit
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
        rc = 1
    finally:
        write_text(exit_file, f"{rc}\n")
        sys.stdout.flush()
    return rc


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
