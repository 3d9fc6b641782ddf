"""Run study jobs through submitit: its local executor on one machine (the default; one job at
a time, each in a fresh process, so jobs do not fight for the cores), Slurm on a cluster (all
jobs submitted at once), or inline in this process ("debug": for tests and notebooks).

    run_jobs(fn, [(a1, b1), (a2, b2)], executor="local", folder="runs/jobs")
    run_jobs(fn, args, executor="slurm", folder="runs/jobs",
             slurm={"slurm_partition": "gpu", "gpus_per_node": 1, "timeout_min": 720})
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import submitit

EXECUTORS = ("local", "slurm", "debug")


def make_executor(executor: str, folder: str, slurm: dict | None = None,
                  timeout_min: int = 24 * 60) -> submitit.Executor:
    """submitit executor: "local", "slurm" or "debug" (inline)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    ex = submitit.AutoExecutor(folder=os.path.abspath(folder), cluster=executor)
    params: dict[str, Any] = {"timeout_min": timeout_min}
    if executor == "slurm":
        params.update(slurm or {})
    ex.update_parameters(**params)
    return ex


@contextlib.contextmanager
def _launcher_signals():
    """Within the block (main thread only), SIGTERM raises SystemExit, so the launcher's
    cleanup runs when it is killed, and SIGINT is not ignored: a launcher started in the
    background (`nohup cmd &`) inherits SIGINT ignored and would pass that on to the job
    processes it starts, so that cancelling a job (submitit sends SIGINT) did nothing. The
    previous handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous_term = signal.signal(signal.SIGTERM, _exit)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def _wait(job, label: str, report_every_s: float) -> Any:
    """Wait for a local job, printing its latest log line every `report_every_s` seconds. If
    the launcher is interrupted or terminated meanwhile, the job is cancelled (SIGINT: it stops
    after its current chunk; a killed cell resumes from its checkpoint), so no job keeps
    running without its launcher."""
    try:
        last = time.monotonic()
        while not job.done():
            time.sleep(1.0)
            if time.monotonic() - last >= report_every_s:
                last = time.monotonic()
                lines = (job.stderr() or "").replace("\r", "\n").strip().splitlines()
                print(f"  [{label}] {lines[-1][-150:] if lines else 'starting'}", flush=True)
        return job.result()
    except BaseException:
        job.cancel(check=False)
        raise


class Requeueable(submitit.helpers.Checkpointable):
    """`fn` as a submitit job that Slurm may preempt or time out: submitit's checkpoint hook
    (SIGUSR2) resubmits the same call, which resumes from its workdir's checkpoints (the
    trainer writes one at the step reached before handing the signal over to submitit)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def run_jobs(fn: Callable, args: Sequence[tuple], *, executor: str = "local",
             folder: str = "runs/jobs", slurm: dict | None = None, labels=None,
             report_every_s: float = 30.0) -> list[Any]:
    """fn(*a) for every a in `args` through submitit; returns the results in order.

    local: one job after another (each in its own process; its log is under `folder`);
    slurm: every job submitted at once as a job array, then waited for; debug: inline. A
    preempted or timed-out Slurm job is requeued and resumes (`Requeueable`).
    """
    ex = make_executor(executor, folder, slurm)
    fn = Requeueable(fn)
    labels = labels or [str(i) for i in range(len(args))]
    if executor == "slurm":
        with ex.batch():
            jobs = [ex.submit(fn, *a) for a in args]
        print(f"submitted {len(jobs)} Slurm jobs ({jobs[0].job_id}...); logs in {folder}")
        return [job.result() for job in jobs]
    results = []
    with _launcher_signals():
        for a, label in zip(args, labels, strict=True):
            job = ex.submit(fn, *a)
            if executor == "local":
                print(f"[{label}] job {job.job_id}, log {job.paths.stderr}", flush=True)
            results.append(_wait(job, label, report_every_s) if executor == "local"
                           else job.result())
    return results
