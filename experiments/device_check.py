"""The one prepared accelerator check: run it first whenever a GPU machine is lent (about 8
minutes on one H200; experiments/device_check.sh installs the offline wheel bundle, then runs
this script).

    python experiments/device_check.py                     # everything, results in $OUT
    python experiments/device_check.py --dry-run           # tiny sizes on a CPU (CI)
    python experiments/device_check.py --only versions tests --out /tmp/dc

Each part runs in its own subprocess (its own process group) with its own timeout, and writes
its results into <out>/device_check.json as it goes; the parent records each part's status
(ok, failed, error, timeout, skipped), wall time and log tail there after it ends. A part that
hangs costs its own timeout only: it is sent SIGABRT (Python's faulthandler prints every
thread's stack into the log) then SIGKILL, recorded as "timeout", and the next part starts.
Timeouts come out of one overall --budget-s: a part gets at most its cap and never the time
the later parts need at least (their floors).

Parts, in order:
  versions              Python, packages, devices, nvidia-smi, a matmul's rate and precision
  train_<dtype>_<model> experiments/benchmark_train.py for one model, float32 or bfloat16,
                        1 and 5 seeds (compile s, XLA temp MB, s/step); one model per process,
                        so that a hanging chunk costs one model
  tests                 the accelerator-relevant tests (step == call in float32 and bfloat16,
                        vmapped seeds, chunk lengths) at JAX_DEFAULT_MATMUL_PRECISION=highest
  torch_dt              experiments/compare_torch_dt.py: kzl's PyTorch DT against ours, the
                        reference on transformers 4.57 from --torch-site (first on its path)
  e2e                   the README main job (S4DM, embedded preset) with evaluation: train
                        steps/s, evaluation env-steps/s, compile s, normalised score
  cache                 the same job again on the same compilation cache: compile s must drop
  inference             experiments/benchmark_inference.py

Out (at most 8 files, as the device tool returns them): device_check.json (every part),
device_check.log (every part's output), and <backend>_train.json, <backend>_inference.json,
<backend>_torch_dt.json, <backend>_e2e.json ({"meta", "rows"}, for results/benchmarks/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

EXP = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(EXP)
PY = sys.executable
MODELS = ("s4dm", "dt", "mamba", "bc")
DTYPES = ("float32", "bfloat16")
PACKAGES = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "jax-cuda12-plugin",
            "flax", "optax", "orbax-checkpoint", "chex", "numpy", "ml_dtypes", "scipy",
            "s4dm-jax", "gymnasium", "mujoco", "minari", "ml_collections", "tensorboardX",
            "submitit", "rliable", "arch", "pandas", "h5py", "torch", "transformers")
# step == call (float32 and bfloat16), vmapped seeds, chunk lengths: a short list (on the H200
# each test costs ~12 s, mostly compilation; the first runs' 31 tests did not fit their cap)
_DECISION = "tests/models/test_models_decision.py::"
TESTS = (
    _DECISION + "test_recurrent_step_reproduces_training_call[False-s4dm]",
    _DECISION + "test_recurrent_step_reproduces_training_call[False-s4dm_diag]",
    _DECISION + "test_recurrent_step_reproduces_training_call[False-mamba_recurrent]",
    _DECISION + "test_windowed_step_equals_training_call_on_last_k_steps[False-dt]",
    _DECISION + "test_mixed_precision_bfloat16_model_tracks_float32_and_steps_like_its_call[s4dm]",
    "tests/nn/test_nn_s4.py::test_s4block_step_equals_conv_and_padding_is_invisible",
    "tests/train/test_train_parallel.py::test_vmapped_three_seeds_equal_three_single_seed_runs",
    "tests/train/test_train_parallel.py::test_chunk_lengths_do_not_change_training",
)
# forces JAX_PLATFORMS=cpu with 4 host devices (not the accelerator; jax 0.11's XLA:CPU hang)
TESTS_DESELECT = ("--deselect", "tests/train/test_train_parallel.py::"
                  "test_data_parallel_step_on_four_cpu_devices_equals_single_device")
DRY_TESTS = ("tests/models/test_models_decision.py::"
             "test_mixed_precision_matmuls_run_in_bfloat16[dt]",)
E2E_CONFIG = os.path.join(ROOT, "configs", "s4dm.py") + ":embedded"


@dataclass(frozen=True)
class Part:
    """A part: its timeout cap on the device, the least time worth starting it with (floor),
    and its cap under --dry-run."""
    name: str
    cap_s: float
    floor_s: float
    dry_cap_s: float


def part_table() -> list[Part]:
    """Every part in run order (most wanted first; the budget skips the tail). Caps from the
    first H200 runs (2026-12-04): e2e 48 s, the S4DM train part 70 s, DT's compiles 18-23 s."""
    # dry caps: generous, a shared 2-core CI machine compiles slowly (the run takes ~2 min alone)
    def train(dtype, models):
        return [Part(f"train_{dtype}_{m}", 100, 20, 300) for m in models]
    return [Part("versions", 60, 10, 120), Part("e2e", 90, 30, 300),
            Part("tests", 200, 30, 300), *train("float32", ("s4dm", "dt", "mamba", "bc")),
            *train("bfloat16", ("s4dm", "dt")), Part("inference", 90, 20, 300),
            Part("torch_dt", 120, 25, 300), Part("cache", 45, 20, 300),
            *train("bfloat16", ("mamba", "bc"))]


SELFTEST = Part("selftest_hang", 5, 1, 5)  # not in the table: --only selftest_hang (tests)


# ---------------------------------------------------------------- the summary file


def load_json(path: str, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def save_json(path: str, data) -> None:
    """Write atomically (a reader, or a kill in mid-write, never sees half a file)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, default=str)
    os.replace(tmp, path)


class Context:
    """What a part's process knows: where to write, its deadline, the run's settings."""

    def __init__(self, args):
        self.name, self.args = args.part, args
        self.summary = os.path.join(args.out, "device_check.json")
        self.work, self.dry = args.work, args.dry_run

    def remaining(self) -> float:
        return self.args.deadline - time.time()

    def update(self, **fields) -> None:
        """Merge fields into this part's entry of device_check.json (written as it goes)."""
        data = load_json(self.summary, {"parts": {}})
        data["parts"].setdefault(self.name, {}).update(fields)
        save_json(self.summary, data)

    def run(self, cmd: list[str], env: dict | None = None, **kw) -> int:
        """Run cmd (output into the log), bounded by this part's deadline; its return code.
        It runs in the scratch folder: in the checkout, `python -c` would import the source
        tree's s4dm_jax (which has no s4dm_jax.configs) instead of the installed package."""
        return subprocess.run(cmd, env={**os.environ, **(env or {})},
                              cwd=kw.get("cwd", self.work),
                              timeout=max(1.0, self.remaining())).returncode


# ---------------------------------------------------------------- the parts (child side)


def part_versions(ctx: Context) -> dict:
    """Interpreter, package versions, devices, nvidia-smi, and one matmul: TFLOP/s in float32
    and bfloat16, and the float32 matmul's error against float64 (TF32 shows as ~1e-3)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0], "executable": PY, "platform": platform.platform(),
           "packages": {}, "env": {k: v for k, v in os.environ.items()
                                   if k.startswith(("JAX_", "XLA_", "CUDA_", "NVIDIA_"))}}
    for name in PACKAGES:
        try:
            out["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out["packages"][name] = None
    manifest = load_json(os.path.join(ctx.args.bundle, "MANIFEST.json"))
    out["bundle_commit"] = manifest.get("commit") if manifest else None
    try:
        out["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        out["nvidia_smi"] = f"unavailable: {e}"
    ctx.update(**out)
    import jax
    import numpy as np

    import s4dm_jax

    out["s4dm_jax_path"] = os.path.dirname(s4dm_jax.__file__)
    out["backend"] = jax.default_backend()
    out["devices"] = [{"id": d.id, "kind": d.device_kind, "platform": d.platform}
                      for d in jax.devices()]
    stats = jax.devices()[0].memory_stats() or {}
    out["memory_bytes_limit"] = stats.get("bytes_limit")
    ctx.update(**out)
    n = 512 if ctx.dry else 8192
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    exact = a[:256].astype(np.float64) @ a.astype(np.float64)  # 256 rows suffice
    for dtype in ("float32", "bfloat16"):
        x = jax.device_put(a.astype(dtype))
        f = jax.jit(lambda x: x @ x)
        y = f(x).block_until_ready()
        t0, reps = time.perf_counter(), 3 if ctx.dry else 10
        for _ in range(reps):
            y = f(x)
        y.block_until_ready()
        out[f"matmul_{dtype}_tflops"] = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12
        if dtype == "float32":
            err = np.abs(np.asarray(y[:256], np.float64) - exact).max() / np.abs(exact).max()
            out["matmul_float32_rel_error"] = float(err)
    return out


# benchmark_train.py, in a dry run at tiny model sizes (argv[2], JSON; {}: the preset's)
TRAIN_DRIVER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import benchmark_train as bt
tiny, argv = json.loads(sys.argv[2]), sys.argv[3:]
base = bt.preset_config
def preset_config(*a, **k):
    config = base(*a, **k)
    if tiny:
        config.model.update(tiny)
        config.batch_size, config.episode_start_windows = 8, False
    return config
bt.preset_config = preset_config
bt.main(argv)
"""
# dry run: model sizes that compile in seconds on a CPU (DEFAULTS keys of each model)
# (S4DM's K-step windows need its window inference: its recurrent one trains whole episodes)
DRY_MODEL = {"s4dm": {"d_model": 16, "n_layers": 1, "context_len": 10, "ssm": {"d_state": 8},
                      "inference": "window"},
             "dt": {"d_model": 16, "n_layers": 1, "context_len": 10},
             "mamba": {"d_model": 16, "n_layers": 1, "context_len": 10},
             "bc": {"hidden_dims": (16,)}}


def part_train(ctx: Context, dtype: str, model: str) -> dict:
    """benchmark_train.py for one model and dtype (1 and 5 seeds; 1 seed when dry)."""
    path = os.path.join(ctx.work, f"train_{dtype}_{model}.json")
    sizes = (["--preset", "embedded", "--seeds", "1", "--steps", "2", "--rounds", "1"]
             if ctx.dry else ["--seeds", "1", "5", "--steps", "20", "--rounds", "2"])
    tiny = json.dumps(DRY_MODEL[model] if ctx.dry else {})
    rc = ctx.run([PY, "-c", TRAIN_DRIVER, EXP, tiny, "--models", model, *sizes,
                  "--compute-dtype", dtype, "--json", path])
    data = load_json(path)
    if rc != 0 or not data:
        return {"status": "failed", "script_rc": rc, "dtype": dtype}
    used = [r.get("dtype") for r in data["rows"]]  # what the compiled models computed in
    if not used or used != [dtype] * len(used):
        return {"status": "failed", "dtype": dtype,
                "reason": f"benchmark_train did not use {dtype}: {used}"}
    return {"dtype": dtype, "model": model, "meta": data["meta"], "rows": data["rows"]}


OUTCOME = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")


def _pytest(ctx: Context, ids: tuple[str, ...], key: str, env: dict | None = None) -> dict:
    """Run pytest -v on ids, its output into the log; {test id: outcome}, each recorded in
    device_check.json under `key` as it is reported (a later hang keeps the outcomes)."""
    cmd = [PY, "-P", "-m", "pytest", "-v", "-p", "no:cacheprovider", *ids, *TESTS_DESELECT]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, cwd=ROOT)
    outcomes = {}
    for line in proc.stdout:
        sys.stdout.write(line)
        match = OUTCOME.match(line)
        if match:
            outcomes[match[1]] = match[2].lower()
            ctx.update(**{key: outcomes})
    proc.wait()
    return outcomes


def part_tests(ctx: Context) -> dict:
    """The accelerator-relevant tests at full float32 matrix precision. Their tolerances are
    for full float32; at the GPU's default (TF32) the dense layers alone differ by ~1e-3 between
    step and call (first H200 run, 2026-12-04). What users get at the default precision is
    checked by the e2e part (the trainer's step == call check, tolerance 1e-2)."""
    ids = tuple(ctx.args.tests or (DRY_TESTS if ctx.dry else TESTS))
    results = _pytest(ctx, ids, "tests", {"JAX_DEFAULT_MATMUL_PRECISION": "highest"})
    failed = [t for t, r in results.items() if r in ("failed", "error")]
    return {"tests": results, "passed": sum(r == "passed" for r in results.values()),
            "failed": failed, "matmul_precision": "highest",
            "status": "ok" if results and not failed else "failed"}


def part_torch_dt(ctx: Context) -> dict:
    """kzl's PyTorch DT (transformers 4.57 first on its path only) against our DT."""
    kzl = ctx.args.kzl or os.path.join(ctx.args.bundle, "kzl")
    if not os.path.isdir(os.path.join(kzl, "gym", "decision_transformer")):
        return {"status": "skipped", "reason": f"no kzl/decision-transformer files in {kzl} "
                "(experiments/build_device_bundle.py --kzl)"}
    wrapper = os.path.join(ctx.work, "torch_python")
    site = ctx.args.torch_site or ""
    with open(wrapper, "w") as fh:
        fh.write(f'#!/bin/sh\nPYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}" '
                 f'exec "{PY}" "$@"\n')
    os.chmod(wrapper, 0o755)
    probe = subprocess.run([wrapper, "-c", "import json, torch, transformers; print(json.dumps("
                            "[torch.__version__, transformers.__version__, "
                            "torch.cuda.is_available()]))"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        return {"status": "skipped", "reason": "torch/transformers not importable here: "
                + probe.stderr.strip().splitlines()[-1][-300:]}
    torch_v, tf_v, cuda = json.loads(probe.stdout.strip().splitlines()[-1])
    out = {"torch": torch_v, "transformers": tf_v, "cuda": cuda}
    ctx.update(**out)
    path = os.path.join(ctx.work, "torch_dt.json")
    sizes = ["--seeds", "2", "--steps", "2", "--rounds", "1"] if ctx.dry else \
        ["--seeds", "5", "--steps", "20", "--rounds", "2"]  # a round starts torch afresh
    rc = ctx.run([PY, os.path.join(EXP, "compare_torch_dt.py"), "--kzl", kzl, "--torch-python",
                  wrapper, *sizes, "--device", "cuda" if cuda else "cpu", "--json", path],
                 env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    data = load_json(path)
    if rc != 0 or not data:
        return {**out, "status": "failed", "script_rc": rc}
    return {**out, "rows": data["rows"]}


def _e2e_run(ctx: Context, workdir: str, overrides: list[str]) -> dict:
    """The README main job in `workdir` on the shared compilation cache; its numbers."""
    cmd = [PY, "-m", "s4dm_jax.main", "train", f"--config={E2E_CONFIG}", f"--workdir={workdir}",
           f"--compilation_cache_dir={os.path.join(ctx.work, 'xla_cache')}", "--noprogress",
           *overrides]
    t0 = time.perf_counter()
    rc = ctx.run(cmd)
    results = load_json(os.path.join(workdir, "results.json"))
    if rc != 0 or not results:
        return {"status": "failed", "script_rc": rc}
    wall = results.get("wall_times", {})
    steps, env_steps = results.get("trained_steps"), results.get("eval_env_steps")
    rollout_s = wall.get("eval_rollout_s") or wall.get("eval_s")
    evals = results.get("eval") or [{}]
    return {"process_s": time.perf_counter() - t0, "trained_steps": steps,
            "wall_times": wall, "eval_env_steps": env_steps,
            "train_steps_per_s": steps / wall["train_s"] if wall.get("train_s") else None,
            "eval_env_steps_per_s": env_steps / rollout_s if env_steps and rollout_s else None,
            "mean_return": evals[0].get("mean_return"),
            "normalized_score": evals[0].get("normalized_score"),
            "target_return": evals[0].get("target_return")}


def _dry_model(ctx: Context) -> list[str]:
    """The e2e and cache parts' model overrides in a dry run (a 1-layer, 16-wide S4DM)."""
    return ["--config.model.n_layers=1", "--config.model.d_model=16",
            "--config.model.ssm.d_state=8"] if ctx.dry else []


def part_e2e(ctx: Context) -> dict:
    """The main job with evaluation (CPU dry run: 60 steps, one 20-step episode)."""
    small = ["--config.num_steps=60", "--config.eval.episodes=1",
             "--config.eval.max_episode_steps=20", *_dry_model(ctx)] if ctx.dry else []
    out = {"config": E2E_CONFIG, "overrides": small}
    out.update(_e2e_run(ctx, os.path.join(ctx.work, "e2e"), small))
    return out


def part_cache(ctx: Context) -> dict:
    """The main job's training program again on e2e's compilation cache (one 50-step chunk, as
    e2e's first chunk): its compile seconds against e2e's, and the cache's entries."""
    first = load_json(os.path.join(ctx.work, "e2e", "results.json"))
    cache = os.path.join(ctx.work, "xla_cache")
    entries = len(os.listdir(cache)) if os.path.isdir(cache) else 0
    if not first or not entries:
        return {"status": "skipped", "reason": "needs the e2e part's run and its cache"}
    out = _e2e_run(ctx, os.path.join(ctx.work, "e2e_cached"),
                   ["--config.num_steps=50", "--config.eval.episodes=1",
                    "--config.eval.max_episode_steps=5", *_dry_model(ctx)])
    before = first["wall_times"].get("compile_s")
    after = out.get("wall_times", {}).get("compile_s")
    out.update(cache_entries=entries, compile_s_first=before, compile_s_cached=after)
    if out.get("status") != "failed":
        out["status"] = "ok" if after is not None and before and after < 0.5 * before \
            else "failed"
    return out


def part_inference(ctx: Context) -> dict:
    """benchmark_inference.py (s4dm, dt, mamba; lengths 20/100/1000, batch 1/10)."""
    path = os.path.join(ctx.work, "inference.json")
    sizes = ["--models", "dt", "--lengths", "4", "--batches", "1", "--repeats", "1",
             "--loop-steps", "2", "--dt-max-steps", "2"] if ctx.dry else []
    rc = ctx.run([PY, os.path.join(EXP, "benchmark_inference.py"), *sizes, "--json", path])
    data = load_json(path)
    if rc != 0 or not data:
        return {"status": "failed", "script_rc": rc}
    return {"meta": data["meta"], "rows": data["rows"]}


def part_selftest_hang(ctx: Context) -> dict:
    """Writes a partial result, then hangs (the timeout path's test)."""
    ctx.update(before_hang=True)
    while True:
        time.sleep(1)


def run_part(args) -> int:
    """Child side: run one part, record its results and status in device_check.json."""
    ctx = Context(args)
    ctx.update(status="running", started=time.time())
    name = args.part
    try:
        if name.startswith("train_"):
            _, dtype, model = name.split("_")
            result = part_train(ctx, dtype, model)
        else:
            result = globals()[f"part_{name}"](ctx)
        status = result.pop("status", "ok")
        ctx.update(status=status, **result)
        return 0
    except Exception:
        ctx.update(status="error", error=traceback.format_exc()[-4000:])
        return 1


# ---------------------------------------------------------------- the parent


def _stop(proc: subprocess.Popen) -> None:
    """Stack dump (faulthandler, SIGABRT) then SIGKILL, to the part's own process group."""
    for sig, wait in ((signal.SIGABRT, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: str, start: int, chars: int = 3000) -> str:
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read().decode(errors="replace")[-chars:]


def launch(part: Part, timeout: float, args) -> dict:
    """Run one part's process with `timeout`; its entry as the parent finalises it."""
    log = os.path.join(args.out, "device_check.log")
    summary = os.path.join(args.out, "device_check.json")
    cmd = [PY, os.path.abspath(__file__), "--part", part.name, "--out", args.out, "--work",
           args.work, "--deadline", str(time.time() + timeout), "--bundle", args.bundle]
    cmd += ["--kzl", args.kzl] if args.kzl else []
    cmd += ["--torch-site", args.torch_site] if args.torch_site else []
    cmd += ["--dry-run"] if args.dry_run else []
    cmd += ["--tests", *args.tests] if args.tests else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    with open(log, "ab") as fh:
        fh.write(f"\n===== {part.name} (timeout {timeout:.0f} s) =====\n".encode())
        fh.flush()  # before the child writes to the same file
        start = fh.tell()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
        try:
            rc, timed_out = proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            _stop(proc)
            rc, timed_out = proc.returncode, True
    data = load_json(summary, {"parts": {}})
    entry = data["parts"].setdefault(part.name, {})
    if timed_out:
        entry["status"] = "timeout"
    elif entry.get("status") in (None, "running"):
        entry["status"] = "error"
    entry.update(wall_s=time.perf_counter() - t0, timeout_s=timeout, rc=rc,
                 log_tail=_tail(log, start))
    save_json(summary, data)
    return entry


def _meta(data: dict) -> dict:
    v = data["parts"].get("versions", {})
    backend = v.get("backend") or next((p["meta"].get("backend") for p in data["parts"].values()
                                        if isinstance(p.get("meta"), dict)), None)
    return {"backend": backend, "devices": v.get("devices"),
            "packages": v.get("packages"), "nvidia_smi": v.get("nvidia_smi"),
            "dry_run": data.get("dry_run"), "time": data.get("started")}


def collect(out: str) -> list[str]:
    """<backend>_train/inference/torch_dt/e2e.json from device_check.json; train rows get
    vs_dt (same dtype and seeds) and bf16_speedup (float32 s/step over bfloat16's)."""
    data = load_json(os.path.join(out, "device_check.json"))
    meta, parts = _meta(data), data["parts"]
    rows = [r for name, p in parts.items() if name.startswith("train_") for r in p.get("rows", [])]
    step = {(r["dtype"], r["model"], r["seeds"]): r["s_per_step"] for r in rows}
    for r in rows:
        dt = step.get((r["dtype"], "dt", r["seeds"]))
        f32 = step.get(("float32", r["model"], r["seeds"]))
        r["vs_dt"] = r["s_per_step"] / dt if dt else None
        r["bf16_speedup"] = f32 / r["s_per_step"] if f32 and r["dtype"] == "bfloat16" else None
    tables = {"train": rows, "inference": parts.get("inference", {}).get("rows", []),
              "torch_dt": parts.get("torch_dt", {}).get("rows", []),
              "e2e": [{k: parts[p].get(k) for k in ("trained_steps", "train_steps_per_s",
                                                   "eval_env_steps_per_s", "wall_times",
                                                   "mean_return", "normalized_score")}
                      | {"run": p} for p in ("e2e", "cache") if parts.get(p, {}).get("wall_times")]}
    written = []
    for name, table in tables.items():
        if table:
            path = os.path.join(out, f"{meta['backend'] or 'unknown'}_{name}.json")
            save_json(path, {"meta": meta, "rows": table})
            written.append(path)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "runs",
                                                                            "device_check"),
                   help="results folder (default $OUT, else runs/device_check)")
    p.add_argument("--work", help="scratch folder (default: a fresh temporary one)")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, CPU is fine (CI)")
    p.add_argument("--budget-s", type=float, help="all parts together (default 480, dry 2400)")
    p.add_argument("--only", nargs="+", metavar="PART", help="run only these parts")
    p.add_argument("--bundle", default=os.path.join(ROOT, ".device_bundle"),
                   help="experiments/build_device_bundle.py's folder (manifest, kzl files)")
    p.add_argument("--kzl", help="kzl/decision-transformer files (default <bundle>/kzl)")
    p.add_argument("--torch-site", help="folder put first on the PyTorch reference's path "
                                        "(transformers 4.57, huggingface_hub < 1, tokenizers)")
    p.add_argument("--tests", nargs="+", metavar="ID",
                   help="pytest ids for the tests part (default: the accelerator-relevant ones)")
    p.add_argument("--part", help=argparse.SUPPRESS)  # child: run this one part
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.out, args.bundle = os.path.abspath(args.out), os.path.abspath(args.bundle)
    if args.part:
        return run_part(args)

    table = {part.name: part for part in [*part_table(), SELFTEST]}
    names = args.only or [part.name for part in part_table()]
    unknown = [n for n in names if n not in table]
    if unknown:
        p.error(f"unknown part(s) {unknown}; parts: {', '.join(table)}")
    parts = [table[n] for n in names]
    os.makedirs(args.out, exist_ok=True)
    args.work = os.path.abspath(args.work or tempfile.mkdtemp(prefix="device_check_"))
    os.makedirs(args.work, exist_ok=True)
    budget = args.budget_s or (2400.0 if args.dry_run else 480.0)
    save_json(os.path.join(args.out, "device_check.json"),
              {"started": time.time(), "dry_run": args.dry_run, "budget_s": budget,
               "order": names, "parts": {}})
    open(os.path.join(args.out, "device_check.log"), "w").close()
    end = time.time() + budget
    for i, part in enumerate(parts):
        later = sum(q.floor_s for q in parts[i + 1:])
        timeout = min(part.dry_cap_s if args.dry_run else part.cap_s, end - time.time() - later)
        if timeout < part.floor_s:
            data = load_json(os.path.join(args.out, "device_check.json"))
            data["parts"][part.name] = {"status": "skipped", "reason": "no time left in the "
                                        f"budget ({budget:.0f} s)"}
            save_json(os.path.join(args.out, "device_check.json"), data)
            print(f"{part.name:22s} skipped (no time left)", flush=True)
            continue
        entry = launch(part, timeout, args)
        print(f"{part.name:22s} {entry['status']:8s} {entry['wall_s']:6.1f} s"
              + (f"  ({entry['reason']})" if entry.get("reason") else ""), flush=True)
    for path in collect(args.out):
        print(f"wrote {path}")
    print(f"wrote {os.path.join(args.out, 'device_check.json')} and device_check.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
