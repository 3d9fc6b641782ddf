"""Training cost of the four decision models at their presets, side by side in one process.

Each model runs the runner's own compiled training chunk (`s4dm_jax.train.trainer
.make_train_chunk`: batch sampling + forward/backward + optimiser update, vmapped over seeds)
with its `<env>-<dataset>` preset config (model, batch size, context, optimiser). The data are
the embedded Hopper dataset (the shapes, episode lengths and sampling of hopper-medium; no
dataset needs to be generated). For each model and seed count the script reports the compile
time, the XLA temporary-buffer size (the compiled program's peak working memory beyond its
inputs and outputs), and seconds per training step, timed round-robin over all configurations
(so slow periods of a shared machine hit every model alike): the fastest of --rounds chunks of
--steps steps, and the median.

    python experiments/benchmark_train.py                       # 1, 3, 5 seeds, all models
    python experiments/benchmark_train.py --seeds 1 --rounds 2 --steps 2   # quick look

Columns: s/step (min over rounds), tokens/s = seeds x batch x context x tokens per env step /
(s/step), and "vs DT" = s/step over DT's s/step at the same seed count.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

import jax
import jax.numpy as jnp
from _bench import run_and_report

from s4dm_jax.train import trainer

MODELS = ("s4dm", "dt", "mamba", "bc")


def preset_config(model: str, preset: str, compute_dtype: str | None = None):
    """The model's preset config on the embedded dataset (hopper shapes); `compute_dtype`
    ("float32" / "bfloat16") replaces the preset's if given."""
    config = importlib.import_module(f"s4dm_jax.configs.{model}").get_config(preset)
    config.dataset = "embedded"
    if compute_dtype is not None:
        config.model.compute_dtype = compute_dtype
    return config


def tokens_per_step(model) -> int:
    """Sequence tokens per environment step in the model's training call."""
    layout = model.config.get("token_layout", "interleaved" if model.name in ("dt", "mamba")
                              else "step")
    return 3 if layout == "interleaved" else 1


class Case:
    """One (model, seeds) configuration: its compiled chunk, state and data."""

    def __init__(self, name: str, preset: str, seeds: int, steps: int,
                 compute_dtype: str | None = None):
        config = preset_config(name, preset, compute_dtype)
        _, sampler, model = trainer.build(config)
        make_opt, self.num_params = trainer.build_optimizer(config, model)
        optimizer = make_opt()
        mesh = trainer.make_mesh(1, jax.devices()[:1])
        self.name, self.seeds, self.steps = name, seeds, steps
        self.dtype = str(model.compute_dtype)  # what the compiled model really computes in
        self.batch, self.context = int(config.batch_size), int(model.context_len)
        self.tokens = self.batch * self.context * tokens_per_step(model) * seeds
        self.state = trainer.init_state(model, optimizer, trainer.seed_keys(0, seeds))
        self.arrays = sampler.arrays
        t0 = time.perf_counter()
        self.fn = trainer.make_train_chunk(
            model, optimizer, batch_size=self.batch, context_len=self.context, max_steps=steps,
            mesh=mesh, episode_start_windows=config.episode_start_windows,
        ).lower(self.state, self.arrays, jnp.int32(steps)).compile()
        self.compile_s = time.perf_counter() - t0
        memory = self.fn.memory_analysis()
        self.temp_mb = (memory.temp_size_in_bytes / 2**20) if memory is not None else float("nan")
        self.times: list[float] = []
        self.run()  # warm-up

    def run(self) -> float:
        t0 = time.perf_counter()
        self.state, metrics = self.fn(self.state, self.arrays, jnp.int32(self.steps))
        jax.block_until_ready(metrics)
        return (time.perf_counter() - t0) / self.steps

    def row(self, dt_step: float) -> dict:
        best = min(self.times)
        return {"model": self.name, "seeds": self.seeds, "dtype": self.dtype, "batch": self.batch,
                "context": self.context, "params": self.num_params,
                "compile_s": self.compile_s, "temp_mb": self.temp_mb,
                "s_per_step": best, "s_per_step_median": statistics.median(self.times),
                "seed_steps_per_s": self.seeds / best, "tokens_per_s": self.tokens / best,
                "vs_dt": best / dt_step}


def run(args) -> list[dict]:
    cases = []
    for seeds in args.seeds:
        for name in args.models:
            case = Case(name, args.preset, seeds, args.steps, args.compute_dtype)
            print(f"  compiled {name} x{seeds} seeds in {case.compile_s:.1f} s", flush=True)
            cases.append(case)
    for r in range(args.rounds):  # round-robin: every configuration sees the same conditions
        for case in cases:
            case.times.append(case.run())
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(
            f"{c.name}x{c.seeds} {c.times[-1]:.3f}" for c in cases), flush=True)
    rows = []
    for seeds in args.seeds:
        group = [c for c in cases if c.seeds == seeds]
        dt_case = next((c for c in group if c.name == "dt"), None)
        dt_step = min(dt_case.times) if dt_case else float("nan")
        rows += [c.row(dt_step) for c in group]
    one_seed = {r["model"]: r["s_per_step"] for r in rows if r["seeds"] == 1}
    for r in rows:
        r["vs_one_seed"] = r["s_per_step"] / one_seed[r["model"]] if r["model"] in one_seed \
            else float("nan")
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| model | seeds | dtype | batch x context | params | compile s | XLA temp MB "
            "| s/step (min) | s/step (median) | seed-steps/s | tokens/s | vs DT | vs 1 seed |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['seeds']} | {r['dtype']} | {r['batch']} x {r['context']} "
            f"| {r['params']:,} "
            f"| {r['compile_s']:.1f} | {r['temp_mb']:.0f} | {r['s_per_step']:.3f} "
            f"| {r['s_per_step_median']:.3f} | {r['seed_steps_per_s']:.2f} "
            f"| {r['tokens_per_s']:,.0f} | {r['vs_dt']:.2f} | {r['vs_one_seed']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 3, 5],
                   help="vmapped seed counts (1 should be among them for the 'vs 1 seed' column)")
    p.add_argument("--preset", default="hopper-medium", help="config preset <env>-<dataset>")
    p.add_argument("--steps", type=int, default=3, help="training steps per timed chunk")
    p.add_argument("--rounds", type=int, default=5, help="timed chunks per configuration")
    p.add_argument("--compute-dtype", choices=("float32", "bfloat16"),
                   help="the models' compute dtype (default: the preset's, float32); bfloat16 "
                        "is mixed precision for accelerators")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = p.parse_args(argv)
    return run_and_report(args, run, markdown,
                          f"preset {args.preset} on the embedded dataset; {args.steps} steps x "
                          f"{args.rounds} rounds; compute dtype "
                          f"{args.compute_dtype or 'of the preset'}")


if __name__ == "__main__":
    main()
