"""Shared helpers of the subcommands."""
import json
import sys


class UsageError(Exception):
    """Bad input: reported in one line on stderr, exit code 2."""


def print_json(obj, file=None):
    """Print ``obj`` as JSON (NumPy scalars and arrays converted)."""
    import numpy as np

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    json.dump(obj, file or sys.stdout, indent=2, default=default, allow_nan=True)
    print(file=file or sys.stdout)
