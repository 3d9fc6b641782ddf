"""A local submitit job does not outlive its launcher: SIGTERM to the launcher stops the job's
controller and the task process it runs, also when the launcher was started in the background
with SIGINT ignored (`nohup ... &`), which is how long study runs are launched."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

LAUNCHER = """
import sys, time
from s4dm_jax.study import jobs
jobs.run_jobs(time.sleep, [(120,)], executor="local", folder=sys.argv[1], report_every_s=1)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().split(")")[-1].split()[1]) == pid:
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "background"])
def test_terminating_the_launcher_stops_its_job_and_task(tmp_path, sigint_ignored):
    cmd = [sys.executable, "-c", LAUNCHER, str(tmp_path / "jobs")]
    if sigint_ignored:  # as `nohup cmd &` from a script: SIGINT ignored, inherited over exec
        cmd = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    tasks: list[int] = []
    try:
        line = proc.stdout.readline()
        controller = int(re.search(r"job (\d+)", line).group(1))
        assert _alive(controller)
        assert _wait_for(lambda: bool(_children(controller)), 30), "the job started no task"
        tasks = _children(controller)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert _wait_for(lambda: not _alive(controller), 30), \
            "the job's controller kept running after its launcher was terminated"
        assert _wait_for(lambda: not any(_alive(t) for t in tasks), 30), \
            "the job's task kept running after its launcher was terminated"
    finally:
        proc.kill()
        for pid in tasks:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
