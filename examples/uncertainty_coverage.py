"""Acceptance of issue 25 on fresh mock test sets: coverage of the catalogue's dist_error against the truth.

usage: python examples/uncertainty_coverage.py MODEL_FOLDER MC_NUM seeds...   (e.g. demo_out/models/constant 100 77 78 79)
The catalogue is made as `astronn-gaiacal predict` makes it (pipeline.catalogue_for: for a model with an S/N-dependent
scale, the scale at each star's S/N); "const_*" are the same with the constant scale instead (dist_error times the
constant scale / uncertainty_scale_at(snr)).  "ok": within the issue's 68 +- 5 % and 95 +- 3 % (checked for groups of >= 200 stars); "median_z": the median
of (dist - true) / dist_error (a bias in units of the errors).
"""
import json
import sys
import warnings

import numpy as np
from astropy import units as u

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal import pipeline, summaries
from astronn_gaiacal._compat import keras
from astronn_gaiacal.metrics import sigma_mad
from astronn_gaiacal.models import load
from astronn_gaiacal.models.calibration import coverage
from astronn_gaiacal.simulate import simulate_train_test
from astronn_gaiacal.studies.demo import coverage_groups, within_target

warnings.simplefilter("ignore")
folder, mc_num = sys.argv[1], int(sys.argv[2])
seeds = [int(s) for s in sys.argv[3:]]
model = load(folder)
print(json.dumps(summaries.uncertainty_summary(model)), flush=True)
for seed in seeds:
    keras.utils.set_random_seed(seed)
    _, te = simulate_train_test(100, 2000, seed=seed, zeropoint=-52.3 * u.uas)
    cat = pipeline.catalogue_for(model, te, mc_num=mc_num)
    d, e = cat["dist"].to_value(u.pc), cat["dist_error"].to_value(u.pc)
    w, we = cat["weighted_dist"].to_value(u.pc), cat["weighted_dist_error"].to_value(u.pc)
    truth = np.asarray(te["true_distance"], float)
    zp = cat.meta["ZEROPT"][0] if "ZEROPT" in cat.meta else 0.0
    plx, perr = cat["parallax"].to_value(u.mas), cat["parallax_error"].to_value(u.mas)
    nn, nerr = cat["nn_parallax"].to_value(u.mas), cat["nn_parallax_error"].to_value(u.mas)
    z = (plx - zp - nn) / np.hypot(perr, nerr)
    res0 = {"gaia_z_robust_std_test": sigma_mad(z), "gaia_z_within_1": float(np.mean(np.abs(z) < 1))}
    e_const = e * model.uncertainty_scale / model.uncertainty_scale_at(np.asarray(te["snr"], float))
    res = {**res0, "seed": seed, "sigma_mad": sigma_mad(d / truth - 1), "median_frac_err": float(np.median(e / d)),
           "groups": {}}
    for name, sel in coverage_groups(te).items():
        c = coverage(d[sel] - truth[sel], e[sel])
        cs = coverage(d[sel] - truth[sel], e_const[sel])
        cw = coverage(w[sel] - truth[sel], we[sel])
        res["groups"][name] = {"n": c["n"], "c1": c["within_1sigma"], "c2": c["within_2sigma"],
                               "ok": bool(within_target(c)), "const_c1": cs["within_1sigma"],
                               "const_c2": cs["within_2sigma"], "const_ok": bool(within_target(cs)),
                               "median_z": float(np.median((d[sel] - truth[sel]) / e[sel])),
                               "rstd": c["robust_std_z"], "sigma_mad": sigma_mad(d[sel] / truth[sel] - 1),
                               "weighted_c1": cw["within_1sigma"], "weighted_c2": cw["within_2sigma"]}
    print(json.dumps(res), flush=True)
