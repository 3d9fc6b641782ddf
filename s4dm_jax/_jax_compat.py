"""Work-arounds for bugs of particular jax/jaxlib releases, applied when s4dm_jax is imported.

jaxlib 0.11.x, XLA:CPU: a compiled program that runs several FFTs at once can deadlock. Each
FFT thunk hands its transforms to ducc0's threading, which queues them on XLA's intra-op thread
pool and waits; when every thread of that pool is such a waiting FFT, nothing runs the queued
work and the program never returns (0% CPU; seen with the S4DM training chunk, whose backward
pass has independent FFTs; reproducer: experiments/jax_fft_deadlock.py). jaxlib 0.10 and 0.12
do not hang. XLA's flag --xla_cpu_multi_thread_eigen=false makes the FFT thunks
single-threaded, which avoids it (it also makes XLA's Eigen-backed matmuls and convolutions
single-threaded: a speed cost on many-core CPUs, not measured here). It is added to
XLA_FLAGS for jaxlib 0.11.x only, and only if XLA_FLAGS does not already set it. XLA reads its
flags when the first jax backend starts, so s4dm_jax must be imported before jax computes
anything; otherwise a warning says the work-around came too late.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import warnings

FFT_DEADLOCK_FLAG = "--xla_cpu_multi_thread_eigen=false"


def has_fft_deadlock(jaxlib_version: str) -> bool:
    """True for the jaxlib releases whose XLA:CPU FFT can deadlock (0.11.x)."""
    return jaxlib_version.startswith("0.11.")


def _backends_started() -> bool:
    jax_module = sys.modules.get("jax")
    if jax_module is None:
        return False
    try:
        from jax._src import xla_bridge
    except ImportError:  # layout of another jax release: assume not started
        return False
    return bool(getattr(xla_bridge, "_backends", None))


def apply_fft_deadlock_workaround(environ=os.environ) -> bool:
    """Add FFT_DEADLOCK_FLAG to XLA_FLAGS on jaxlib 0.11.x; True if it was added."""
    try:
        version = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return False
    flags = environ.get("XLA_FLAGS", "")
    if not has_fft_deadlock(version) or "xla_cpu_multi_thread_eigen" in flags:
        return False
    environ["XLA_FLAGS"] = f"{flags} {FFT_DEADLOCK_FLAG}".strip()
    if _backends_started():
        warnings.warn(
            f"jaxlib {version} can deadlock in XLA:CPU FFTs (see s4dm_jax/_jax_compat.py), "
            "and jax had started its backends before s4dm_jax was imported, so the work-around "
            f"({FFT_DEADLOCK_FLAG}) cannot take effect in this process. Import s4dm_jax before "
            f"using jax, or start Python with XLA_FLAGS={FFT_DEADLOCK_FLAG}.", stacklevel=3)
    return True
