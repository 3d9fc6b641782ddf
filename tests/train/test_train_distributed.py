"""Multi-process training with jax.distributed: 2 processes on localhost (CPU, gloo
collectives), each with one device, split the global batch over the mesh's "data" axis; their
training record equals a single process's with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
from runner_configs import ROOT

ARGS = ["--config=" + os.path.join(ROOT, "configs", "dt.py") + ":embedded",
        "--config.num_steps=4", "--config.steps_per_call=2", "--config.log_every=1",
        "--config.checkpoint_every=2", "--config.batch_size=8", "--config.model.d_model=16",
        "--config.model.n_layers=1", "--config.model.context_len=8", "--config.eval.episodes=1",
        "--config.eval.max_episode_steps=10", "--config.eval.every=2",
        "--compilation_cache_dir=", "--progress=false"]


def _records(workdir):
    with open(os.path.join(workdir, "train_history.jsonl")) as fh:
        return list(map(json.loads, fh))


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in _records(workdir)]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    main = [sys.executable, "-m", "s4dm_jax.main"]
    single = subprocess.run(main + ARGS + [f"--workdir={tmp_path / 'one'}"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    port = _free_port()
    procs = [subprocess.Popen(
        main + ARGS + [f"--workdir={tmp_path / 'two'}", "--distributed",
                       f"--coordinator_address=localhost:{port}", "--num_processes=2",
                       f"--process_id={i}"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    two, one = _losses(tmp_path / "two"), _losses(tmp_path / "one")
    assert [s for s, _ in two] == [1, 2, 3, 4]
    for (s1, l1), (s2, l2) in zip(one, two, strict=True):
        assert s1 == s2
        assert abs(l1[0] - l2[0]) <= 1e-5 * abs(l1[0])
    # the evaluation during training (eval.every=2) runs in every process, on its host's copy
    # of the parameters, and gives a single process's returns
    evals = [[r["eval"]["returns_per_seed"] for r in _records(w) if "eval" in r]
             for w in (tmp_path / "one", tmp_path / "two")]
    assert len(evals[0]) == len(evals[1]) == 1
    np.testing.assert_allclose(evals[1], evals[0], rtol=1e-3)
    # process 1 kept its own records apart; process 0 wrote the results
    assert (tmp_path / "two" / "process1" / "train_history.jsonl").exists()
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert len(results["devices"]) == 2


def test_seeds_sharded_over_processes_evaluate_during_training(tmp_path):
    """Seeds on different processes (seed_axis_devices=2): the parameters are not fully
    addressable from one process, and the evaluation during training gathers them first."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "s4dm_jax.main", *ARGS, "--config.seeds=2",
         "--config.seed_axis_devices=2", f"--workdir={tmp_path / 'run'}", "--distributed",
         f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    (periodic,) = [r["eval"]["returns_per_seed"] for r in _records(tmp_path / "run")
                   if "eval" in r]
    assert np.asarray(periodic).shape == (1, 2, 1) and np.isfinite(periodic).all()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["seeds"] == [0, 1]
