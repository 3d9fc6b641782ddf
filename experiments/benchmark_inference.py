"""Per-environment-step inference latency of the decision models' `step` API (hopper shapes).

For each model (DEFAULTS from `s4dm_jax.models`), length and batch size, one jitted function
runs `model.step` over the steps of an episode in a lax.fori_loop (the step count is a runtime
argument, so S4DM and Mamba compile once per batch size), feeding each action back as the next
a_prev; it is compiled ahead of time, warmed up once and timed over --repeats runs (median,
block_until_ready). Reported: us/step = total / steps. A second column times a Python loop of
single jitted `step` calls (block_until_ready after each), i.e. the latency an environment loop
sees, dispatch overhead included.

"length" means:
  * s4dm, mamba: the number of steps run (the carry is a fixed-size recurrent state, so the
    per-step cost should not depend on it; Decision Mamba is timed with inference="recurrent",
    its O(1) step, not its default K-window step, which costs what a DT-style window costs);
  * dt: the context length K (`context_len=length`, `max_ep_len=max(1000, length)`); each step
    re-runs the transformer on the full, left-padded K-step window (3K tokens), so its cost is
    the same at every t and only min(length, --dt-max-steps) steps are timed.

    python experiments/benchmark_inference.py                  # lengths 20 100 1000, batch 1 10
    python experiments/benchmark_inference.py --lengths 4 8 --batches 1 2 --repeats 1  # smoke
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
from _bench import run_and_report

from s4dm_jax.models import make_model

OBS_DIM, ACT_DIM = 11, 3  # hopper


def build(name: str, length: int):
    """Model with its DEFAULTS; DT gets context_len = length (and max_ep_len >= length), Decision
    Mamba its recurrent step (inference="recurrent")."""
    if name == "dt":
        return make_model(name, OBS_DIM, ACT_DIM, context_len=length,
                          max_ep_len=max(1000, length))
    if name == "mamba":
        return make_model(name, OBS_DIM, ACT_DIM, inference="recurrent")
    return make_model(name, OBS_DIM, ACT_DIM)


def episode_inputs(steps: int, batch: int, seed: int = 0):
    """Random rtg [T,B], states [T,B,obs] and timesteps [T,B] int32."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    rtg = 3.0 * jax.random.uniform(k1, (steps, batch))
    states = jax.random.normal(k2, (steps, batch, OBS_DIM))
    ts = jnp.broadcast_to(jnp.arange(steps, dtype=jnp.int32)[:, None], (steps, batch))
    return rtg, states, ts


def make_episode(model):
    """(params, carry, rtg, states, ts, n) -> (carry, a_n) running `model.step` n times.

    rtg, states, ts hold at least n steps; n is a traced loop bound, so one compilation serves
    every episode length (lax.fori_loop -> while loop; the action is fed back as a_prev).
    """
    def episode(params, carry, rtg, states, ts, n):
        def body(i, c):
            carry, a_prev = c
            return model.step(params, carry, rtg[i], states[i], a_prev, ts[i])

        a0 = jnp.zeros((rtg.shape[1], ACT_DIM), jnp.float32)
        return jax.lax.fori_loop(0, n, body, (carry, a0))

    return episode


def _sync(tree):
    jax.tree_util.tree_map(lambda x: x.block_until_ready(), tree)


class Timer:
    """Compiled episode and single-step functions of one model, cached per batch size."""

    def __init__(self, model, params, max_steps: int):
        # step runs on prepared variables (S4DM: each layer's readout C from its trained C~)
        self.model, self.params = model, jax.jit(model.prepare_step)(params)
        self.max_steps = max_steps
        self._episode, self._step = {}, {}

    def _inputs(self, batch):
        return (self.params, self.model.init_carry(batch),
                *episode_inputs(self.max_steps, batch))

    def time_episode(self, steps: int, batch: int, repeats: int) -> dict:
        """Median us/step of an n-step episode (warmed up); compile s (0 if cached)."""
        args = (*self._inputs(batch), jnp.int32(steps))
        compile_s = 0.0
        if batch not in self._episode:
            t0 = time.perf_counter()
            self._episode[batch] = jax.jit(make_episode(self.model)).lower(*args).compile()
            compile_s = time.perf_counter() - t0
        fn = self._episode[batch]
        _sync(fn(*args))  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _sync(fn(*args))
            times.append(time.perf_counter() - t0)
        return {"compile_s": compile_s, "us_per_step": 1e6 * statistics.median(times) / steps}

    def time_loop(self, steps: int, batch: int) -> float:
        """Median us per call of the jitted single `step` in a Python loop (synchronised)."""
        params, carry, rtg, states, ts = self._inputs(batch)
        if batch not in self._step:
            self._step[batch] = jax.jit(self.model.step)
        step = self._step[batch]
        a = jnp.zeros((batch, ACT_DIM), jnp.float32)
        _sync(step(params, carry, rtg[0], states[0], a, ts[0]))  # compile + warm-up
        times = []
        for i in range(steps):
            t0 = time.perf_counter()
            carry, a = step(params, carry, rtg[i], states[i], a, ts[i])
            _sync((carry, a))
            times.append(time.perf_counter() - t0)
        return 1e6 * statistics.median(times)


def run(args) -> list[dict]:
    rows = []
    for name in args.models:
        timer = None
        for length in args.lengths:
            steps = min(length, args.dt_max_steps) if name == "dt" else length
            if timer is None or name == "dt":  # only DT's model depends on the length
                model = build(name, length)
                timer = Timer(model, model.init(jax.random.PRNGKey(0)),
                              steps if name == "dt" else max(args.lengths))
            for batch in args.batches:
                row = {"model": name, "length": length, "batch": batch, "steps_timed": steps}
                row.update(timer.time_episode(steps, batch, args.repeats))
                if args.loop_steps > 0:
                    row["us_per_call_loop"] = timer.time_loop(min(steps, args.loop_steps), batch)
                print(f"  {name} length={length} batch={batch}: {row['us_per_step']:.1f} us/step"
                      f" ({steps} steps in one jit, compile {row['compile_s']:.1f} s)"
                      + (f", {row['us_per_call_loop']:.1f} us/call (Python loop)"
                         if "us_per_call_loop" in row else ""), flush=True)
                rows.append(row)
    dt = {(r["length"], r["batch"]): r["us_per_step"] for r in rows if r["model"] == "dt"}
    for r in rows:
        ref = dt.get((r["length"], r["batch"]))
        r["ratio_vs_dt"] = r["us_per_step"] / ref if ref else None
    return rows


def markdown(rows: list[dict]) -> str:
    """model | length | batch | us/step | vs DT | us/call (Python loop) | steps timed."""
    lines = ["| model | length | batch | us/step | vs DT | us/call (Python loop) | steps timed |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "-" if r["ratio_vs_dt"] is None else f"{r['ratio_vs_dt']:.3g}x"
        loop = f"{r['us_per_call_loop']:.1f}" if "us_per_call_loop" in r else "-"
        lines.append(f"| {r['model']} | {r['length']} | {r['batch']} | {r['us_per_step']:.1f}"
                     f" | {ratio} | {loop} | {r['steps_timed']} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["s4dm", "dt", "mamba"],
                   choices=["s4dm", "dt", "mamba", "bc"])
    p.add_argument("--lengths", type=int, nargs="+", default=[20, 100, 1000])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 10])
    p.add_argument("--repeats", type=int, default=3, help="timed episodes (median)")
    p.add_argument("--dt-max-steps", type=int, default=5,
                   help="steps timed for dt (its per-step cost does not depend on t)")
    p.add_argument("--loop-steps", type=int, default=20,
                   help="single-step calls timed in the Python loop (0: skip that column)")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = p.parse_args(argv)
    run_and_report(args, run, markdown,
                   f"hopper shapes obs={OBS_DIM} act={ACT_DIM}, repeats={args.repeats}")


if __name__ == "__main__":
    main()
