"""The end every benchmark script shares: print the backend and the settings, run, print the
markdown table, and with --json OUT also write {"meta": backend/device/jax/args, "rows": rows}.

Imported by the scripts in this folder (`python experiments/<script>.py` puts it on the path).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import jax


def run_and_report(args: argparse.Namespace, run: Callable[[argparse.Namespace], list[dict]],
                   markdown: Callable[[list[dict]], str], settings: str) -> list[dict]:
    """Run `run(args)` after a line naming the backend and `settings`; print `markdown(rows)`;
    write the JSON file `args.json` if given. Returns the rows."""
    print(f"backend: {jax.default_backend()} ({jax.devices()[0]}), jax {jax.__version__}; "
          f"{settings}", flush=True)
    rows = run(args)
    print()
    print(markdown(rows))
    if args.json:
        meta = {"backend": jax.default_backend(), "device": str(jax.devices()[0]),
                "jax": jax.__version__, "args": vars(args)}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=2)
        print(f"\nwrote {args.json}")
    return rows
