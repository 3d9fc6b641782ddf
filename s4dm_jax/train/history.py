"""The training record <workdir>/train_history.jsonl: one JSON object per logged step, appended,
flushed and fsync'd as it is logged, so a `kill -9` loses at most the interval being trained.

Each record: {"step", "loss" [S], "grad_norm" [S], "learning_rate", "steps_per_s", "train_s"}
(train_s: cumulative training seconds at that step, compilation excluded), and at each periodic
evaluation (config.eval.every) "eval": {"target_returns" [T], "returns_per_seed" [T][S][E]}
(episode returns of the parameters at that step). On resume the record
is cut back to the restored checkpoint's step, so it always describes the parameters in use.
"""

from __future__ import annotations

import json
import os

from s4dm_jax.train.checkpoint import atomic_write_text

HISTORY_FILE = "train_history.jsonl"


def history_path(workdir: str) -> str:
    return os.path.join(workdir, HISTORY_FILE)


def read_history(workdir: str) -> list[dict]:
    """Records of <workdir>/train_history.jsonl in order ([] if absent); a line torn by a kill
    (not valid JSON) is dropped."""
    path = history_path(workdir)
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "step" in record:
                records.append(record)
    return records


def truncate_history(workdir: str, step: int) -> list[dict]:
    """Keep only records with step <= `step` (rewritten atomically); returns them."""
    records = [r for r in read_history(workdir) if r["step"] <= step]
    if records or os.path.exists(history_path(workdir)):
        atomic_write_text(history_path(workdir), "".join(_line(r) for r in records))
    return records


class HistoryWriter:
    """Appends records to <workdir>/train_history.jsonl, each flushed and fsync'd."""

    def __init__(self, workdir: str):
        os.makedirs(workdir, exist_ok=True)
        self._file = open(history_path(workdir), "a")

    def append(self, record: dict) -> None:
        self._file.write(_line(record))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _line(record: dict) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"
