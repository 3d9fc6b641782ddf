"""One run per workdir: a lock file with the holder's host and pid, kept fresh by a heartbeat.

Two runs on one workdir (a double launch, or a scheduler's requeue overlapping a job that is
still running) would interleave their training records and write the same checkpoints. The
first run creates <workdir>/.s4dm_jax.lock (O_EXCL: atomic on local and NFS v3+ file systems)
and a daemon thread touches it every HEARTBEAT_S seconds. A second run is refused at once with
the holder's host and pid. A lock is stale, and is taken over with a message, when its pid is
no longer running on this host, or when its heartbeat is older than STALE_S (the holder died
on another host, or its container was restarted).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from s4dm_jax.provenance import process_alive

LOCK_FILE = ".s4dm_jax.lock"
HEARTBEAT_S = 30.0
STALE_S = 300.0  # ten missed heartbeats


class WorkdirBusyError(RuntimeError):
    """Another live run holds the workdir; the message names its host and pid."""


def _read_holder(path: str) -> dict:
    """The lock's JSON record, {} when it is unreadable (half written or not ours)."""
    try:
        with open(path) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "an unknown process (unreadable lock record)"
    return (f"host {holder.get('host', '?')} pid {holder.get('pid', '?')} (started "
            f"{holder.get('started_utc', '?')})")


def stale_reason(holder: dict, heartbeat_age_s: float, stale_s: float = STALE_S) -> str | None:
    """Why a lock held by `holder` is stale, or None while its holder may be alive."""
    if heartbeat_age_s > stale_s:
        return f"no heartbeat for {heartbeat_age_s:.0f} s"
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        if not process_alive(pid):
            return f"pid {pid} is not running on this host"
    return None


class WorkdirLock:
    """`with WorkdirLock(workdir):` holds the workdir for one run (see the module docstring).

    Raises WorkdirBusyError on entry when a live run holds it. A stale lock is taken over and
    the takeover printed. On exit the lock file is removed if it is still this run's.
    """

    def __init__(self, workdir: str, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S):
        self.workdir = os.path.abspath(workdir)
        self.path = os.path.join(self.workdir, LOCK_FILE)
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.record = {"host": socket.gethostname(), "pid": os.getpid(),
                       "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WorkdirLock:
        os.makedirs(self.workdir, exist_ok=True)
        for _ in range(5):  # each round either takes the lock or clears a stale one
            if self._try_create():
                self._thread = threading.Thread(target=self._beat, daemon=True,
                                                name="s4dm_jax workdir lock")
                self._thread.start()
                return self
            holder = _read_holder(self.path)
            try:
                age = time.time() - os.stat(self.path).st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            reason = stale_reason(holder, age, self.stale_s)
            if reason is None:
                raise WorkdirBusyError(
                    f"{self.workdir} is in use by {_describe(holder)}, whose heartbeat is "
                    f"{age:.0f} s old: two runs on one workdir would interleave their records "
                    "and checkpoints. Nothing was written. Wait for that run to finish, stop "
                    f"it, or use another --workdir. If it is gone (its lock, {self.path}, is "
                    f"taken over by itself after {self.stale_s:.0f} s without a heartbeat), "
                    "you may delete the lock file.")
            aside = f"{self.path}.stale-{self.record['token']}"
            try:
                os.rename(self.path, aside)  # only one of several takers succeeds
            except FileNotFoundError:
                continue
            os.remove(aside)
            print(f"warning: took over the lock of {self.workdir} from {_describe(holder)}: "
                  f"{reason}")
        raise WorkdirBusyError(f"could not take the lock {self.path}: other runs keep taking "
                               "it; use another --workdir")

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if _read_holder(self.path).get("token") == self.record["token"]:
            os.remove(self.path)

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.record, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:  # removed by hand: the run goes on, unprotected
                return
