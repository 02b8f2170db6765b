"""``astronn-gaiacal spectra FILES_OR_DIR... --out DATA.h5``.

Continuum-normalises apStar files as in the paper (the globally weighted
combined spectrum of a multi-visit file, Appendix A; ``--row`` picks another)
and writes the dataset format with ``spectra``, ``spectra_err``, ``mag`` (K),
``mag_ext`` (AKTARG), ``apogee_id``, ``ra``, ``dec`` (and ``mag_error``,
``snr``, ``starflag``, ``vscatter``, ``nvisits``, ``apstar_file``,
``apstar_row``).  Files that cannot be read are
reported one by one on stderr and skipped; a summary goes to stdout (JSON with
``--json``).  Exit 2 (no output written) if no file at all could be read.
"""
import argparse
import os

from ..constants import APOGEE_DEFAULT_DR, HDF5_EXTENSIONS
from ._common import UsageError, print_json

NAME = "spectra"
HELP = "continuum-normalise APOGEE apStar files into a dataset file (HDF5)"


def add_arguments(parser):
    parser.add_argument("sources", nargs="+", metavar="FILES_OR_DIR",
                        help="apStar files and/or folders of apStar*.fits files")
    parser.add_argument("--out", required=True, metavar="DATA.h5",
                        help=f"dataset file to write ({', '.join(HDF5_EXTENSIONS)})")
    parser.add_argument("--dr", type=int, default=None,
                        help="APOGEE data release of the continuum mask (default: from each file name, else 17; "
                             "the paper used 14)")
    parser.add_argument("--row", type=_row, default="global", metavar="{global,pixel,N}",
                        help="spectrum of files with more than one visit: 'global' (default), the globally weighted "
                             "combination the paper's Appendix A recommends (row 1); 'pixel', the pixel-weighted "
                             "one (row 0); or row N (2, 3, ... are the visits).  A single visit's one spectrum is "
                             "read whatever --row")
    parser.add_argument("--plot", metavar="PNG", default=None, help="also plot the first spectra into this PNG")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _row(text):
    """``--row``: a name of ``APSTAR_ROWS`` or a row number >= 0 (argparse reports a bad one: exit 2)."""
    if text in ("global", "pixel"):
        return text
    try:
        row = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'global', 'pixel' or a row number; got {text!r}") from None
    if row < 0:
        raise argparse.ArgumentTypeError(f"a row number must be >= 0; got {row}")
    return row


def run(args):
    from ..io.dataset import write_dataset
    from ..sources.spectra import SUPPORTED_DRS, load_apstar_batch, plot_spectra

    out = args.out
    if not out.lower().endswith(HDF5_EXTENSIONS):
        raise UsageError(f"--out must be an HDF5 file ({', '.join(HDF5_EXTENSIONS)}); got '{out}'")
    for target in (out, args.plot):
        if target and os.path.exists(target) and not args.overwrite:
            raise UsageError(f"'{target}' already exists; pass --overwrite to replace it")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot must be a .png file; got '{args.plot}'")
    if args.dr is not None and args.dr not in SUPPORTED_DRS:
        raise UsageError(f"--dr {args.dr} is not supported; use one of {SUPPORTED_DRS}")
    batch = load_apstar_batch(args.sources, dr=args.dr, row=args.row, progress=not args.no_progress)
    if batch.dataset is None:
        raise UsageError(f"none of the {batch.n_input} input(s) could be read; nothing written")
    write_dataset(out, batch.dataset, overwrite=args.overwrite)
    if args.plot:
        plot_spectra(batch.dataset, args.plot, dr=batch.dataset.attrs.get("continuum_dr", APOGEE_DEFAULT_DR),
                     overwrite=args.overwrite)
    summary = {
        "out": os.path.abspath(out),
        "plot": os.path.abspath(args.plot) if args.plot else None,
        "n_input": batch.n_input,
        "n_written": batch.n_read,
        "n_skipped": len(batch.failed),
        "skipped": [{"path": p, "reason": r} for p, r in batch.failed],
    }
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {batch.n_read} spectra to {out} ({len(batch.failed)} of {batch.n_input} input(s) skipped)")
    return 0
