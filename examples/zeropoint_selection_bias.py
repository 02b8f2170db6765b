"""How much does an imprecise luminosity bias the jointly fitted zero-point in a magnitude-limited sample?

No neural network: the luminosity model is exp(quadratic polynomial of the stellar labels), the
labels blurred by Gaussian noise so that the luminosity scatter can be dialled.  It is fitted
jointly with a constant zero-point to the Gaia parallaxes of the mock survey's training-like
stars (S/N > 200), by nonlinear least squares, in two ways:

* ``gaia_only``: residuals weighted by the Gaia error alone;
* ``with_scatter``: the Gaia error in quadrature with the luminosity scatter times the predicted
  parallax, as the paper's likelihood does with the network's predictive variance.

Run:  python examples/zeropoint_selection_bias.py   (about a minute on 2 cores)
The table is in docs/calibration.rst.
"""
import argparse

import numpy as np
from astropy import units as u
from scipy.optimize import least_squares

from astronn_gaiacal.constants import PAPER_SNR_SPLIT, PAPER_ZEROPOINT_UAS
from astronn_gaiacal.simulate import simulate_catalogue

#: Label noise per unit of ``--noise`` (Teff in kK, log g, [Fe/H], [C/N] in dex).
LABEL_NOISE = (0.05, 0.1, 0.05, 0.05)


def design(cols, scale, rng):
    n = len(cols["teff"])
    x = np.stack([cols["teff"] / 1000, cols["logg"], cols["fe_h"], cols["c_n"]], axis=1)
    x = x + rng.normal(0, 1, x.shape) * np.asarray(LABEL_NOISE) * scale
    x = (x - x.mean(0)) / x.std(0)
    quad = [x[:, i] * x[:, j] for i in range(4) for j in range(i, 4)]
    return np.column_stack([np.ones(n), x, *quad])


def joint_fit(features, w, plx, err, scatter=None):
    """Fit plx = exp(features @ theta) * w + zp; returns (zp in uas, its 1-sigma error)."""
    start = np.linalg.lstsq(features, np.log(np.clip(plx, 0.05, None) / w), rcond=None)[0]

    def resid(p):
        pred = np.exp(features @ p[:-1]) * w
        sigma = err if scatter is None else np.sqrt(err**2 + (scatter * pred) ** 2)
        return (pred + p[-1] - plx) / sigma

    sol = least_squares(resid, np.r_[start, 0.0])
    cov = np.linalg.inv(sol.jac.T @ sol.jac)
    return sol.x[-1] * 1000, np.sqrt(cov[-1, -1]) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stars", type=int, default=60000, help="stars drawn before the S/N cut")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cols, _, _ = simulate_catalogue(args.stars, seed=args.seed, zeropoint=PAPER_ZEROPOINT_UAS * u.uas)
    keep = np.asarray(cols["snr"]) > PAPER_SNR_SPLIT
    c = {k: np.asarray(cols[k], dtype=float)[keep] for k in
         ("teff", "logg", "fe_h", "c_n", "mag", "mag_ext", "parallax", "parallax_error", "true_parallax")}
    w = 10 ** (-(c["mag"] - c["mag_ext"]) / 5)
    fakemag = c["true_parallax"] / w
    rng = np.random.default_rng(0)
    print(f"{keep.sum()} stars with S/N > {PAPER_SNR_SPLIT:g}; injected zero-point {PAPER_ZEROPOINT_UAS} uas")
    print(f"{'label noise':>11} {'lum. scatter':>12} {'gaia_only (uas)':>17} {'with_scatter (uas)':>19}")
    for scale in (0.0, 0.5, 1.0, 2.0):
        feats = design(c, scale, rng)
        theta = np.linalg.lstsq(feats, np.log(fakemag), rcond=None)[0]
        scatter = float(np.std(np.log(fakemag) - feats @ theta))
        a = joint_fit(feats, w, c["parallax"], c["parallax_error"])
        b = joint_fit(feats, w, c["parallax"], c["parallax_error"], scatter=scatter)
        print(f"{scale:11.1f} {100 * scatter:11.1f}% {a[0]:9.1f} +- {a[1]:4.1f} {b[0]:10.1f} +- {b[1]:4.1f}")


if __name__ == "__main__":
    main()
