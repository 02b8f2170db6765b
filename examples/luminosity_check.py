"""The luminosity check of a catalogue against Gaia and, on a mock, against the truth (docs/calibration.rst).

usage: python examples/luminosity_check.py CATALOGUE.fits TEST.h5 [N_BINS]
CATALOGUE from ``astronn-gaiacal predict MODEL TEST.h5 --out CATALOGUE.fits``; TEST.h5 a simulated test set (it has
``true_parallax`` and ``true_zeropoint``).  Per quantile bin of the predicted fakemag: Gaia's estimate of the
fractional parallax bias (``luminosity_bias``, the true zero-point subtracted) and the same estimator fed the true
parallaxes instead of Gaia's.
"""
import sys

import numpy as np
from astropy.table import Table

from astronn_gaiacal.io.dataset import read_dataset
from astronn_gaiacal.models.luminosity_check import luminosity_bias

cat, test = Table.read(sys.argv[1]), read_dataset(sys.argv[2])
n_bins = int(sys.argv[3]) if len(sys.argv) > 3 else 6
args = [np.asarray(cat[c], float) for c in ("parallax_error", "nn_parallax", "nn_parallax_error", "fakemag")]
zp = np.asarray(test["true_zeropoint"], float)
gaia = luminosity_bias(np.asarray(cat["parallax"], float), *args, zeropoint=zp, n_bins=n_bins)
truth = luminosity_bias(np.asarray(test["true_parallax"], float) + zp, *args, zeropoint=zp, n_bins=n_bins)
for g, t in zip(gaia["bins"], truth["bins"]):
    print(f"log10 fakemag {g['log10_fakemag'][0]:.2f}-{g['log10_fakemag'][1]:.2f}  n={g['n']:5d}  "
          f"Gaia {100 * g['bias']:+5.1f} +- {100 * g['bias_error']:.1f} %{' flagged' if g['flagged'] else '':8s}  "
          f"truth {100 * t['bias']:+5.1f} %")
