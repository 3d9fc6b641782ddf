"""Time the two views of an S4 layer: kernel + causal FFT convolution vs the lax.scan recurrence.

For each length L, H channels of an N-state SSM (HiPPO-LegS init from `s4dm_jax.nn.s4`) map an
input u [L, batch, H] to y [L, batch, H] in two ways:

  conv path: K = kernels.cauchy_dplr (mode dplr) | kernels.vandermonde (mode diag), vmapped over
             channels, then y = conv.causal_conv(u, K, D) ("kernel ms": K alone);
  scan path: recurrence.dplr_scan (dplr) | recurrence.scan on the discretised diagonal system
             (diag), vmapped over channels and batch, plus D u.

Both are jitted and compiled ahead of time (compile time is reported separately), warmed up once,
synchronised with block_until_ready and timed over --repeats runs (median). The outputs are
compared once per L (max abs diff), so the timings are for the same function.

In dplr mode the layer trains C~ = (I - Ab^L)^T C (as the official S4 does): the conv path
uses it directly, and the scan path needs C, computed once per set of parameters by
`kernels.dplr_c_from_tilde` (dense, O(N^3 log L) per channel; reported as "setup ms").

    python experiments/benchmark_ssm.py                       # L in {256, 1024, 4096}, H=128, N=64
    python experiments/benchmark_ssm.py --lengths 64 --H 8 --N 8 --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from _bench import run_and_report

from s4dm_jax.nn.s4 import ssm_init_arrays
from s4dm_jax.ssm import conv, discretize, kernels, recurrence


def make_system(mode: str, H: int, N: int, seed: int = 0) -> dict:
    """Per-channel complex64 system: Lambda, P (dplr), B [H, M], C [H, M], D, dt [H].

    (Lambda, P, B) come from the LegS init shared by all channels (S4Layer n_ssm=1); C is
    complex normal, D normal and dt log-uniform in [1e-3, 1e-1] per channel, as in S4Layer.
    """
    lam, p, b = ssm_init_arrays("legs", N, mode)
    rng = np.random.default_rng(seed)
    m = N // 2
    sys_ = {
        "Lambda": np.broadcast_to(lam, (H, m)),
        "B": np.broadcast_to(b, (H, m)),
        "C": (rng.normal(size=(H, m)) + 1j * rng.normal(size=(H, m))) * 0.5 ** 0.5,
        "D": rng.normal(size=(H,)),
        "dt": np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), size=(H,))),
    }
    if p is not None:
        sys_["P"] = np.broadcast_to(p, (H, *p.shape))
    return {k: jnp.asarray(v, jnp.complex64 if np.iscomplexobj(v) else jnp.float32)
            for k, v in sys_.items()}


def kernel_fn(mode: str, discretization: str, L: int):
    """Function system -> K [L, H] (kernel generation alone, vmapped over channels)."""
    def f(s):
        if mode == "dplr":
            k = jax.vmap(kernels.cauchy_dplr, in_axes=(0, 0, 0, 0, 0, None))(
                s["Lambda"], s["P"], s["B"], s["C_tilde"], s["dt"], L)
        else:
            def one(lam, b, c, dt):
                return kernels.vandermonde(lam, b, c, dt, L, method=discretization)

            k = jax.vmap(one)(s["Lambda"], s["B"], s["C"], s["dt"])
        return k.T

    return f


def conv_path(mode: str, discretization: str, L: int):
    """Function (system, u [L,B,H]) -> y [L,B,H] through the kernel and the FFT convolution."""
    kernel = kernel_fn(mode, discretization, L)

    def f(s, u):
        return conv.causal_conv(u, kernel(s).astype(u.dtype), s["D"])

    return f


def scan_path(mode: str, discretization: str):
    """Function (system, u [L,B,H]) -> y [L,B,H] through the sequential recurrence."""
    def f(s, u):
        if mode == "dplr":
            def one(lam, p, b, c, dt, u_h):
                return recurrence.dplr_scan(lam, p, p, b, c, dt, u_h)[1]

            params = (s["Lambda"], s["P"], s["B"], s["C"], s["dt"])
        else:
            disc = discretize.zoh_diag if discretization == "zoh" else discretize.bilinear_diag
            ab, bb = jax.vmap(disc)(s["Lambda"], s["B"], s["dt"])

            def one(ab_h, bb_h, c, u_h):
                return recurrence.scan(ab_h, bb_h, c, u_h, conj_symmetric=True)[1]

            params = (ab, bb, s["C"])
        n = len(params)
        # u [L,B,H]: channels map to axis 2 (params axis 0), batch to axis 1 (params shared)
        over_h = jax.vmap(one, in_axes=(0,) * n + (1,), out_axes=1)
        over_b = jax.vmap(over_h, in_axes=(None,) * n + (1,), out_axes=1)
        y = over_b(*params, u)  # [L, B, H]
        return y.astype(u.dtype) + s["D"] * u

    return f


def compile_and_time(f, args, repeats: int) -> tuple[float, list[float], jax.Array]:
    """AOT-compile f, warm it up, time `repeats` synchronised runs.

    Returns (compile seconds, run times in ms, output).
    """
    t0 = time.perf_counter()
    compiled = jax.jit(f).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out = compiled(*args)
    out.block_until_ready()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        compiled(*args).block_until_ready()
        times.append(1e3 * (time.perf_counter() - t0))
    return compile_s, times, out


def run(args) -> list[dict]:
    """Benchmark every (mode, L); print one line per row as it finishes."""
    rows = []
    modes = ["dplr", "diag"] if args.mode == "both" else [args.mode]
    for mode in modes:
        system = make_system(mode, args.H, args.N, args.seed)
        for L in args.lengths:
            u = jax.random.normal(jax.random.PRNGKey(args.seed), (L, args.batch, args.H))
            s = dict(system)
            row = {"mode": mode, "L": L, "H": args.H, "N": args.N, "batch": args.batch}
            if mode == "dplr":  # C~ is the trained parameter; the recurrence needs C (once)
                s["C_tilde"] = s.pop("C")
                c_s, t_setup, s["C"] = compile_and_time(
                    lambda s, L=L: jax.vmap(kernels.dplr_c_from_tilde,
                                            in_axes=(0, 0, 0, 0, 0, None))(
                        s["Lambda"], s["P"], s["B"], s["C_tilde"], s["dt"], L), (s,), 1)
                row.update(setup_ms=t_setup[0])
            _, t_k, _ = compile_and_time(kernel_fn(mode, args.discretization, L), (s,),
                                         args.repeats)
            row["kernel_ms"] = statistics.median(t_k)
            c_s, t_conv, y_conv = compile_and_time(
                conv_path(mode, args.discretization, L), (s, u), args.repeats)
            row.update(conv_ms=statistics.median(t_conv), conv_ms_min=min(t_conv),
                       conv_compile_s=c_s)
            c_s, t_scan, y_scan = compile_and_time(
                scan_path(mode, args.discretization), (s, u), args.repeats)
            row.update(scan_ms=statistics.median(t_scan), scan_ms_min=min(t_scan),
                       scan_compile_s=c_s)
            row["ratio"] = row["scan_ms"] / row["conv_ms"]
            row["max_abs_diff"] = float(jnp.max(jnp.abs(y_scan - y_conv)))
            row["max_abs_y"] = float(jnp.max(jnp.abs(y_scan)))
            print(f"  {mode} L={L}: conv {row['conv_ms']:.3f} ms, scan {row['scan_ms']:.3f} ms,"
                  f" max|y_scan - y_conv| = {row['max_abs_diff']:.2e}"
                  f" (max|y| = {row['max_abs_y']:.2f}); compile conv {row['conv_compile_s']:.2f}"
                  f" s, scan {row['scan_compile_s']:.2f} s", flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """The results table (one row per mode and L)."""
    head = ("| mode | L | kernel ms | conv path ms | setup C~->C ms | scan path ms |"
            " scan/conv ratio | max abs diff | compile conv / scan s |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        ct = f"{r['setup_ms']:.1f}" if "setup_ms" in r else "-"
        lines.append(f"| {r['mode']} | {r['L']} | {r['kernel_ms']:.3f} | {r['conv_ms']:.3f} | {ct}"
                     f" | {r['scan_ms']:.3f} | {r['ratio']:.2f} | {r['max_abs_diff']:.1e}"
                     f" | {r['conv_compile_s']:.2f} / {r['scan_compile_s']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--H", type=int, default=128, help="channels (vmapped)")
    p.add_argument("--N", type=int, default=64, help="state size (even; N/2 complex modes)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per path (median)")
    p.add_argument("--mode", choices=["dplr", "diag", "both"], default="both")
    p.add_argument("--discretization", choices=["zoh", "bilinear"], default="zoh",
                   help="diag mode only (dplr is always bilinear)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = p.parse_args(argv)
    run_and_report(args, run, markdown,
                   f"H={args.H}, N={args.N}, batch={args.batch}, repeats={args.repeats}, "
                   f"diag discretization={args.discretization}")


if __name__ == "__main__":
    main()
