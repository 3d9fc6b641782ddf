"""Build the wheel bundle that experiments/device_check.sh installs offline on an accelerator
machine (Python 3.12, x86-64, no network), and check that it fits the device tool's 64 MiB.

    python experiments/build_device_bundle.py --kzl /path/to/kzl/decision-transformer

Writes (the folder is ignored by git; it travels with the device call's `carry`):
  .device_bundle/wheels/        the package's missing dependencies, pinned in
                                experiments/device_requirements.txt (cp312 manylinux wheels;
                                a pure-Python project that publishes no wheel is built here)
  .device_bundle/project/       this checkout's s4dm_jax wheel (fallback when the machine
                                cannot build the tree itself)
  .device_bundle/torch_wheels/  transformers 4.57 + huggingface_hub < 1.0 + tokenizers 0.22
                                (experiments/device_requirements_torch.txt) for kzl's PyTorch DT
  .device_bundle/kzl/           kzl/decision-transformer's gym/decision_transformer models and
                                training code (MIT licence, LICENSE.md copied), from --kzl: a
                                checkout or a bare git directory
  .device_bundle/MANIFEST.json  commit, pins, every file's size and sha256, the totals

Fails (exit 1) when the bundle plus the working tree that travels with it exceeds 64 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 64 * 2**20  # the device tool's limit on the working tree plus carried paths
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
# what the reference needs of kzl's repository (experiments/compare_torch_dt.py REFERENCE)
KZL_FILES = ("LICENSE.md", "gym/decision_transformer/models/model.py",
             "gym/decision_transformer/models/decision_transformer.py",
             "gym/decision_transformer/models/trajectory_gpt2.py",
             "gym/decision_transformer/training/trainer.py",
             "gym/decision_transformer/training/seq_trainer.py")


def read_pins(path: str) -> list[str]:
    """`name==version` lines of a requirements file (comments and blanks dropped)."""
    pins = []
    with open(path) as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if "==" not in line:
                raise SystemExit(f"{path}: '{line}' is not pinned exactly (name==version)")
            pins.append(line)
    return pins


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def fetch_wheel(pin: str, dest: str, python: str = "3.12") -> str:
    """Download `pin`'s cp312 manylinux (or pure) wheel into dest; where the project publishes
    no wheel, build one here and accept it only if it is pure Python. Returns how."""
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    out = pip("download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", python,
              "--implementation", "cp", *platforms, "-d", dest, pin)
    if out.returncode == 0:
        return "downloaded"
    with tempfile.TemporaryDirectory() as tmp:
        built = pip("wheel", "-q", "--no-deps", "-w", tmp, pin)
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if built.returncode != 0 or len(wheels) != 1 or not wheels[0].endswith("-none-any.whl"):
            raise SystemExit(f"no cp{python.replace('.', '')} wheel for {pin}:\n"
                             f"{out.stderr[-1500:]}\n{built.stderr[-1500:]}")
        shutil.copy(os.path.join(tmp, wheels[0]), dest)
    return "built here (pure Python, no published wheel)"


def copy_kzl(source: str, dest: str) -> str:
    """Copy KZL_FILES from a checkout or a bare git directory; returns its commit."""
    git_dir = source if not os.path.isdir(os.path.join(source, ".git")) else \
        os.path.join(source, ".git")
    commit = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "HEAD"],
                            capture_output=True, text=True)
    for rel in KZL_FILES:
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isfile(os.path.join(source, rel)):
            shutil.copy(os.path.join(source, rel), target)
            continue
        blob = subprocess.run(["git", "--git-dir", git_dir, "show", f"HEAD:{rel}"],
                              capture_output=True)
        if blob.returncode != 0:
            raise SystemExit(f"--kzl {source}: no {rel} (need a kzl/decision-transformer "
                             "checkout or its git directory)")
        with open(target, "wb") as fh:
            fh.write(blob.stdout)
    return commit.stdout.strip() if commit.returncode == 0 else "unknown"


def tree_bytes() -> int:
    """Bytes of the files that travel with a device call besides carried paths: tracked and
    untracked-not-ignored files of this checkout."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return sum(os.path.getsize(os.path.join(ROOT, f)) for f in files.split("\0")
               if f and os.path.isfile(os.path.join(ROOT, f)))


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_project(dest: str) -> None:
    """This checkout's wheel (reproducible timestamps: SOURCE_DATE_EPOCH = HEAD's commit time)."""
    epoch = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    env = {**os.environ, "SOURCE_DATE_EPOCH": epoch or "315532800"}
    with tempfile.TemporaryDirectory() as tmp:  # build from a copy: no build/ or egg-info here
        src = os.path.join(tmp, "src")
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.split("\0")
        for rel in filter(None, files):
            if os.path.isfile(os.path.join(ROOT, rel)):
                os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
                shutil.copy2(os.path.join(ROOT, rel), os.path.join(src, rel))
        out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dest,
                              src], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"building the s4dm_jax wheel failed:\n{out.stderr[-3000:]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(ROOT, ".device_bundle"))
    p.add_argument("--kzl", default=os.environ.get("KZL_DT"),
                   help="kzl/decision-transformer checkout or bare git dir ($KZL_DT); "
                        "without it the bundle has no PyTorch reference")
    p.add_argument("--limit-mib", type=float, default=LIMIT / 2**20)
    args = p.parse_args(argv)

    shutil.rmtree(args.out, ignore_errors=True)
    how = {}
    for sub, req in (("wheels", "device_requirements.txt"),
                     ("torch_wheels", "device_requirements_torch.txt")):
        os.makedirs(os.path.join(args.out, sub))
        for pin in read_pins(os.path.join(ROOT, "experiments", req)):
            how[pin] = fetch_wheel(pin, os.path.join(args.out, sub))
            print(f"  {sub}: {pin} {how[pin]}", flush=True)
    build_project(os.path.join(args.out, "project"))
    kzl_commit = None
    if args.kzl:
        kzl_commit = copy_kzl(args.kzl, os.path.join(args.out, "kzl"))
    else:
        print("WARNING: no --kzl given: the bundle has no PyTorch reference (its part will be "
              "skipped on the device)", file=sys.stderr)

    files = {}
    for dirpath, _, names in os.walk(args.out):
        for name in names:
            path = os.path.join(dirpath, name)
            files[os.path.relpath(path, args.out)] = {"bytes": os.path.getsize(path),
                                                      "sha256": sha256(path)}
    bundle = sum(f["bytes"] for f in files.values())
    tree = tree_bytes()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    manifest = {"commit": commit, "kzl_commit": kzl_commit, "pins": how, "files": files,
                "bundle_bytes": bundle, "tree_bytes": tree, "limit_bytes": args.limit_mib * 2**20}
    with open(os.path.join(args.out, "MANIFEST.json"), "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
    total = bundle + tree
    print(f"bundle {bundle / 2**20:.1f} MiB + working tree {tree / 2**20:.1f} MiB = "
          f"{total / 2**20:.1f} MiB (limit {args.limit_mib:.0f} MiB) in {args.out}")
    if total > args.limit_mib * 2**20:
        print(f"ERROR: over the device tool's {args.limit_mib:.0f} MiB: drop a dependency from "
              "experiments/device_requirements*.txt or shrink the tree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
