"""``astronn-gaiacal xmatch``: add Gaia columns to a table (archive or local extract)."""
import os
import sys
import warnings

from ..constants import HDF5_EXTENSIONS
from ._common import (ServiceUnavailable, UsageError, check_output, interrupt_on_sigterm, load_dataset, load_table,
                      print_json)

NAME = "xmatch"
HELP = "cross-match a table with Gaia DR2/EDR3/DR3 (ESA archive or a local Gaia file)"


def add_arguments(parser):
    parser.add_argument("table", metavar="TABLE",
                        help="input: FITS, CSV, ECSV, VOTable, Parquet, or the HDF5 dataset format")
    parser.add_argument("--release", required=True, choices=("dr2", "edr3", "dr3"), help="Gaia release")
    parser.add_argument("--by", choices=("position", "source_id"), default="position",
                        help="match by position (default) or by Gaia source_id")
    parser.add_argument("--radius", type=float, default=None, metavar="ARCSEC",
                        help="match radius in arcsec (default 2, the paper's)")
    parser.add_argument("--with-2mass", action="store_true",
                        help="add 2MASS Ks, its error and quality flag (archive best-neighbour tables)")
    parser.add_argument("--local", metavar="GAIA_FILE",
                        help="match against this Gaia table (FITS/HDF5/Parquet/...) instead of the archive")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="output: FITS, CSV, ECSV, VOTable, Parquet, or HDF5 dataset (input + Gaia columns)")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    parser.add_argument("--ra", default="ra", help="RA column (deg; case-insensitive; default ra)")
    parser.add_argument("--dec", default="dec", help="Dec column (deg; default dec)")
    parser.add_argument("--epoch", default=None,
                        help="epoch of the positions: a column name or a Julian year (e.g. 2000.0)")
    parser.add_argument("--source-id-column", default="source_id", help="Gaia id column for --by source_id")
    parser.add_argument("--chunk-size", type=int, default=5000, help="rows per archive job (default 5000)")
    parser.add_argument("--retries", type=int, default=3, help="retries per chunk on transient errors")
    parser.add_argument("--cache-dir", default=None, help="cache folder for finished chunks")
    parser.add_argument("--no-cache", action="store_true", help="do not cache archive results")
    parser.add_argument("--archive-url", default=None, help="Gaia archive root (default the ESA archive)")
    parser.add_argument("--plot", metavar="PNG", help="also write a diagnostic plot")


def _epoch(text):
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _read(path):
    """(table, dataset or None)."""
    if path.lower().endswith(HDF5_EXTENSIONS):
        dataset = load_dataset(path)
        return dataset.to_table(), dataset
    return load_table(path), None


def _check_input(table, args):
    """The input's position or source_id columns, checked by the library before anything is matched."""
    from ..sources.xmatch.matching import prepare_input

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rows without a position: the match warns about them
            prepare_input(table, args.by, args.ra, args.dec, _epoch(args.epoch) if args.by == "position" else None,
                          args.source_id_column)
    except (KeyError, ValueError, TypeError) as err:  # bad input, naming the argument or column
        text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise UsageError(f"{args.table}: {' '.join(str(text).split())}") from None


def _previous_match(table, dataset, matched, args):
    """The Gaia columns of an earlier cross-match in the input: refused without --overwrite, else replaced."""
    from ..sources.xmatch import previous_match_columns

    keep = (args.ra, args.dec) if args.by == "position" else (args.source_id_column,)
    old = previous_match_columns(table, matched, keep=keep)
    release = (dataset.attrs if dataset is not None else table.meta).get("gaia_release")
    if (old or release) and not args.overwrite:
        raise UsageError(f"{args.table} is already cross-matched with Gaia {release or '(release unknown)'} (columns "
                         f"{', '.join(old[:4])}{' ...' if len(old) > 4 else ''}): pass --overwrite to replace its "
                         f"Gaia columns and release with {args.release}'s")
    return old


def _write(table, matched, dataset, path, overwrite, replace=(), release=None):
    from ..io.dataset import Dataset, write_dataset
    from ..io.tables import write_table
    from ..sources.xmatch import add_gaia_columns, dataset_columns

    combined = add_gaia_columns(table, matched, replace=replace, release=release)
    if not path.lower().endswith(HDF5_EXTENSIONS):
        write_table(combined, path, overwrite=overwrite)
        return
    if dataset is not None:  # keep spectra and attributes, replace or add the Gaia columns
        kept = [n for n in table.colnames if n not in replace]
        values, units = dataset_columns(combined[[n for n in combined.colnames if n not in kept]])
        dataset = Dataset(spectra=dataset["spectra"] if "spectra" in dataset else None,
                          spectra_err=dataset["spectra_err"] if "spectra_err" in dataset else None,
                          columns={n: dataset[n] for n in dataset.names if n not in replace},
                          units={n: v for n, v in dataset.units.items() if n not in replace},
                          attrs={**dataset.attrs, "gaia_release": release or matched.meta["gaia_release"]})
        out = dataset.with_columns(units=units, **values)
    else:
        values, units = dataset_columns(combined[[n for n in combined.colnames if combined[n].ndim == 1]])
        out = Dataset(columns=values, units=units, attrs={"gaia_release": matched.meta["gaia_release"]})
    write_dataset(path, out, overwrite=overwrite)


def _check_arguments(args):
    from ..io.tables import TableFormatError, table_format

    check_output(args.out, args.overwrite, inputs=[args.table, args.local])
    if args.plot and os.path.exists(args.plot) and not args.overwrite:
        raise UsageError(f"{args.plot} exists; pass --overwrite to replace it")
    try:
        table_format(args.out)
    except TableFormatError:
        raise UsageError(f"cannot tell the format of {args.out!r}: use .fits, .csv, .ecsv, .vot, .parquet or "
                         ".h5") from None
    if not os.path.exists(args.table):
        raise UsageError(f"no such table: {args.table}")
    if args.local and not os.path.exists(args.local):
        raise UsageError(f"no such Gaia file: {args.local}")
    if args.radius is not None and not args.radius > 0:
        raise UsageError(f"--radius must be a positive number of arcsec, got {args.radius}")


def run(args):
    interrupt_on_sigterm()
    from astropy import units as u

    from ..io.dataset import DatasetError
    from ..io.tables import TableFormatError
    from ..sources.xmatch import GaiaArchiveError, crossmatch, crossmatch_local, gaia_archive, plot_crossmatch

    _check_arguments(args)
    table, dataset = _read(args.table)
    _check_input(table, args)
    arrays = [n for n in table.colnames if table[n].ndim > 1]
    if arrays and args.out.lower().endswith((".csv", ".ecsv")):
        raise UsageError(f"--out {args.out}: CSV/ECSV cannot hold the array column(s) {', '.join(arrays)} in a form "
                         "the tool reads back; write .h5 (the dataset format), .fits or .parquet")
    radius = None if args.radius is None else args.radius * u.arcsec
    common = dict(release=args.release, by=args.by, radius=radius, ra=args.ra, dec=args.dec,
                  epoch=_epoch(args.epoch) if args.by == "position" else None,
                  source_id=args.source_id_column, with_2mass=args.with_2mass)
    if args.local:
        try:
            matched = crossmatch_local(table, args.local, **common)
        except (TableFormatError, DatasetError) as err:  # the Gaia file is not a readable Gaia table
            raise UsageError(f"{args.local}: {err}") from None
    else:
        try:
            archive = gaia_archive(args.archive_url) if args.archive_url else None
        except ValueError as err:  # not an http(s) address
            raise UsageError(f"--archive-url: {err}") from None
        cache = False if args.no_cache else (args.cache_dir or True)
        try:
            matched = crossmatch(table, **common, chunk_size=args.chunk_size, retries=args.retries, cache=cache,
                                 archive=archive, progress=sys.stderr.isatty())
        except GaiaArchiveError as err:
            raise ServiceUnavailable(" ".join(str(err).split())) from None
    replace = _previous_match(table, dataset, matched, args)
    _write(table, matched, dataset, args.out, args.overwrite, replace=replace, release=args.release)
    if args.plot:
        plot_crossmatch(matched, args.plot, overwrite=args.overwrite)
    print_json({"rows": len(matched), "matched": int(matched.meta["n_matched"]), "release": args.release,
                "by": args.by, "out": args.out, **({"plot": args.plot} if args.plot else {})})
    return 0
