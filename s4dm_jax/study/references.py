"""Each baseline's reference settings, with their source, beside the preset this package uses:
one statement for the code (tests check the presets against it), the README and the reports.

Sources are public: the Decision Transformer's official code (kzl/decision-transformer,
gym/experiment.py; Chen et al. 2021), Decision Mamba's (Toshihiro-Ota/decision-mamba,
gym/run_experiments.sh; Ota 2024), and CORL's BC (tinkoff-ai/CORL, algorithms/offline/
any_percent_bc.py; Tarasov et al. 2022).
"""

from __future__ import annotations

# model -> {"reference": what the source uses, "source": where, "preset": ours (configs/),
# "preset_lr": our preset's learning rate, "departure": why ours differs, or ""}
BASELINES = {
    "dt": {
        "reference": "lr 1e-4, weight decay 1e-4, warmup 10k, batch 64, K 20, width 128, 3 "
                     "layers, 1 head, dropout 0.1, 100k steps (10 x 10k iterations)",
        "source": "kzl/decision-transformer gym/experiment.py (Chen et al. 2021)",
        "preset": "the reference's", "preset_lr": 1e-4, "departure": ""},
    "mamba": {
        "reference": "K 20, 3 layers; per dataset (gym/run_experiments.sh): hopper-medium and "
                     "-medium-replay width 256, lr 1e-4; walker2d-medium width 128, lr 1e-4; "
                     "halfcheetah (all), hopper-medium-expert, walker2d-medium-replay and "
                     "-medium-expert width 128, lr 1e-3",
        "source": "Toshihiro-Ota/decision-mamba gym/run_experiments.sh (Ota 2024)",
        "preset": "width 128 and lr 4e-4 on every dataset", "preset_lr": 4e-4,
        "departure": "one setting for all datasets, between the reference's two rates"},
    "bc": {
        "reference": "MLP 256-256, Adam lr 3e-4, batch 256, 1M steps",
        "source": "tinkoff-ai/CORL algorithms/offline/any_percent_bc.py (Tarasov et al. 2022)",
        "preset": "lr 1e-3, gradient clip 1.0, 100k steps", "preset_lr": 1e-3,
        "departure": "DT's 100k-step budget, a larger rate"},
}


def table() -> str:
    """Markdown: each baseline's reference settings, source and our preset."""
    names = {"dt": "DT", "mamba": "Decision Mamba", "bc": "BC"}
    lines = ["| model | reference settings | source | our preset |", "|---|---|---|---|"]
    for model, b in BASELINES.items():
        ours = b["preset"] + (f" ({b['departure']})" if b["departure"] else "")
        lines.append(f"| {names[model]} | {b['reference']} | {b['source']} | {ours} |")
    return "\n".join(lines)
