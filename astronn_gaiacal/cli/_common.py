"""Shared helpers of the subcommands."""
import json
import sys


class UsageError(Exception):
    """Bad input: reported in one line on stderr, exit code 2."""


def astronn_chatter_to_stderr():
    """Context manager sending astroNN's progress prints to stderr, keeping stdout for results/JSON."""
    import contextlib

    return contextlib.redirect_stdout(sys.stderr)


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


def load_dataset(path, require=(), features=()):
    """Read a dataset file for a subcommand; any problem becomes a one-line UsageError."""
    import os

    if not os.path.exists(path):
        raise UsageError(f"no such file: {path}")
    from ..io.dataset import DatasetError, read_dataset

    try:
        return read_dataset(path, require=require, features=features)
    except (DatasetError, OSError, KeyError, ValueError) as err:
        raise UsageError(f"cannot read {path}: {err}") from None


def load_model(path):
    """Open a model or ensemble folder; problems become a UsageError."""
    from ..models import load

    try:
        with astronn_chatter_to_stderr():
            return load(path)
    except (FileNotFoundError, OSError, KeyError, ValueError, TypeError) as err:
        raise UsageError(f"cannot load model {path}: {err}") from None


def summarise_model(net, folder=None):
    """JSON-ready description of a trained model (or ensemble), with its zero-point if constant."""
    import astropy.units as u

    members = getattr(net, "members", None)
    first = members[0] if members else net
    summary = {
        "model_class": type(first).__name__,
        "folder": str(folder) if folder else None,
        "offset": first.offset,
        "offset_features": first.offset_features if first.offset == "multivariate" else [],
        "ensemble_members": len(members) if members else 1,
        "loss": first.loss_name,
        "zeropoint_convention": "parallax_gaia = parallax_true + zeropoint",
    }
    history = getattr(first, "history", None)
    if history is not None and getattr(history, "history", None):
        summary["final_loss"] = float(history.history["loss"][-1])
        summary["epochs"] = len(history.history["loss"])
    if first.offset == "constant":
        if members:
            value, error, parts = net.zeropoint(components=True)
            summary["zeropoint_mc_err_uas"] = float(parts["mc"].to_value(u.uas))
            summary["zeropoint_ensemble_err_uas"] = float(parts["ensemble"].to_value(u.uas))
        else:
            value, error = net.zeropoint()
        summary["zeropoint_uas"] = float(value.to_value(u.uas))
        summary["zeropoint_err_uas"] = float(error.to_value(u.uas))
        summary["zeropoint_estimate"] = "ensemble" if members else "mc"  # calibration study's names
    return summary


def add_jobs_argument(parser):
    """``--jobs N``: trainings run at once in worker processes (default: one per core)."""
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="trainings run at once, one worker process each (default: one per CPU core; "
                             "1 trains in this process)")


def checked_jobs(args):
    """The ``--jobs`` value, refused if < 1."""
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    return args.jobs


def add_cluster_arguments(group):
    """Options shared by the Dask-backed subcommands (zeropoint --catalog, predict --partitioned)."""
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running Dask scheduler (default: a LocalCluster on this machine)")
    group.add_argument("--workers", type=int, default=None,
                       help="LocalCluster workers, one thread each (default: one per CPU core)")
    group.add_argument("--seed", type=int, default=0, help="MC-dropout seed; partition k uses a seed derived "
                       "from it and its key, so results do not depend on the worker (default 0)")
    group.add_argument("--retries", type=int, default=2, help="Dask retries of a failed partition (default 2)")
    group.add_argument("--max-partitions", type=int, default=None,
                       help="compute at most this many of the remaining partitions, then stop (rerun to continue)")


def run_scaled(kind, func, args, **kwargs):
    """Run a :mod:`astronn_gaiacal.distributed` job for a subcommand and report it; 1 if partitions failed."""
    from ..distributed import PartitionFailure

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be a positive integer, got {args.workers}")
    if args.scheduler and args.workers is not None:
        raise UsageError("--workers sets up a LocalCluster; it cannot be combined with --scheduler")
    try:
        summary = func(scheduler=args.scheduler, n_workers=args.workers, seed=args.seed, retries=args.retries,
                       max_partitions=args.max_partitions, overwrite=args.overwrite, **kwargs)
        code = 0
    except PartitionFailure as err:
        print(f"astronn-gaiacal {kind}: {err}", file=sys.stderr)
        summary, code = err.summary, 1
    except (FileNotFoundError, FileExistsError, KeyError, TypeError, ValueError) as err:
        raise UsageError(str(err).strip("'\"")) from None
    summary = {**summary, "computed": len(summary["computed"])}
    if args.json:
        print_json(summary)
    else:
        state = "complete" if summary["complete"] else "incomplete (rerun to resume)"
        print(f"{summary['rows']} rows in {summary['n_partitions']} partitions under {summary['out']}: {state}; "
              f"{summary['computed']} partition(s) computed now, {summary['skipped']} already written"
              + (f", {len(summary['failed'])} failed" if summary["failed"] else "")
              + (f"; {summary['rows_per_s']:.0f} rows/s" if summary["rows_computed"] else ""))
    return code
