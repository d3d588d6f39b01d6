"""The argument parser of the commands written with ``argparse``: a usage mistake is one line, as for ``fit``."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class UsageParser(argparse.ArgumentParser):
    """Reports a usage mistake as one line and a pointer to ``--help``, as ``ml_tabular fit`` does."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"ml_tabular: error: {message}\nSee: {self.prog} --help\n")
        raise SystemExit(2)
