"""Trainable-parameter counts of the default configs of all four models on D4RL MuJoCo shapes.

Uses `model_param_count` with each model's DEFAULTS and `param_table` from
s4dm_jax.models (no `python -m` command in the package offers this table). Parameters are
counted from shapes only (jax.eval_shape of `model.init`), so nothing is computed.

    python experiments/param_table.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json

from s4dm_jax.models import model_param_count, param_table
from s4dm_jax.study.grid import ENV_DIMS

MODELS = ("s4dm", "dt", "mamba", "bc")


def rows() -> list[dict]:
    """One row per environment: obs, act, a count per model and S4DM/DT in percent."""
    out = []
    for env, (obs, act) in ENV_DIMS.items():
        row = {"env": env, "obs": obs, "act": act}
        row.update({name: model_param_count(name, obs, act) for name in MODELS})
        row["S4DM/DT %"] = 100.0 * row["s4dm"] / row["dt"]
        out.append(row)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    args = p.parse_args(argv)
    table = rows()
    print(param_table(table))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
