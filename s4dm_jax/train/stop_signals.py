"""SIGTERM / SIGINT / SIGUSR2 during training: finish the chunk, checkpoint, then stop.

Slurm and Kubernetes send SIGTERM before preemption, a user presses Ctrl-C (SIGINT), and
submitit's Slurm jobs get SIGUSR2 before their time limit. Within `StopSignals`, the first such
signal only sets `signum`; the training loop checks it after every chunk (a few seconds),
writes a checkpoint and its training record at that step and raises TrainingInterrupted, or,
for SIGUSR2 under submitit, hands over to submitit's own handler, which requeues the job (it
resumes from the checkpoint). A second signal restores the previous handlers and re-raises
the signal at once (the usual "press Ctrl-C twice").
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after writing a checkpoint; the message says how to resume.
    `exit_code` is 128 + the signal number, the shell's convention."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class StopSignals:
    """Records the first stop signal in `signum` (None: none yet); a context manager, or
    install() ... restore(). Only in the main thread (Python delivers signals there); elsewhere
    it records nothing."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def install(self) -> StopSignals:
        """Install the handlers (restore() puts the previous ones back)."""
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            print(f"\n{signal.Signals(signum).name} received: finishing the current chunk, then "
                  "writing a checkpoint (send it again to stop at once)", flush=True)
            return
        self.restore()
        signal.raise_signal(signum)

    def hand_over(self) -> bool:
        """Call the handler that was installed before ours for the received signal, if it is a
        Python function (submitit's SIGUSR2 handler, which checkpoints the job and requeues it);
        True if one was called."""
        previous = self._previous.get(self.signum)
        if not callable(previous):
            return False
        self.restore()
        previous(self.signum, None)
        return True
