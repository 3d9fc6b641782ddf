"""JAX's persistent compilation cache for the runner: a second run of the same config loads
its compiled programs from disk instead of compiling them again."""

from __future__ import annotations

import os

import jax


def default_cache_dir() -> str:
    """$S4DM_JAX_CACHE, else <$XDG_CACHE_HOME or ~/.cache>/s4dm_jax/xla."""
    if os.environ.get("S4DM_JAX_CACHE"):
        return os.environ["S4DM_JAX_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "s4dm_jax", "xla")


def enable_compilation_cache(path: str | None) -> str | None:
    """Cache compiled programs that took >= 0.5 s to compile in `path` (created if needed);
    None or "" disables the cache. Returns the directory used (None when disabled)."""
    if not path:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
