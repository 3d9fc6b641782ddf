"""A local submitit job does not outlive its launcher: SIGTERM to the launcher cancels it."""

import os
import re
import signal
import subprocess
import sys
import time

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
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_terminating_the_launcher_cancels_its_running_job(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path / "jobs")],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        pid = int(re.search(r"job (\d+)", line).group(1))
        assert _alive(pid)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(pid), "the job kept running after its launcher was terminated"
    finally:
        proc.kill()
