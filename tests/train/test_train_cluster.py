"""Cluster-safe runs: one run per workdir (a lock naming its holder, stale locks taken over),
SIGTERM / SIGINT write a checkpoint at the step reached and the run resumes from it, and a
compiled call that does not return is reported by the watchdog."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from kill_utils import SUBPROCESS_ENV, python_module, run
from runner_configs import ROOT

from s4dm_jax.train import checkpoint
from s4dm_jax.train.history import read_history
from s4dm_jax.train.stop_signals import StopSignals
from s4dm_jax.train.watchdog import Watchdog
from s4dm_jax.train.workdir_lock import LOCK_FILE, WorkdirBusyError, WorkdirLock

BC_RUN = [f"--config={ROOT}/configs/bc.py", "--config.steps_per_call=10",
          "--config.checkpoint_every=100000", "--config.log_every=10", "--config.batch_size=8",
          "--config.model.hidden_dims=(16,16)", "--config.eval.episodes=1",
          "--config.eval.max_episode_steps=15", "--noprogress"]


def main_cmd(workdir, num_steps):
    return python_module("s4dm_jax.main", f"--workdir={workdir}", *BC_RUN,
                         f"--config.num_steps={num_steps}")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(workdir, record, age_s=0.0):
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    with open(path, "w") as f:
        json.dump(record, f)
    mtime = time.time() - age_s
    os.utime(path, (mtime, mtime))
    return path


def test_a_second_lock_on_a_held_workdir_is_refused_and_the_first_is_released(tmp_path):
    with WorkdirLock(str(tmp_path)):
        with pytest.raises(WorkdirBusyError, match=f"host {socket.gethostname()} pid "
                                                   f"{os.getpid()}"):
            WorkdirLock(str(tmp_path)).__enter__()
    assert not os.path.exists(tmp_path / LOCK_FILE)
    with WorkdirLock(str(tmp_path)):  # free again
        assert os.path.exists(tmp_path / LOCK_FILE)


def test_a_lock_left_by_a_dead_process_is_taken_over_and_said(tmp_path, capsys):
    pid = dead_pid()
    write_lock(tmp_path, {"host": socket.gethostname(), "pid": pid, "started_utc": "x"})
    with WorkdirLock(str(tmp_path)) as lock:
        with open(tmp_path / LOCK_FILE) as f:
            assert json.load(f)["token"] == lock.record["token"]
    out = capsys.readouterr().out
    assert f"took over the lock of {tmp_path}" in out and f"pid {pid} is not running" in out


def test_a_lock_without_heartbeat_is_stale_even_from_another_host(tmp_path, capsys):
    record = {"host": "another-host", "pid": os.getpid(), "started_utc": "x"}
    write_lock(tmp_path, record, age_s=10.0)  # fresh for stale_s=60: busy
    with pytest.raises(WorkdirBusyError, match="another-host"):
        WorkdirLock(str(tmp_path), stale_s=60.0).__enter__()
    write_lock(tmp_path, record, age_s=120.0)
    with WorkdirLock(str(tmp_path), stale_s=60.0):
        pass
    assert "no heartbeat for 120 s" in capsys.readouterr().out


def test_the_heartbeat_keeps_a_held_lock_fresh(tmp_path):
    with WorkdirLock(str(tmp_path), heartbeat_s=0.05):
        path = tmp_path / LOCK_FILE
        os.utime(path, (0, 0))
        time.sleep(0.3)
        assert time.time() - os.stat(path).st_mtime < 1.0


def test_a_second_run_on_a_busy_workdir_is_refused_at_once(tmp_path):
    """Two processes: one holds the workdir, the command line's run is refused (nothing
    written besides the holder's lock), naming the holder's host and pid."""
    workdir = tmp_path / "w"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from s4dm_jax.train.workdir_lock import WorkdirLock\n"
         f"with WorkdirLock({str(workdir)!r}):\n"
         "    print('held', flush=True)\n    sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run(main_cmd(workdir, 20), cwd=str(tmp_path), timeout=300)
    finally:
        holder.communicate("")
    assert result.returncode == 1, result.stderr
    assert f"host {socket.gethostname()} pid {holder.pid}" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(workdir) == []  # the holder released its lock; the refused run wrote nothing


def test_sigterm_checkpoints_the_step_reached_and_the_run_resumes_from_it(tmp_path):
    workdir = str(tmp_path / "w")
    num_steps = 200_000  # far more than it trains before the signal
    proc = subprocess.Popen(main_cmd(workdir, num_steps), cwd=str(tmp_path), env=SUBPROCESS_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    history = os.path.join(workdir, "train_history.jsonl")
    deadline = time.monotonic() + 300
    while not (os.path.exists(history) and os.path.getsize(history) > 0):
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    steps = checkpoint.saved_steps(workdir)
    assert len(steps) == 1 and 0 < steps[0] < num_steps  # checkpoint_every is never reached
    assert f"stopped by SIGTERM at step {steps[0]}" in stderr and "resume" in stderr
    assert read_history(workdir)[-1]["step"] == steps[0]
    assert not os.path.exists(os.path.join(workdir, LOCK_FILE))

    # the same run, continued to 30 steps past the signal (num_steps may grow on resume)
    resumed = run(main_cmd(workdir, steps[0] + 30), cwd=str(tmp_path), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming from checkpoint at step {steps[0]}" in resumed.stdout
    logged = [entry["step"] for entry in read_history(workdir)]
    assert logged == sorted(set(logged)) and logged[-1] == steps[0] + 30


def test_stop_signals_record_the_first_signal_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: recorded instead
        time.sleep(0.01)
        assert stop.signum == signal.SIGINT and stop.name == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is before


def test_watchdog_warns_about_a_phase_that_does_not_finish_and_only_then():
    messages = []
    dog = Watchdog(after_s=0.2, write=messages.append)
    try:
        with dog.phase("quick call"):
            time.sleep(0.05)
        with dog.phase("stuck call"):
            time.sleep(0.6)
    finally:
        dog.close()
    assert messages and all("stuck call has not finished" in m for m in messages)
    assert "jaxlib 0.11" in messages[0]


class Requeued(Exception):
    """What the stand-in for submitit's SIGUSR2 handler raises (submitit requeues and exits)."""


def test_sigusr2_under_submitit_checkpoints_then_hands_over_to_its_handler(tmp_path):
    """submitit's Slurm jobs get SIGUSR2 before preemption or their time limit; its handler
    requeues the job. The trainer first writes the checkpoint of the step reached, then calls
    that handler, so the requeued job resumes from there."""
    from runner_configs import tiny_config

    from s4dm_jax.train.trainer import train_and_evaluate

    workdir = str(tmp_path / "w")
    seen = []

    def submitit_handler(signum, frame):
        seen.append((signum, checkpoint.saved_steps(workdir)))
        raise Requeued

    def send_when_training():
        history = os.path.join(workdir, "train_history.jsonl")
        while not (os.path.exists(history) and os.path.getsize(history) > 0):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGUSR2)

    config = tiny_config("bc", num_steps=100_000, checkpoint_every=100_000, log_every=10,
                         steps_per_call=10)
    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    sender = threading.Thread(target=send_when_training, daemon=True)
    try:
        sender.start()
        with pytest.raises(Requeued):
            train_and_evaluate(config, workdir, show_progress=False)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    (signum, steps), = seen
    assert signum == signal.SIGUSR2 and len(steps) == 1 and steps[0] > 0
    assert read_history(workdir)[-1]["step"] == steps[0]


def test_a_requeued_study_job_replays_the_same_call():
    from s4dm_jax.study.jobs import Requeueable

    job = Requeueable(lambda a, b: (a, b))
    again = job.checkpoint("cell", 3)  # what submitit submits again after a preemption
    assert again.function is job and again.result() == ("cell", 3)
