"""A mock APOGEE x Gaia survey made without astronn_gaiacal.simulate, to check the tool as a user would.

Written independently of the project's simulator: its own absorption-line
spectra (7514 pixels, line depths set by Teff, log g and [Fe/H] with their own
sensitivities), its own populations (red clump, a power-law giant branch,
dwarfs) in a magnitude-limited volume, its own extinction, Gaia error law,
S/N law and zero-point.  The zero-point falls linearly with G (slope
``--slope`` uas/mag, ``--level`` uas at G = 14), so a calibrated multivariate
model must recover that line.  Only the file writer comes from the package.

Usage::

    python examples/independent_mock.py train.h5 --n 4000 --seed 1
    python examples/independent_mock.py stars.h5 --n 2000 --seed 2
    astronn-gaiacal train train.h5 --offset multivariate --out M
    astronn-gaiacal zeropoint M stars.h5 --out zp.fits
    python examples/independent_mock.py --check zp.fits

``--check`` compares the per-star zero-points with the injected line (fitted
slope and level at G = 14, rms difference) and prints them as JSON.
"""
import argparse
import json

import numpy as np

N_PIX = 7514
LEVEL_UAS, SLOPE_UAS = -30.0, -6.0


def _stars(n, rng):
    kind = rng.choice(3, n, p=[0.3, 0.6, 0.1])  # red clump, giant branch, dwarfs
    abs_k = np.where(kind == 0, rng.normal(-1.62, 0.12, n),
                     np.where(kind == 1, -5.5 + rng.exponential(1.6, n).clip(0, 5.2), rng.uniform(2.5, 4.5, n)))
    teff = np.where(kind == 2, 5600 - 350 * (abs_k - 2.5), 4250 + 180 * (abs_k + 5.5) + rng.normal(0, 60, n))
    teff = np.where(kind == 0, rng.normal(4750, 70, n), teff)
    logg = np.where(kind == 2, 4.4 + rng.normal(0, 0.1, n), 2.45 + 0.38 * (abs_k + 1.62) + rng.normal(0, 0.05, n))
    feh = rng.normal(-0.15, 0.25, n)
    return abs_k, teff, logg, feh


def make(n, seed):
    rng = np.random.default_rng(seed)
    abs_k, teff, logg, feh = [], [], [], []
    dist, ext, kmag = [], [], []
    while sum(len(a) for a in kmag) < n:  # magnitude-limited: draw in volume, keep 7 < K < 12.2
        m = 4 * n
        a, t, g, f = _stars(m, rng)
        d = 8.0 * rng.uniform(0, 1, m) ** (1 / 3) + 0.05  # kpc, uniform in volume
        ak = rng.gamma(2.0, 0.06, m)
        k = a + 5 * np.log10(d * 100) + ak
        keep = (k > 7) & (k < 12.2)
        for store, v in ((abs_k, a), (teff, t), (logg, g), (feh, f), (dist, d), (ext, ak), (kmag, k)):
            store.append(v[keep])
    abs_k, teff, logg, feh, dist, ext, kmag = (np.concatenate(v)[:n] for v in (abs_k, teff, logg, feh, dist, ext,
                                                                                kmag))
    bp_rp = 0.95 + 0.9 * (5000 - teff) / 1000 + 0.45 * ext / 0.1 * 0.1 + rng.normal(0, 0.02, n)
    g_mag = kmag + 1.9 + 1.1 * (bp_rp - 1.0) + 2.5 * ext
    true_plx = 1.0 / dist
    zp = (LEVEL_UAS + SLOPE_UAS * (g_mag - 14.0)) / 1000
    plx_err = np.clip(0.018 + 0.022 * 10 ** (0.25 * (g_mag - 15)), 0.015, 0.3)
    snr = np.clip(140 * 10 ** (-0.2 * (kmag - 11)) * rng.lognormal(0, 0.15, n), 40, 900)
    # spectra: 400 lines at fixed pixels, depth set by the labels with each line's own sensitivity
    lrng = np.random.default_rng(12345)
    centres, widths = lrng.uniform(5, N_PIX - 5, 400), lrng.uniform(1.2, 3.0, 400)
    base = lrng.uniform(0.02, 0.25, 400)
    s_t, s_g, s_f = lrng.normal(0, 1, 400), lrng.normal(0, 1, 400), lrng.uniform(0.3, 1.2, 400)
    x = np.arange(N_PIX)
    spectra = np.empty((n, N_PIX), np.float32)
    for i in range(n):
        depth = base * np.exp(0.25 * s_t * (teff[i] - 4700) / 500 + 0.3 * s_g * (logg[i] - 2.5) + s_f * feh[i])
        prof = np.zeros(N_PIX)
        for c, w, dpt in zip(centres, widths, np.clip(depth, 0, 0.9)):
            lo, hi = int(c - 5 * w), int(c + 5 * w) + 1
            prof[lo:hi] += dpt * np.exp(-0.5 * ((x[lo:hi] - c) / w) ** 2)
        spectra[i] = np.exp(-prof) + rng.normal(0, 1 / snr[i], N_PIX)
    return {
        "spectra": spectra, "mag": kmag, "mag_ext": ext, "parallax": true_plx + zp + rng.normal(0, plx_err),
        "parallax_error": plx_err, "phot_g_mean_mag": g_mag, "bp_rp": bp_rp, "teff": teff, "logg": logg,
        "fe_h": feh, "snr": snr, "true_parallax": true_plx, "true_zeropoint": zp,
        "apogee_id": np.array([f"IND{seed:03d}-{i:06d}" for i in range(n)]),
    }


def check(path):
    from astropy.table import Table

    t = Table.read(path)
    g = np.asarray(t["phot_g_mean_mag"], float)
    zp = np.asarray(t["zeropoint"].to("uas") if hasattr(t["zeropoint"], "unit") and t["zeropoint"].unit else
                    np.asarray(t["zeropoint"]) * 1000, float)
    ok = np.isfinite(zp) & ~np.asarray(t["out_of_range"], bool) if "out_of_range" in t.colnames else np.isfinite(zp)
    slope, level = np.polyfit(g[ok] - 14.0, zp[ok], 1)
    truth = LEVEL_UAS + SLOPE_UAS * (g[ok] - 14.0)
    return {"n": int(ok.sum()), "slope_uas_per_mag": float(slope), "injected_slope": SLOPE_UAS,
            "slope_ratio": float(slope / SLOPE_UAS), "level_at_g14_uas": float(level), "injected_level": LEVEL_UAS,
            "rms_vs_truth_uas": float(np.sqrt(np.mean((zp[ok] - truth) ** 2)))}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--check", metavar="ZP_TABLE")
    args = parser.parse_args()
    if args.check:
        print(json.dumps(check(args.check), indent=1))
    else:
        from astronn_gaiacal.io.dataset import Dataset

        cols = make(args.n, args.seed)
        spectra = cols.pop("spectra")
        Dataset(spectra, columns=cols, units={"parallax": "mas", "parallax_error": "mas"},
                attrs={"band": "Ks", "source": "examples/independent_mock.py"}).write(args.out)
        print(f"wrote {args.n} stars to {args.out}")
