"""Where and with what a result was made: the machine (CPU, instruction-set flags, library
versions) and the package's git commit. Recorded by the dataset generator and the study's cells,
because the same command can give different numbers on another CPU or library version (XLA
compiles for the host's instruction set)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess

# Libraries whose version changes numbers: the compiler (jax, jaxlib), the simulator (mujoco),
# and the array code around them.
VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "mujoco", "gymnasium")


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def library_versions(names=VERSIONED) -> dict[str, str]:
    """{distribution name: installed version} of `names` (those not installed are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def machine_record(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """Platform, CPU count, library versions and (Linux) the CPU model and a short hash of its
    instruction-set flags (the first processor's `flags` line, hashed as written)."""
    record = {"platform": platform.platform(), "processor": platform.processor(),
              "cpus": os.cpu_count(), "libraries": library_versions()}
    try:
        with open(cpuinfo) as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
    except OSError:
        return record
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    if "model name" in fields:
        record["cpu_model"] = fields["model name"]
    if "flags" in fields:
        record["cpu_flags_sha1"] = hashlib.sha1(fields["flags"].encode()).hexdigest()[:12]
    return record


def git_commit() -> str:
    """The package checkout's commit (with '+dirty' when it has changes), or 'unknown' (e.g. an
    installed wheel, or no git)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
