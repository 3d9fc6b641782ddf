"""Run a command in a subprocess and `kill -9` it the moment a condition on disk holds (shared
by the reliability tests of tests/train and tests/data)."""

import os
import signal
import subprocess
import sys
import time

# One CPU device and no GPU probing: the subprocesses match the in-process tests' numbers.
SUBPROCESS_ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_and_kill_when(cmd, condition, *, cwd, timeout: float = 600.0, poll_s: float = 0.002):
    """Start `cmd`; SIGKILL it as soon as `condition()` is true. Returns (returncode, stderr):
    -9 when it was killed, its own exit code when it ended first."""
    err_path = os.path.join(cwd, f"stderr-{time.monotonic_ns()}.txt")
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL,
                                stderr=err)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if condition():
                os.kill(proc.pid, signal.SIGKILL)
                break
            if time.monotonic() > deadline:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(f"{cmd} did not reach the kill condition in {timeout} s")
            time.sleep(poll_s)
        proc.wait()
    with open(err_path) as f:
        stderr = f.read()
    os.remove(err_path)
    return proc.returncode, stderr


def run(cmd, *, cwd, timeout: float = 600.0) -> subprocess.CompletedProcess:
    """Run `cmd` to completion (stdout and stderr captured as text)."""
    return subprocess.run(cmd, cwd=cwd, env=SUBPROCESS_ENV, capture_output=True, text=True,
                          timeout=timeout)
