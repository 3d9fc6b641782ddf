"""Our Decision Transformer's training throughput against the PyTorch reference DT
(kzl/decision-transformer), same config (K = 20, width 128, 3 layers, 1 head, ReLU MLP, dropout
0.1, batch 64, AdamW + warmup + clip 0.25, hopper shapes), on the same machine.

The reference runs in its own virtual environment with PyTorch (never a dependency of this
package) from a checkout of its public code that you provide:

    git clone https://github.com/kzl/decision-transformer /tmp/kzl-dt
    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch "transformers<5"
    python experiments/compare_torch_dt.py --kzl /tmp/kzl-dt \
        --torch-python /tmp/torch-venv/bin/python

The reference is timed on its own `SequenceTrainer.train_step` (forward, masked MSE, backward,
clip, AdamW step) with batches prepared beforehand (its numpy batch sampling is NOT counted,
which favours it); ours is the runner's compiled chunk (`benchmark_train.Case`, batch sampling
included) with 1 seed and with N vmapped seeds. Both alternate over --rounds rounds so they see
the same machine load; the fastest round of each is reported, as seed-steps per second. A few
compatibility assignments let the 2021 reference code import under current `transformers`
(moved helpers, docstring decorators); they do not change its computation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_train import Case  # noqa: E402  (the runner's own compiled training chunk)

REFERENCE = r'''
import sys, time, json
import torch
import transformers.file_utils as fu
import transformers.modeling_utils as mu
import transformers.pytorch_utils as pu
for name in ("Conv1D", "find_pruneable_heads_and_indices", "prune_conv1d_layer"):
    setattr(mu, name, getattr(pu, name))           # moved out of modeling_utils since 2021
mu.SequenceSummary = None                          # imported by the reference, never used
fu.add_code_sample_docstrings = lambda *a, **k: (lambda f: f)   # docstring decorator only
sys.path.insert(0, sys.argv[1] + "/gym")
from decision_transformer.models.decision_transformer import DecisionTransformer
from decision_transformer.training.seq_trainer import SequenceTrainer
steps, warmup_steps, device = int(sys.argv[2]), 10_000, sys.argv[3]
B, K, S, A = 64, 20, 11, 3
torch.manual_seed(0)
model = DecisionTransformer(state_dim=S, act_dim=A, max_length=K, max_ep_len=1000,
                            hidden_size=128, n_layer=3, n_head=1, n_inner=4 * 128,
                            activation_function="relu", n_positions=1024, n_ctx=1024,
                            resid_pdrop=0.1, attn_pdrop=0.1).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                              lambda s: min((s + 1) / warmup_steps, 1))
batches = [(torch.randn(B, K, S), torch.rand(B, K, A) * 2 - 1, torch.randn(B, K, 1),
            torch.zeros(B, K), torch.randn(B, K + 1, 1), torch.randint(0, 1000, (B, K)),
            (torch.rand(B, K) > 0.1).long()) for _ in range(4)]
batches = [tuple(x.to(device) for x in batch) for batch in batches]
it = iter(range(10 ** 9))
get_batch = lambda batch_size: batches[next(it) % len(batches)]
trainer = SequenceTrainer(model=model, optimizer=optimizer, batch_size=B, get_batch=get_batch,
                          scheduler=scheduler,
                          loss_fn=lambda s_hat, a_hat, r_hat, s, a, r: torch.mean((a_hat - a) ** 2))
model.train()
for _ in range(3):
    trainer.train_step()
t0 = time.perf_counter()
for _ in range(steps):
    trainer.train_step()
    scheduler.step()
print(json.dumps({"s_per_step": (time.perf_counter() - t0) / steps,  # .item() syncs each step
                  "params": sum(p.numel() for p in model.parameters()),
                  "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "device": device}))
'''


def reference_step(torch_python: str, kzl: str, steps: int, device: str = "cpu") -> dict:
    out = subprocess.run([torch_python, "-c", REFERENCE, kzl, str(steps), device],
                         capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kzl", required=True, help="checkout of kzl/decision-transformer")
    p.add_argument("--torch-python", required=True, help="python of a venv with torch")
    p.add_argument("--seeds", type=int, default=5, help="vmapped seeds of ours")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu", help="the reference's torch device (cpu, cuda)")
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)

    ours = {s: Case("dt", "hopper-medium", s, args.steps) for s in sorted({1, args.seeds})}
    ref_times, our_times = [], {s: [] for s in ours}
    for r in range(args.rounds):
        ref = reference_step(args.torch_python, args.kzl, args.steps, args.device)
        ref_times.append(ref["s_per_step"])
        for s, case in ours.items():
            our_times[s].append(case.run())
        print(f"round {r + 1}: reference {ref_times[-1]:.3f} s/step; " + ", ".join(
            f"ours x{s} {t[-1]:.3f} s/step" for s, t in our_times.items()), flush=True)
    ref_best = min(ref_times)
    rows = [{"implementation": f"PyTorch reference (kzl), torch {ref['torch']}, "
                               f"{ref['device']}, {ref['threads']} threads, 1 seed",
             "params": ref["params"],
             "s_per_step": ref_best, "seed_steps_per_s": 1 / ref_best}]
    for s, case in ours.items():
        best = min(our_times[s])
        rows.append({"implementation": f"s4dm_jax DT, {s} vmapped seed(s)",
                     "params": case.num_params, "s_per_step": best,
                     "seed_steps_per_s": s / best})
    print("\n| implementation | params | s/step | seed-steps/s | vs reference |\n"
          "|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['implementation']} | {row['params']:,} | {row['s_per_step']:.3f} | "
              f"{row['seed_steps_per_s']:.2f} | {row['seed_steps_per_s'] * ref_best:.2f}x |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "args": vars(args), "time": time.time()}, fh, indent=2)


if __name__ == "__main__":
    main()
