"""argparse with the package's command-line error style.

Bad input is reported as one line `error: ...` on stderr with exit status 1, the same as a bad
flag of `s4dm-jax train` (absl), never as a usage dump or a traceback.
"""

from __future__ import annotations

import argparse


class ArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose usage errors are one line and exit with status 1
    (its subcommand parsers are of the same class)."""

    def error(self, message: str):
        self.exit(1, f"error: {message} (see `{self.prog} --help`)\n")
