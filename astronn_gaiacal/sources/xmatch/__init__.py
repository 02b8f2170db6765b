"""Cross-match a table with Gaia DR2, EDR3 or DR3: through the ESA Gaia archive, or a local extract.

:func:`crossmatch` uploads the table in chunks to the Gaia archive (an ADQL
``CONTAINS``/``DISTANCE`` join by position, or a join on ``source_id``) through
pyvo's TAP client; :func:`crossmatch_local` does the same against a Gaia
table on disk with :meth:`~astropy.coordinates.SkyCoord.match_to_catalog_sky`.
Both return an `~astropy.table.Table` aligned row for row with the input, the
same columns (:func:`gaia_columns`), and masked rows where there is no match.

The parts, one module each:

* :mod:`~astronn_gaiacal.sources.xmatch.schema`: the Gaia columns of each
  release (names, dtypes, units, descriptions) and the check of a table against them;
* :mod:`~astronn_gaiacal.sources.xmatch.matching`: input rows, nearest candidate
  and the aligned result, shared by the archive and the local match;
* :mod:`~astronn_gaiacal.sources.xmatch.archive`: the ESA Gaia archive (chunks,
  completeness checks, retries, timeouts, cache, :class:`GaiaArchiveError`);
* :mod:`~astronn_gaiacal.sources.xmatch.local`: a local Gaia extract;
* :mod:`~astronn_gaiacal.sources.xmatch.apogee`: APOGEE tables to dataset
  columns (:func:`to_dataset`) and :func:`plot_crossmatch`.

Examples
--------
Offline, against a local extract (here two synthetic Gaia DR3 sources):

>>> import numpy as np
>>> from astropy.table import Table
>>> from astronn_gaiacal.sources.xmatch import crossmatch_local, gaia_columns
>>> gaia = Table({name: np.zeros(2) for name in gaia_columns("dr3", by="source_id")})
>>> gaia["source_id"] = [11, 22]
>>> gaia["ra"], gaia["dec"] = [10.0, 10.0], [20.0, 20.01]
>>> stars = Table({"ra": [10.0, 10.0, 50.0], "dec": [20.0 + 1.5 / 3600, 20.01, -5.0]})
>>> match = crossmatch_local(stars, gaia, release="dr3")
>>> match["source_id"].filled(-1).tolist()
[11, 22, -1]
>>> np.round(match["xmatch_sep"].filled(np.nan), 3).tolist()
[1.5, 0.0, nan]
"""
from ...io.tables import read_table, write_table
from .apogee import (APOGEE_COLUMNS, add_gaia_columns, dataset_columns, plot_crossmatch, previous_match_columns,
                     to_dataset)
from .archive import CACHE_ENV, GAIA_ARCHIVE_URL, GaiaArchiveError, GaiaTruncatedResultError, crossmatch, gaia_archive
from .local import crossmatch_local
from .schema import RELEASES, Release, gaia_columns

__all__ = [
    "RELEASES",
    "Release",
    "GAIA_ARCHIVE_URL",
    "CACHE_ENV",
    "GaiaArchiveError",
    "GaiaTruncatedResultError",
    "gaia_columns",
    "gaia_archive",
    "crossmatch",
    "crossmatch_local",
    "add_gaia_columns",
    "previous_match_columns",
    "dataset_columns",
    "to_dataset",
    "APOGEE_COLUMNS",
    "read_table",
    "write_table",
    "plot_crossmatch",
]
