"""Interrupting runs with worker processes: Ctrl-C, SIGTERM and a killed parent.

Every test starts a real process in its own session (as a shell starts a job in its own process
group), signals it as a user would and checks that it stops within a few seconds, leaves no
process of its session behind and, for the ``simulate`` command, keeps its finished outputs,
leaves no temporary file and resumes. Processes are looked up in ``/proc`` (Linux only).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hybridpose.parallel import interrupt_on_sigterm

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="looks processes up in /proc (Linux)"
)

STOP_WITHIN_S = 5.0
"""How long a signalled run may take to stop (the unfixed pool ran on for its whole queue)."""

POOL = """
import sys, time
from tqdm import tqdm
from hybridpose.parallel import map_in_processes
with tqdm(total=40, disable=True) as bar:
    try:
        map_in_processes(time.sleep, [2.0] * 40, 2, bar, None)
    except KeyboardInterrupt:
        sys.exit(130)
sys.exit(0)
"""
"""A pool of two workers with 40 s of sleeping to do; exits 130 when interrupted."""

SIMULATE = ["simulate", "--preset", "tiny", "--workers", "2", "--quiet"]


# ------------------------------------------------------------------------------ helpers
def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def session_members(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] not in "ZX" and int(fields[3]) == sid:
                found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in "ZX"


def workers_of(pid: int) -> list[int]:
    """The spawned worker processes among the children of ``pid``."""
    found = []
    for member in session_members(pid):
        fields = _stat(member)
        try:
            cmdline = Path(f"/proc/{member}/cmdline").read_bytes()
        except OSError:
            continue
        if fields is not None and int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(member)
    return found


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """``python ARGS`` in a new session (its pid is the session's id); output to files in
    ``cwd`` (not pipes: processes left behind would hold them open), see :func:`stderr`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (cwd / "stdout").open("w") as out, (cwd / "stderr").open("w") as err:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )


def stderr(cwd: Path) -> str:
    return (cwd / "stderr").read_text()


def stop_time(process: subprocess.Popen[str]) -> float:
    """Seconds until ``process`` exits, at most :data:`STOP_WITHIN_S` (fails beyond)."""
    started = time.monotonic()
    try:
        process.wait(timeout=STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_WITHIN_S} s after the signal")
    return time.monotonic() - started


@pytest.fixture
def sessions() -> Iterator[list[int]]:
    """Session ids to kill at the end whatever happened (a failing test leaves no process)."""
    started: list[int] = []
    yield started
    for sid in started:
        for pid in session_members(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def finished(out: Path) -> set[str]:
    return {p.name for p in out.glob("*.h5")}


def temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(".*.tmp"))


# ------------------------------------------------------------------------------ lost signals
class SignalledWhenCollected:
    """Sends ``signum`` to this process from its ``__del__``, where Python swallows exceptions:
    the signal's handler runs there and its ``KeyboardInterrupt`` is lost, as happened to a
    SIGTERM that arrived while numba's compiler ran a weak-reference callback."""

    def __init__(self, signum: int, raised_inside: list[str]) -> None:
        self.signum = signum
        self.raised_inside = raised_inside

    def __del__(self) -> None:
        try:
            signal.raise_signal(self.signum)  # runs the Python handler before returning
        except KeyboardInterrupt as interrupt:
            self.raised_inside.append(str(interrupt))
            raise


def interrupted_after_losing(signum: int) -> tuple[list[str], BaseException | None]:
    """Lose ``signum`` in a finaliser inside :func:`interrupt_on_sigterm`, then run on for up to
    a second; the interrupts raised inside the finaliser and what stopped the run, if anything."""
    raised_inside: list[str] = []
    try:
        with interrupt_on_sigterm():
            finaliser = SignalledWhenCollected(signum, raised_inside)
            del finaliser
            for _ in range(100):
                time.sleep(0.01)
    except KeyboardInterrupt as interrupt:
        return raised_inside, interrupt
    return raised_inside, None


def test_a_sigterm_lost_in_a_finaliser_is_delivered_again() -> None:
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    raised_inside, stopped_by = interrupted_after_losing(signal.SIGTERM)
    assert raised_inside == ["signal SIGTERM"]  # lost there ...
    assert isinstance(stopped_by, KeyboardInterrupt)  # ... and raised again where it propagates
    assert str(stopped_by) == "signal SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_ctrl_c_lost_in_a_finaliser_is_delivered_again() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    raised_inside, stopped_by = interrupted_after_losing(signal.SIGINT)
    assert raised_inside == [""]
    assert isinstance(stopped_by, KeyboardInterrupt)
    assert str(stopped_by) == ""


def test_other_unraisable_exceptions_go_to_the_previous_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable.exc_value))

    class FailsWhenCollected:
        def __del__(self) -> None:
            raise ValueError("in a finaliser")

    with interrupt_on_sigterm():
        finaliser = FailsWhenCollected()
        del finaliser
    assert [str(e) for e in seen] == ["in a finaliser"]
    assert isinstance(seen[0], ValueError)
    assert sys.unraisablehook is not None and sys.unraisablehook.__name__ == "<lambda>"


# ------------------------------------------------------------------------------ the pool
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signalled_pool_stops_at_once(
    tmp_path: Path, sessions: list[int], signum: signal.Signals
) -> None:
    # Ctrl-C signals the whole foreground process group; SIGTERM (kill, timeout, systemd) is
    # sent to the main process only
    process = start(["-c", POOL], tmp_path)
    sessions.append(process.pid)
    wait_for(lambda: len(workers_of(process.pid)) == 2, 30, "two workers")
    time.sleep(1.0)  # the workers are sleeping in their first tasks
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        os.kill(process.pid, signum)
    stop_time(process)
    assert process.returncode == 130, stderr(tmp_path)
    # no worker, no resource tracker left behind
    wait_for(lambda: not session_members(process.pid), STOP_WITHIN_S, "no process left")


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path, sessions: list[int]) -> None:
    process = start(["-c", POOL], tmp_path)
    sessions.append(process.pid)
    wait_for(lambda: len(workers_of(process.pid)) == 2, 30, "two workers")
    time.sleep(0.5)
    left = [pid for pid in session_members(process.pid) if pid != process.pid]
    assert len(left) >= 2  # the workers (and the resource tracker, if one was started)
    process.kill()
    process.wait()
    wait_for(lambda: not any(alive(pid) for pid in left), STOP_WITHIN_S, "the workers to exit")


# ------------------------------------------------------------------------------ the CLI
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_simulation_stops_cleans_up_and_resumes(
    tmp_path: Path, sessions: list[int], signum: signal.Signals
) -> None:
    out = tmp_path / "out"
    # 24 recordings: the unfixed run simulated them all (about 10 s) before it stopped
    args = ["-m", "hybridpose.cli", *SIMULATE, "--out", str(out)]
    process = start([*args, "--subjects", "1-4", "--movements", "1-6"], tmp_path)
    sessions.append(process.pid)
    wait_for(lambda: out.is_dir() and bool(finished(out)), 60, "a first recording")
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        os.kill(process.pid, signum)
    stop_time(process)
    err = stderr(tmp_path)
    assert process.returncode == 130, err
    assert "hybridpose simulate: interrupted" in err
    wait_for(lambda: not session_members(process.pid), STOP_WITHIN_S, "no process left")
    assert temporaries(out) == []
    kept = finished(out)
    assert 1 <= len(kept) < 24
    # a run that overlaps the interrupted one skips its finished recordings and completes
    rerun = subprocess.run(
        [sys.executable, *args, "--subjects", "1", "--movements", "1-6"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    skipped = len([name for name in kept if name.startswith("S1_")])
    assert f"skipped {skipped} finished one(s), 0 failed" in rerun.stdout
    assert finished(out) >= kept and len(finished(out) - kept) == 6 - skipped
    assert temporaries(out) == []


def test_a_killed_simulation_leaves_no_worker(tmp_path: Path, sessions: list[int]) -> None:
    out = tmp_path / "out"
    args = ["-m", "hybridpose.cli", *SIMULATE, "--out", str(out)]
    process = start([*args, "--subjects", "1-2", "--movements", "1-6"], tmp_path)
    sessions.append(process.pid)
    wait_for(lambda: out.is_dir() and bool(finished(out)), 60, "a first recording")
    left = [pid for pid in session_members(process.pid) if pid != process.pid]
    assert len(left) >= 2
    process.kill()
    process.wait()
    wait_for(lambda: not any(alive(pid) for pid in left), STOP_WITHIN_S, "the workers to exit")
    # the next run removes what the killed workers were writing and completes; a temporary
    # file is stale once its writer is reaped (by init: not always at once)
    reaped = lambda: not any(Path(f"/proc/{pid}").exists() for pid in left)  # noqa: E731
    wait_for(reaped, 10, "the workers to be reaped")
    rerun = subprocess.run(
        [sys.executable, *args, "--subjects", "1", "--movements", "1-2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert temporaries(out) == []


def test_sigterm_stops_a_command_without_workers_as_ctrl_c_does(
    tmp_path: Path, sessions: list[int]
) -> None:
    """The CLI turns SIGTERM into the same stop as Ctrl-C for every command, not only while a
    pool of workers runs: here ``simulate --workers 1``, which simulates in its own process."""
    out = tmp_path / "out"
    args = ["-m", "hybridpose.cli", "simulate", "--preset", "tiny", "--workers", "1", "--quiet"]
    process = start([*args, "--out", str(out), "--subjects", "1-4", "--movements", "1-6"], tmp_path)
    sessions.append(process.pid)
    wait_for(lambda: out.is_dir() and bool(finished(out)), 60, "a first recording")
    os.kill(process.pid, signal.SIGTERM)
    stop_time(process)
    err = stderr(tmp_path)
    assert process.returncode == 130, err
    assert "hybridpose simulate: interrupted" in err
    assert temporaries(out) == []
    assert 1 <= len(finished(out)) < 24
