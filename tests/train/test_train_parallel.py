"""Data parallelism over a device mesh and vmapped seeds give the same numbers as one device /
separate runs."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
from runner_configs import ROOT, tiny_config

from s4dm_jax.train.trainer import (
    build,
    build_optimizer,
    init_state,
    make_mesh,
    make_train_chunk,
    seed_keys,
)


def _setup(model_name, **overrides):
    config = tiny_config(model_name, **overrides)
    _, sampler, model = build(config)
    return config, sampler, model, build_optimizer(config, model)[0]()


def test_vmapped_three_seeds_equal_three_single_seed_runs():
    config, sampler, model, opt = _setup("s4dm")
    mesh = make_mesh(1, jax.devices()[:1])
    chunk = make_train_chunk(model, opt, batch_size=8, context_len=model.context_len,
                             max_steps=4, mesh=mesh)
    together, metrics = chunk(init_state(model, opt, seed_keys(5, 3)), sampler.arrays, 3)
    assert metrics["loss"].shape == (3, 4)
    assert np.all(np.asarray(metrics["loss"])[:, 3] == 0)  # only 3 of the 4 steps ran
    for i in range(3):
        alone, m = chunk(init_state(model, opt, seed_keys(5 + i, 1)), sampler.arrays, 3)
        np.testing.assert_allclose(m["loss"][0], metrics["loss"][i], rtol=2e-5)
        for x, y in zip(jax.tree_util.tree_leaves(alone["params"]),
                        jax.tree_util.tree_leaves(together["params"]), strict=True):
            np.testing.assert_allclose(np.asarray(x)[0], np.asarray(y)[i], rtol=1e-4, atol=1e-6)
    # different seeds really differ
    p = jax.tree_util.tree_leaves(together["params"])[0]
    assert not np.allclose(np.asarray(p)[0], np.asarray(p)[1])


SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path[:0] = [{tests!r}, {root_tests!r}]
    import jax, numpy as np
    assert len(jax.devices()) == 4, jax.devices()
    from test_train_parallel import _setup
    from s4dm_jax.train.trainer import init_state, make_mesh, make_train_chunk, seed_keys
    from jax.sharding import NamedSharding, PartitionSpec as P
    config, sampler, model, opt = _setup({model!r})
    out = {{}}
    for name, mesh in [("one", make_mesh(1, jax.devices()[:1])), ("four", make_mesh(1)),
                       ("seeds2x2", make_mesh(2))]:
        chunk = make_train_chunk(model, opt, batch_size=8, context_len=model.context_len,
                                 max_steps=2, mesh=mesh)
        state = jax.device_put(init_state(model, opt, seed_keys(0, 2)),
                               NamedSharding(mesh, P("seed")))
        arrays = jax.device_put(sampler.arrays, NamedSharding(mesh, P()))
        state, m = chunk(state, arrays, 2)
        out[name] = [np.asarray(x) for x in jax.tree_util.tree_leaves(state["params"])]
        out[name + "_loss"] = np.asarray(m["loss"])
        print(name, mesh.shape, m["loss"][:, -1])
    for other in ("four", "seeds2x2"):
        np.testing.assert_allclose(out[other + "_loss"], out["one_loss"], rtol=1e-5)
        for a, b in zip(out["one"], out[other]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    print("DATA-PARALLEL OK")
""")


def test_data_parallel_step_on_four_cpu_devices_equals_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    tests = os.path.join(ROOT, "tests", "train")
    script = SCRIPT.format(tests=tests, root_tests=os.path.dirname(tests), model="s4dm")
    proc = subprocess.run([sys.executable, "-c", script],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tests)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "DATA-PARALLEL OK" in proc.stdout


def test_chunk_lengths_do_not_change_training():
    """Two chunks of 2 steps == one chunk of 4 steps (the runner adapts chunk lengths to the
    measured step time, so results must not depend on them)."""
    config, sampler, model, opt = _setup("dt")
    chunk = make_train_chunk(model, opt, batch_size=8, context_len=model.context_len,
                             max_steps=4, mesh=make_mesh(1, jax.devices()[:1]))
    state = init_state(model, opt, seed_keys(0, 1))
    one, m_one = chunk(state, sampler.arrays, 4)
    half, m_a = chunk(state, sampler.arrays, 2)
    two, m_b = chunk(half, sampler.arrays, 2)
    np.testing.assert_allclose(np.concatenate([m_a["loss"][:, :2], m_b["loss"][:, :2]], 1),
                               m_one["loss"], rtol=1e-6)
    for x, y in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(two), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_vmapped_learning_rates_equal_separate_runs():
    """config.sweep: trial (lr, seed) of one vmapped program == a run with that lr and seed."""
    from s4dm_jax.train.trainer import trial_inputs, trial_table

    config = tiny_config("dt", **{"sweep.learning_rate": (1e-3, 3e-3), "seeds": 2})
    _, sampler, model = build(config)
    make_opt, _ = build_optimizer(config, model)
    trials = trial_table(config)
    assert [(t["learning_rate"], t["seed"]) for t in trials] == [
        (1e-3, 0), (1e-3, 1), (3e-3, 0), (3e-3, 1)]
    mesh = make_mesh(1, jax.devices()[:1])
    chunk = make_train_chunk(model, make_opt(), batch_size=8, context_len=model.context_len,
                             max_steps=3, mesh=mesh)
    keys, hparams = trial_inputs(trials)
    together, metrics = chunk(init_state(model, make_opt(), keys, hparams, make_opt),
                              sampler.arrays, 3)
    # trials (1e-3, seed 1) and (3e-3, seed 0): both learning rates and both seeds, and a
    # swap of either axis would pair the wrong run (each separate run is its own compile)
    for i in (1, 2):
        t = trials[i]
        alone_cfg = tiny_config("dt", **{"optim.learning_rate": t["learning_rate"]})
        alone_opt = build_optimizer(alone_cfg, model)[0]()
        alone_chunk = make_train_chunk(model, alone_opt, batch_size=8,
                                       context_len=model.context_len, max_steps=3, mesh=mesh)
        alone, m = alone_chunk(init_state(model, alone_opt, seed_keys(t["seed"], 1)),
                               sampler.arrays, 3)
        np.testing.assert_allclose(m["loss"][0], metrics["loss"][i], rtol=2e-5)
        for x, y in zip(jax.tree_util.tree_leaves(alone["params"]),
                        jax.tree_util.tree_leaves(together["params"]), strict=True):
            # Adam divides by sqrt(v): on elements whose gradient is near zero it turns float32
            # rounding differences (vmapped vs separate matmuls) into update differences of
            # up to ~1e-3 lr; a wrong learning rate moves every element by ~lr per step.
            np.testing.assert_allclose(np.asarray(x)[0], np.asarray(y)[i], rtol=1e-4,
                                       atol=1e-2 * t["learning_rate"])
    # the two learning rates really train differently
    assert not np.allclose(metrics["loss"][0, -1], metrics["loss"][2, -1])
