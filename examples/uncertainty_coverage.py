"""Acceptance of issue 25 on fresh mock test sets: coverage of the catalogue's dist_error against the truth.

usage: python examples/uncertainty_coverage.py MODEL_FOLDER MC_NUM SEED [SEED ...] [--n-test N]
       (e.g. demo_out/models/constant 30 77 78 79; --n-test: fresh test stars per seed, default 2000)
The catalogue is made as `astronn-gaiacal predict` makes it (pipeline.catalogue_for: for a model with an S/N-dependent
scale, the scale at each star's S/N); "const_*" are the same with the constant scale instead (dist_error times the
constant scale / uncertainty_scale_at(snr)).  "ok": within the issue's 68 +- 5 % and 95 +- 3 % (checked for groups of >= 200 stars); "median_z": the median
of (dist - true) / dist_error (a bias in units of the errors).  The last line counts the groups in target.
"""
import argparse
import json
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
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("folder")
parser.add_argument("mc_num", type=int)
parser.add_argument("seeds", type=int, nargs="+")
parser.add_argument("--n-test", type=int, default=2000)
args = parser.parse_args()
model = load(args.folder)
counted = passed = 0
print(json.dumps(summaries.uncertainty_summary(model)), flush=True)
for seed in args.seeds:
    keras.utils.set_random_seed(seed)
    _, te = simulate_train_test(100, args.n_test, seed=seed, zeropoint=-52.3 * u.uas)
    cat = pipeline.catalogue_for(model, te, mc_num=args.mc_num)
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
        if within_target(c) is not None:
            counted += 1
            passed += bool(within_target(c))
    print(json.dumps(res), flush=True)
print(json.dumps({"groups_with_enough_stars": counted, "in_target": passed}))
