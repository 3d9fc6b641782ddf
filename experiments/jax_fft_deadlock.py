"""Reproducer: jaxlib 0.11.x XLA:CPU deadlocks on concurrent FFTs (s4dm_jax/_jax_compat.py).

    python experiments/jax_fft_deadlock.py                 # with s4dm_jax's work-around
    python experiments/jax_fft_deadlock.py --no-workaround # jaxlib 0.11.x: never returns

A jitted loop whose body differentiates four independent chains of FFT convolutions (the shape
of the S4DM training chunk's backward pass). On jaxlib 0.11.2 (2-core CPU) the first call
never returns and the process sits at 0% CPU; with XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
(what importing s4dm_jax sets on 0.11.x) every call returns. jaxlib 0.10.2 and 0.12 return
either way. Prints one line per call, then "ok"; a watchdog thread exits with status 3 and
"deadlock" when a call takes longer than --timeout seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-workaround", action="store_true",
                        help="do not import s4dm_jax first (shows the jaxlib 0.11.x deadlock)")
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one call may take before it counts as a deadlock")
    args = parser.parse_args(argv)
    if not args.no_workaround:
        import s4dm_jax  # noqa: F401  (sets XLA_FLAGS on jaxlib 0.11.x before jax starts)
    import jax
    import jax.numpy as jnp

    B, H, L, layers = 16, 64, 1000, 3

    def chain(kernels, u):
        for k in kernels:
            u_f = jnp.fft.rfft(u, n=2 * L)
            k_f = jnp.fft.rfft(k, n=2 * L)
            u = jnp.tanh(jnp.fft.irfft(u_f * k_f, n=2 * L)[..., :L])
        return (u ** 2).mean()

    def loss(kernels, u):  # four independent branches: their FFTs may run at once
        return sum(chain(kernels, u * (j + 1)) for j in range(4))

    def steps(kernels, u, n):
        def body(i, kernels):
            grads = jax.grad(loss)(kernels, u)
            return [k - 0.01 * g for k, g in zip(kernels, grads, strict=True)]
        return jax.lax.fori_loop(0, n, body, kernels)

    kernels = [jnp.full((H, L), 0.01)] * layers
    u = jnp.ones((B, H, L))
    fn = jax.jit(steps).lower(kernels, u, 1).compile()
    print(f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, compiled",
          flush=True)
    done = threading.Event()

    def watchdog():
        if not done.wait(args.timeout):
            print(f"deadlock: a call did not return within {args.timeout:.0f} s", flush=True)
            os._exit(3)

    for i in range(args.calls):
        done.clear()
        threading.Thread(target=watchdog, daemon=True).start()
        t0 = time.perf_counter()
        jax.block_until_ready(fn(kernels, u, 2))
        done.set()
        print(f"call {i}: {time.perf_counter() - t0:.2f} s", flush=True)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
