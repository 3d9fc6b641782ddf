"""Where Decision Mamba's training step goes, next to DT's, timed side by side in one process.

Timed (all compiled ahead of time, warmed up once, then run round-robin --repeats times so that
load from other processes hits every entry alike; median and min reported):

  step[dt], step[mamba]: the full training step of each preset (`configs/<model>.py:<preset>`,
      hopper shapes obs 11 / act 3, on the embedded hopper dataset): batch sampling + forward +
      backward + AdamW update, as `trainer.make_train_chunk` runs it (--steps-per-call steps per
      call, time divided by the steps; --seeds vmapped seeds);
  model[dt], model[mamba]: the loss's forward + backward only (value_and_grad of model.loss on
      a fixed batch);
  pieces of one Mamba layer at the preset shapes (batch B, L = 3K tokens, width H, E = expand H,
      N = d_state), each forward + backward (the output and a fixed cotangent pulled back to
      every input):
        scan[<method>]    selective scan over the batch (as nn.MambaBlock calls it), every method in
                          ssm.selective.METHODS ("*" marks the backend default);
        conv[shifted-sum] the causal depthwise conv as nn.mamba does it;
        conv[lax.conv]    the same conv as one grouped lax.conv_general_dilated (for comparison);
        projections       in_proj, x_proj, dt_proj (+ softplus), out_proj matmuls;
        mixer             one nn.MambaBlock;
        block             one nn.MambaResidualBlock (mixer + MLP, dropout on).

Per-layer pieces are also shown times n_layers ("x layers"); "vs DT step" divides an entry (a
piece: times n_layers) by DT's step. Absolute times on a shared CPU are noisy: read the ratios
(every entry is measured in the same rounds).

    python experiments/profile_mamba.py                          # hopper-medium presets
    python experiments/profile_mamba.py --repeats 3 --steps-per-call 2 --only pieces  # quicker
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from s4dm_jax.configs import dt as dt_config
from s4dm_jax.configs import mamba as mamba_config
from s4dm_jax.nn import MambaBlock, MambaResidualBlock
from s4dm_jax.nn.mamba import causal_depthwise_conv
from s4dm_jax.ssm import selective
from s4dm_jax.train import trainer


def _sync(tree):
    return jax.tree_util.tree_map(lambda x: x.block_until_ready(), tree)


class Bench:
    """Named zero-argument thunks, compiled before timing, timed round-robin."""

    def __init__(self):
        self.entries = {}  # name -> (thunk, divisor, compile_s)

    def add(self, name, fn, *args, divisor: int = 1):
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        _sync(compiled(*args))  # warm-up
        self.entries[name] = (lambda: compiled(*args), divisor, time.perf_counter() - t0)
        print(f"  compiled {name} ({self.entries[name][2]:.1f} s)", flush=True)

    def run(self, repeats: int) -> dict:
        times = {name: [] for name in self.entries}
        for _ in range(repeats):
            for name, (thunk, divisor, _) in self.entries.items():
                t0 = time.perf_counter()
                _sync(thunk())
                times[name].append((time.perf_counter() - t0) / divisor)
        return {name: {"median_s": statistics.median(ts), "min_s": min(ts),
                       "compile_s": self.entries[name][2]} for name, ts in times.items()}


# ----------------------------------------------------------------------------- full steps


def _preset(module, preset: str, seeds: int):
    config = module.get_config(preset)
    config.dataset = "embedded"  # hopper shapes; no download
    config.seeds = seeds
    return config


def add_full_steps(bench: Bench, name: str, config, steps_per_call: int):
    """step[name] (sampling + fwd + bwd + AdamW, per step) and model[name] (loss fwd + bwd)."""
    _, sampler, model = trainer.build(config)
    mesh = trainer.make_mesh(config.seed_axis_devices)
    probe = model.init(jax.random.PRNGKey(0))
    make_opt, _ = trainer.build_optimizer(config, model)
    state = trainer.init_run_state(config, model, make_opt)
    state = jax.device_put(state, NamedSharding(mesh, P("seed")))
    arrays = jax.device_put(sampler.arrays, NamedSharding(mesh, P()))
    chunk = trainer.make_train_chunk(model, make_opt(), batch_size=config.batch_size,
                                     context_len=model.context_len, max_steps=steps_per_call,
                                     mesh=mesh, episode_start_windows=config.episode_start_windows)
    bench.add(f"step[{name}]", chunk, state, arrays, jnp.int32(steps_per_call),
              divisor=steps_per_call)

    batch = sampler.sample(jax.random.PRNGKey(1), config.batch_size)

    def loss_grad(params, batch, key):
        return jax.value_and_grad(lambda p: model.loss(p, batch, key, train=True)[0])(params)

    bench.add(f"model[{name}]", loss_grad, probe, batch, jax.random.PRNGKey(2))
    return model


# ----------------------------------------------------------------------------- pieces


def _grad_of(fn, num_args):
    """(args..., cotangent) -> (fn(args), the cotangent pulled back to every arg).

    The output is returned too, as in training, where it feeds the next layer: with an unused
    output XLA may compile the forward pass differently (for the chunked scan, slower)."""
    def forward_and_grads(*args_and_ct):
        *args, ct = args_and_ct
        assert len(args) == num_args
        out, pullback = jax.vjp(fn, *args)
        return out, pullback(ct)

    return forward_and_grads


def _conv_lax(x, kernel, bias):
    """Causal depthwise conv as one grouped lax.conv (comparison for causal_depthwise_conv)."""
    width, channels = kernel.shape
    y = jax.lax.conv_general_dilated(x, kernel[:, None, :], (1,), [(width - 1, 0)],
                                     dimension_numbers=("NWC", "WIO", "NWC"),
                                     feature_group_count=channels)
    return y + bias


def add_pieces(bench: Bench, mc):
    """One Mamba layer's pieces at the preset shapes (see the module docstring)."""
    b, length, h = mc.batch_size, 3 * mc.model.context_len, mc.model.d_model
    e, n, width = mc.model.expand * h, mc.model.d_state, mc.model.d_conv
    rank = -(-h // 16)
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 32))
    normal = lambda *shape: jax.random.normal(next(keys), shape, jnp.float32)

    u, delta = normal(b, length, e), jax.nn.softplus(normal(b, length, e) - 3.0)
    a = -jnp.broadcast_to(jnp.arange(1, n + 1, dtype=jnp.float32), (e, n))
    bmat, cmat, d = normal(b, length, n), normal(b, length, n), normal(e)
    ct = normal(b, length, e)
    default = selective.default_method()
    for method in selective.METHODS:
        def scan(u, delta, a, bmat, cmat, d, method=method):
            return selective.selective_scan(u, delta, a, bmat, cmat, d, method=method)

        star = "*" if method == default else ""
        bench.add(f"scan[{method}]{star}", _grad_of(scan, 6), u, delta, a, bmat, cmat, d, ct)

    kernel, bias = normal(width, e), normal(e)
    bench.add("conv[shifted-sum]", _grad_of(causal_depthwise_conv, 3), u, kernel, bias, ct)
    bench.add("conv[lax.conv]", _grad_of(_conv_lax, 3), u, kernel, bias, ct)

    x = normal(b, length, h)
    w_in, w_x, w_dt, b_dt, w_out = (normal(h, 2 * e), normal(e, rank + 2 * n), normal(rank, e),
                                    normal(e), normal(e, h))

    def projections(x, w_in, w_x, w_dt, b_dt, w_out):
        xz = x @ w_in
        proj = xz[..., :e] @ w_x
        dt = jax.nn.softplus(proj[..., :rank] @ w_dt + b_dt)
        return (dt * xz[..., e:]) @ w_out + proj[..., rank:rank + 1]

    bench.add("projections", _grad_of(projections, 6), x, w_in, w_x, w_dt, b_dt, w_out,
              normal(b, length, h))

    mask = jnp.ones((b, length), jnp.float32)
    cth = normal(b, length, h)
    mixer = MambaBlock(h, n, width, mc.model.expand)
    params = mixer.init(jax.random.PRNGKey(0), x[:1])
    bench.add("mixer", _grad_of(lambda p, x: mixer.apply(p, x, mask), 2), params, x, cth)
    block = MambaResidualBlock(h, n, width, mc.model.expand, mc.model.dropout)
    params = block.init(jax.random.PRNGKey(0), x[:1], mask[:1])

    def block_fn(p, x):
        return block.apply(p, x, mask, train=True, rngs={"dropout": jax.random.PRNGKey(3)})

    bench.add("block", _grad_of(block_fn, 2), params, x, cth)


# ----------------------------------------------------------------------------- report


def report(results: dict, n_layers: int) -> str:
    dt_step = results.get("step[dt]", {}).get("median_s")
    lines = ["| entry | median ms | min ms | x layers ms | vs DT step | compile s |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        per_layer = not name.startswith(("step[", "model["))
        scaled = f"{1e3 * r['median_s'] * n_layers:.1f}" if per_layer else "-"
        ratio = (f"{r['median_s'] * (n_layers if per_layer else 1) / dt_step:.2f}x"
                 if dt_step else "-")
        lines.append(f"| {name} | {1e3 * r['median_s']:.1f} | {1e3 * r['min_s']:.1f} | "
                     f"{scaled} | {ratio} | {r['compile_s']:.1f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="hopper-medium")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps-per-call", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--only", choices=("all", "steps", "pieces"), default="all")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    print(f"backend {jax.default_backend()}, devices {jax.devices()}, "
          f"default scan method {selective.default_method()!r}", flush=True)
    mc = _preset(mamba_config, args.preset, args.seeds)
    bench = Bench()
    if args.only in ("all", "steps"):
        for name, module in (("dt", dt_config), ("mamba", mamba_config)):
            add_full_steps(bench, name, _preset(module, args.preset, args.seeds),
                           args.steps_per_call)
    if args.only in ("all", "pieces"):
        add_pieces(bench, mc)
    results = bench.run(args.repeats)
    print(f"\npreset {args.preset}, batch {mc.batch_size}, K {mc.model.context_len} "
          f"({3 * mc.model.context_len} tokens), {args.seeds} seed(s), median of "
          f"{args.repeats} round-robin runs; per-layer pieces x {mc.model.n_layers} layers\n")
    print(report(results, mc.model.n_layers))
    if "step[dt]" in results and "step[mamba]" in results:
        ratio = results["step[mamba]"]["median_s"] / results["step[dt]"]["median_s"]
        print(f"\nMamba step / DT step = {ratio:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": jax.default_backend(), "preset": args.preset,
                       "seeds": args.seeds, "repeats": args.repeats,
                       "default_scan_method": selective.default_method(),
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
