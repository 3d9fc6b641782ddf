"""A warning when a compiled call does not return: a hang must never be silent.

`Watchdog(label_fn)` runs a daemon thread; `with watchdog.phase("training chunk"):` marks a
call that should finish; if it has not finished after `after_s` seconds (default WATCHDOG_S, or
the environment variable S4DM_JAX_WATCHDOG_S), the thread prints what is stuck, for how long,
and what to do, and repeats every `after_s` seconds until the call returns.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

WATCHDOG_S = 600.0
HINT = ("If the process sits at 0% CPU, the compiled program is deadlocked. Known case: jaxlib "
        "0.11.x on CPU (XLA's multi-threaded FFT; see docs/troubleshooting.md, 'JAX versions'). "
        "Stop it (Ctrl-C twice) and resume with the same command from the last checkpoint.")


def watchdog_seconds() -> float:
    """S4DM_JAX_WATCHDOG_S if set (a positive number), else WATCHDOG_S."""
    value = os.environ.get("S4DM_JAX_WATCHDOG_S")
    try:
        seconds = float(value) if value else WATCHDOG_S
    except ValueError:
        seconds = WATCHDOG_S
    return seconds if seconds > 0 else WATCHDOG_S


class Watchdog:
    """Warns (through `write`, default print) while a marked phase has lasted > after_s."""

    def __init__(self, after_s: float | None = None, write=print):
        self.after_s = watchdog_seconds() if after_s is None else float(after_s)
        self.write = write
        self._phase: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name="s4dm_jax watchdog")
        self._thread.start()

    @contextlib.contextmanager
    def phase(self, what: str):
        with self._lock:
            self._phase = (what, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._phase = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        warned_for = None
        poll = min(self.after_s / 4, 5.0)
        while not self._stop.wait(poll):
            with self._lock:
                phase = self._phase
            if phase is None:
                continue
            what, since = phase
            waited = time.monotonic() - since
            count = int(waited // self.after_s)
            if count >= 1 and warned_for != (phase, count):
                warned_for = (phase, count)
                self.write(f"warning: the {what} has not finished after {waited / 60:.1f} min "
                           f"(expected: seconds to a few minutes). {HINT}")
