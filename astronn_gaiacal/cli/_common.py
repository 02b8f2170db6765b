"""Shared helpers of the subcommands: typed exits, input validation, output.

Library modules are imported inside the helpers that need them, so that
building the parser (``--help``) does not load TensorFlow.
"""
import contextlib
import io
import json
import os
import re
import signal
import sys
import threading

import numpy as np

#: Exit codes of ``astronn-gaiacal`` (docs/cli.rst).
EXIT_OK = 0
EXIT_INTERNAL_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
#: 128 + the signal number, as shells report a process stopped by it.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class UsageError(Exception):
    """Bad input (an argument, or a file it names): one line on stderr, exit code 2."""


class ServiceUnavailable(Exception):
    """The Gaia archive or the Dask cluster could not be used: one line on stderr, exit code 3."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so that the same clean-up runs (:func:`interrupt_on_sigterm`)."""


def _interrupt(signum, frame):
    raise Terminated(f"signal {signum}")


def interrupted_exit_code(err):
    """:data:`EXIT_TERMINATED` after SIGTERM (:class:`Terminated`), :data:`EXIT_INTERRUPTED` after Ctrl-C."""
    return EXIT_TERMINATED if isinstance(err, Terminated) else EXIT_INTERRUPTED


def interrupt_on_sigterm():
    """Make SIGTERM stop this process as Ctrl-C does (``KeyboardInterrupt``), so that the temporary files and
    folders of the command are removed on the way out (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def astronn_chatter_to_stderr():
    """Context manager sending astroNN's progress prints to stderr, keeping stdout for results/JSON."""
    return contextlib.redirect_stdout(sys.stderr)


def print_json(obj, file=None):
    """Print ``obj`` as JSON (NumPy scalars and arrays converted)."""

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    json.dump(_json_ready(obj), file or sys.stdout, indent=2, default=default, allow_nan=False)
    print(file=file or sys.stdout)


def _json_ready(obj):
    """``obj`` with NaN/inf floats replaced by ``None`` (``null``): JSON has no NaN."""
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_ready(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


#: Seeds go to NumPy's and Keras's generators, which take 0 .. 2**32 - 1.
SEED_RANGE = (0, 2**32 - 1)


#: Integer options that count something (at least 1 when given), checked whether or not the mode uses them.
COUNT_OPTIONS = ("batch_size", "chunk_rows", "chunk_size", "ensemble", "epochs", "jobs", "k", "max_partitions",
                 "mc_num", "n_stars", "n_test", "n_train", "workers")


def check_common_options(args):
    """UsageError naming the flag when a float option is not finite (nan, inf), a count is below 1, ``--retries``
    is negative or ``--seed`` is out of range."""
    for name, value in vars(args).items():
        flag = "-k" if name == "k" else "--" + name.replace("_", "-")
        if isinstance(value, float) and not np.isfinite(value):
            raise UsageError(f"{flag} must be a finite number, got {value}")
        if name in COUNT_OPTIONS and isinstance(value, int) and value < 1:
            raise UsageError(f"{flag} must be a positive integer (>= 1), got {value}")
        if name == "retries" and isinstance(value, int) and value < 0:
            raise UsageError(f"{flag} must be 0 or more, got {value}")
    seed = getattr(args, "seed", None)
    if isinstance(seed, int) and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise UsageError(f"--seed must be an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]}, got {seed}")


def check_positive(args, *names, allow_none=True):
    """UsageError naming ``--name`` when an integer/float option is not > 0."""
    for name in names:
        value = getattr(args, name)
        if value is None and allow_none:
            continue
        if value is None or not value > 0:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be a positive number, got {value}")


def numeric_columns(table, names, path):
    """UsageError naming the column when one of ``names`` holds text (e.g. 'N/A') instead of numbers."""
    for name in names:
        if name not in getattr(table, "colnames", table):
            continue
        col = table[name]
        kind = np.asarray(getattr(col, "value", col)).dtype.kind
        if kind not in "fiub":
            raise UsageError(f"column '{name}' of {path} is not numeric (dtype {np.asarray(col).dtype}); write "
                             "missing values as empty cells, NaN or -9999")


def _same_or_inside(path, other):
    a, b = os.path.realpath(path), os.path.realpath(other)
    return a == b or b.startswith(a.rstrip(os.sep) + os.sep)


def refuse_input_as_output(out, *inputs, flag="--out"):
    """UsageError if ``out`` is one of the inputs, or (a folder) contains one: the input is never the output."""
    for path in inputs:
        if out and path and os.path.exists(path) and _same_or_inside(out, path):
            raise UsageError(f"{flag} {out} is (or contains) the input {path}: choose another output path")


def is_own_output(path):
    """True if ``path`` is something this tool wrote: a model/ensemble folder, a catalogue output folder,
    an HDF5 dataset file, or a table with the tool's result columns."""
    from ..io.tables import TableFormatError, read_table

    if os.path.isdir(path):
        from ..models.folders import MANIFEST, PARAMETER_FILE, read_plugin_config

        if os.path.isfile(os.path.join(path, MANIFEST)) or os.path.isfile(os.path.join(path, "_manifest.json")):
            return True
        if os.path.isfile(os.path.join(path, "report.json")) and os.path.isdir(os.path.join(path, "models")):
            return True  # a demo's output folder
        if not os.path.isfile(os.path.join(path, PARAMETER_FILE)):
            return False
        try:
            return read_plugin_config(path) is not None
        except (ValueError, OSError):
            return False
    if not os.path.isfile(path):
        return False
    from ..constants import HDF5_EXTENSIONS

    if path.lower().endswith(HDF5_EXTENSIONS):
        try:
            import h5py

            from ..io.hdf5 import FORMAT_NAME

            with h5py.File(path, "r") as f:
                return str(f.attrs.get("format", "")) == FORMAT_NAME
        except OSError:
            return False
    try:
        names = read_table(path).colnames
    except (TableFormatError, OSError, ValueError):
        return False
    return bool({"zeropoint", "dist", "weighted_dist", "gaia_parallax"} & set(names)) or "source_id" in names \
        and "parallax" in names


def check_output(path, overwrite, inputs=(), what="output file", flag="--out"):
    """The output rules of docs/policy.rst: never an input; an existing path only with ``--overwrite``, and
    ``--overwrite`` only replaces what the tool itself wrote (:func:`is_own_output`).

    Returns
    -------
    bool
        True if ``path`` exists and may be replaced (``--overwrite``, or an empty folder).
    """
    if not path:
        return False
    refuse_input_as_output(path, *inputs, flag=flag)
    if not os.path.lexists(path):
        return False
    if os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
        return True  # an empty folder holds nothing to lose
    if not overwrite:
        raise UsageError(f"{what} {path} already exists; pass --overwrite to replace it")
    if not is_own_output(path):
        raise UsageError(f"{flag} {path} exists and was not written by astronn-gaiacal: --overwrite only replaces "
                         "the tool's own outputs; choose a new path")
    return True


def load_dataset(path, require=(), features=()):
    """Read a dataset file for a subcommand; a missing, unreadable or incomplete file is a UsageError."""
    from ..io.dataset import DatasetError, read_dataset
    from ..io.tables import TableFormatError

    if not os.path.exists(path):
        raise UsageError(f"no such file: {path}")
    try:
        ds = read_dataset(path, require=require, features=features)
    except (DatasetError, TableFormatError, OSError) as err:  # MissingColumnError is a DatasetError
        raise UsageError(f"cannot read {path}: {err}") from None
    from ..io.quality import parallax_unit_problem

    if "parallax_error" in ds:  # also when only passed through: the weighted parallaxes use it
        problem = parallax_unit_problem(ds["parallax_error"])
        if problem:
            raise UsageError(f"{path}: {problem}")
    return ds


def load_table(path):
    """Read a table file (FITS/CSV/ECSV/VOTable/Parquet) for a subcommand; problems become a UsageError."""
    from ..io.tables import TableFormatError, read_table

    if not os.path.exists(path):
        raise UsageError(f"no such file: {path}")
    try:
        return read_table(path)
    except (TableFormatError, OSError) as err:
        raise UsageError(f"cannot read {path}: {err}") from None


def load_model(path):
    """Open a model or ensemble folder; a folder that is not one is a UsageError."""
    from ..models import DeepEnsemble, GaiaCalBCNNBase, load
    from ..models.folders import folder_kind, read_plugin_config

    try:
        if folder_kind(path) == "model" and read_plugin_config(path) is None:
            raise ValueError("no parameter file")
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot load model {path}: {err} (MODEL must be a folder written by "
                         "`astronn-gaiacal train`; plain astroNN folders have no zero-point model)") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # astroNN's banner: not a result, not an error
            net = load(path)
    except (OSError, KeyError, ValueError) as err:
        raise UsageError(f"cannot load model {path}: {err}") from None
    except AttributeError as err:  # astroNN looks the saved class up by name among its models
        unknown = re.fullmatch(r"module 'astroNN\.models' has no attribute '(\w+)'", str(err))
        if unknown is None:
            raise
        raise UsageError(f"cannot load model {path}: it was saved by model class {unknown.group(1)}, which this "
                         "process does not know; in Python, after importing the module that defines it, use "
                         "astronn_gaiacal.models.load or astronn_gaiacal.cli.main (the command line knows only the "
                         "plugin's own models)") from None
    if not isinstance(net, (GaiaCalBCNNBase, DeepEnsemble)):
        raise UsageError(f"{path} holds an astroNN {type(net).__name__}, not an astronn_gaiacal model; train one "
                         "with `astronn-gaiacal train`")
    return net


def refuse_existing(path, overwrite, what="output file"):
    """UsageError if ``path`` exists and ``--overwrite`` was not given."""
    if path and os.path.exists(path) and not overwrite:
        raise UsageError(f"{what} {path} already exists (use --overwrite to replace it)")


def check_spectra_length(ds, path, expected, what="the model"):
    """UsageError if the dataset's spectra are not ``expected`` pixels long (``None``: any length)."""
    if expected is not None and ds["spectra"].shape[1] != expected:
        raise UsageError(f"{path} has {ds['spectra'].shape[1]}-pixel spectra; {what} expects {expected}")


def add_jobs_argument(parser):
    """``--jobs N``: trainings run at once in worker processes (default: one per core)."""
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="trainings run at once, one worker process each (default: one per CPU core; "
                             "1 trains in this process)")


def checked_jobs(args):
    """The ``--jobs`` value (a count: :func:`check_common_options` has refused it if < 1)."""
    return args.jobs


def add_seed_argument(parser):
    """``--seed`` of the commands that run MC dropout (predict, zeropoint)."""
    parser.add_argument("--seed", type=int, default=0, help="MC-dropout seed: the same seed gives the same numbers "
                        "(default 0); with --partitioned or --catalog, partition k uses a seed derived from it and "
                        "its key, so results do not depend on the worker")


def seed_mc_dropout(args):
    """Seed this process's MC-dropout draws from ``--seed`` (the in-process paths; Dask partitions seed their own)."""
    from .._compat import keras

    keras.utils.set_random_seed(args.seed)


def add_cluster_arguments(group):
    """Options shared by the Dask-backed subcommands (zeropoint --catalog, predict --partitioned)."""
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running Dask scheduler (default: a LocalCluster on this machine)")
    group.add_argument("--workers", type=int, default=None,
                       help="LocalCluster workers, one thread each (default: one per CPU core)")
    group.add_argument("--retries", type=int, default=2, help="Dask retries of a failed partition (default 2)")
    group.add_argument("--max-partitions", type=int, default=None,
                       help="compute at most this many of the remaining partitions, then stop (rerun to continue)")


def _report_scaled(args, summary):
    summary = {**summary, "computed": len(summary["computed"])}
    if args.json:
        print_json(summary)
    else:
        state = "complete" if summary["complete"] else "incomplete (rerun to resume)"
        print(f"{summary['rows']} rows in {summary['n_partitions']} partitions under {summary['out']}: {state}; "
              f"{summary['computed']} partition(s) computed now, {summary['skipped']} already written"
              + (f", {len(summary['failed'])} failed" if summary["failed"] else "")
              + (f"; {summary['rows_per_s']:.0f} rows/s" if summary["rows_computed"] else ""))


def run_scaled(kind, func, args, model, data, **kwargs):
    """Run a :mod:`astronn_gaiacal.distributed` job for a subcommand and report it.

    Exit 0 when done, 3 (after the report) when partitions failed or the
    scheduler at ``--scheduler`` cannot be reached.  Missing inputs and an
    output folder of another kind (``FileNotFoundError``/``FileExistsError``
    from the job's checks of its paths) are bad input.  An identical rerun of
    a finished command (same model files, input files and options:
    :func:`~astronn_gaiacal.distributed.resume.command_key`) returns at once,
    without loading TensorFlow or starting a cluster, and writes nothing.
    """
    from ..distributed.resume import command_key, finished_run

    key = command_key(kind, model, data, vars(args))
    done = finished_run(args.out, key)
    if done is not None:
        n = int(done.get("n_partitions", len(done.get("partitions", {}))))
        _report_scaled(args, {"out": os.path.abspath(args.out), "kind": kind, "n_partitions": n, "computed": [],
                              "skipped": n, "failed": [], "complete": True, "rows": int(done.get("rows", 0)),
                              "rows_computed": 0, "seconds": 0.0, "rows_per_s": None})
        return EXIT_OK
    from ..distributed import PartitionFailure, cluster_client
    from ..io.columns import DatasetError

    if args.scheduler is not None and not args.scheduler.strip():
        raise UsageError("--scheduler needs an address, e.g. tcp://host:8786")
    if args.scheduler and args.workers is not None:
        raise UsageError("--workers sets up a LocalCluster; it cannot be combined with --scheduler")
    if args.max_partitions is not None and isinstance(data, (str, os.PathLike)) and os.path.isfile(
            os.path.join(data, "hats.properties")):
        raise UsageError("--max-partitions applies to Parquet input; LSDB writes a HATS catalogue in one call "
                         "(interrupt it and rerun: it resumes)")
    with contextlib.ExitStack() as stack:
        scheduler = args.scheduler
        if scheduler:
            try:
                scheduler = stack.enter_context(cluster_client(scheduler=scheduler))
            except OSError as err:
                raise ServiceUnavailable(f"cannot reach the Dask scheduler {args.scheduler}: {err}") from None
        try:
            summary = func(scheduler=scheduler, n_workers=args.workers, seed=args.seed, retries=args.retries,
                           max_partitions=args.max_partitions, overwrite=args.overwrite, command_key=key, **kwargs)
            code = EXIT_OK
        except PartitionFailure as err:
            print(f"astronn-gaiacal {kind}: {err}", file=sys.stderr)
            summary, code = err.summary, EXIT_UNAVAILABLE
        except (FileNotFoundError, FileExistsError, DatasetError) as err:  # a missing column is a DatasetError
            raise UsageError(str(err).strip("'\"")) from None
    _report_scaled(args, summary)
    return code


def trend_lines(fit):
    """Text lines of a trend fit's JSON (``ZeropointTrendFit.to_dict()``): the scale, then one quadratic per feature."""
    lines = [f"{fit['n_stars']} stars, luminosity scale {fit['scale']:.4f} +- {fit['scale_error']:.4f}, scatter "
             f"{100 * fit['scatter']:.1f}%"]
    if "luminosity_offset" in fit:
        lines.append(f"additive luminosity term {fit['luminosity_offset']:.3g} +- {fit['luminosity_offset_error']:.2g} "
                     f"fakemag, pinned by {fit['n_anchors']} anchor star(s)")
    for t in fit["trends"].values():
        lines.append(f"{t['feature']}: {t['a']:.4g}({t['a_err']:.2g})(x-{t['pivot']:g})^2 + {t['b']:.4g}"
                     f"({t['b_err']:.2g})(x-{t['pivot']:g}) + {t['c']:.4g}({t['c_err']:.2g}) uas, valid "
                     f"{t['valid_range'][0]:.4g}..{t['valid_range'][1]:.4g}")
    return lines


#: The outlier flags: default, metavar and help (the fields of :class:`~astronn_gaiacal.simulate.outliers.Outliers`).
OUTLIER_FLAGS = {
    "--binary-fraction": (0.0, "F", "fraction of unresolved binaries: the system is brighter by 2.5 log10(1 + q^4), "
                                    "the spectrum the primary's (default 0)"),
    "--binary-q-min": (1.0, "Q", "smallest binary mass ratio, q uniform in [Q, 1] (default 1: equal-mass twins, "
                                 "twice the luminosity)"),
    "--mismatch-fraction": (0.0, "F", "fraction of mis-matched cross-matches: the Gaia parallax and error of "
                                      "another star (default 0)"),
    "--tail-fraction": (0.0, "F", "fraction of stars whose Gaia parallax noise is --tail-scale times broader than "
                                  "the quoted error (default 0)"),
    "--tail-scale": (5.0, "K", "width of the broad Gaia error component in quoted errors (default 5)"),
}


def outliers_from_args(args):
    """The --*-fraction flags as an Outliers (None when all are 0); bad values are a usage error."""
    from ..simulate.outliers import Outliers

    try:
        outliers = Outliers(binary=args.binary_fraction, mismatch=args.mismatch_fraction, tail=args.tail_fraction,
                            binary_q_min=args.binary_q_min, tail_scale=args.tail_scale)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return outliers if outliers.on else None
