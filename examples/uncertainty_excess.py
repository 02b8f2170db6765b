"""Where does the excess of dist_error come from?  Decomposition on fresh mock test sets (truth known).

usage: python examples/uncertainty_excess.py MODEL_FOLDER [seeds...]   (e.g. demo_out/models/constant 77 78 79)
"""
import json
import sys
import warnings

import numpy as np
from astropy import units as u

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal._compat import keras
from astronn_gaiacal.metrics import sigma_mad
from astronn_gaiacal.models import DeepEnsemble, load
from astronn_gaiacal.models.calibration import coverage, fit_uncertainty_scale
from astronn_gaiacal.simulate import simulate_train_test

warnings.simplefilter("ignore")
folder = sys.argv[1]
seeds = [int(s) for s in sys.argv[2:]] or [77, 78, 79]
ens = DeepEnsemble.of(load(folder))
ens.mc_num = 30
out = {}
for seed in seeds:
    keras.utils.set_random_seed(seed)
    _, te = simulate_train_test(100, 2000, seed=seed, zeropoint=-52.3 * u.uas)
    L = np.asarray(te["true_fakemag"], float)
    x = te["spectra"]
    outs = [m.predict(x, calibrated=False) for m in ens.members]
    fm_k = np.array([o[0][:, 0] for o in outs])
    mc_k = np.array([o[1]["model"][:, 0] for o in outs])
    pr_k = np.array([o[1]["predictive"][:, 0] for o in outs])
    fm = fm_k.mean(0)
    mc = np.sqrt((mc_k**2).mean(0))
    between = fm_k.std(0, ddof=1) if len(fm_k) > 1 else np.zeros_like(fm)
    pred = np.sqrt((pr_k**2).mean(0))
    total = np.sqrt(mc**2 + between**2 + pred**2)
    r = fm - L
    # distance: exact residual vs first-order sigma
    dist = 1000 * 10 ** (0.2 * te.corrected_mag()) / fm
    d_res = dist - te["true_distance"]
    d_sig = dist * total / fm
    # error of one dropout pass (what the predictive head is trained against): E[(single - L)^2] = mc_var + (mean - L)^2
    single_rms = np.sqrt(np.median((mc_k**2 + (fm_k - L) ** 2) / L**2))
    res = {
        "n": int(len(L)),
        "sigma_mad_frac": sigma_mad(r / L),
        "median_frac": {"total": float(np.median(total / fm)), "mc": float(np.median(mc / fm)),
                        "between": float(np.median(between / fm)), "predictive": float(np.median(pred / fm))},
        "coverage_1s_2s": {name: [coverage(r, s)["within_1sigma"], coverage(r, s)["within_2sigma"]] for name, s in
                           {"total": total, "mc": mc, "predictive": pred, "mc+between": np.hypot(mc, between),
                            "pred^2-mc^2": np.sqrt(np.clip(pred**2 - mc**2, 0, None) + between**2)}.items()},
        "distance_coverage_1s_2s": [coverage(d_res, d_sig)["within_1sigma"], coverage(d_res, d_sig)["within_2sigma"]],
        "truth_scale_total": sigma_mad(r / total),
        "member_coverage_1s": [coverage(fm_k[k] - L, np.hypot(mc_k[k], pr_k[k]))["within_1sigma"]
                               for k in range(len(fm_k))],
        "member_sigma_mad": [sigma_mad(fm_k[k] / L - 1) for k in range(len(fm_k))],
        "single_pass_rms_frac": float(single_rms),
        "mean_of_members_error_rms_frac": float(np.sqrt(np.median(((fm_k - L) / L) ** 2))),
    }
    # truth-free estimate on these held-out stars: Gaia z-scores
    f = 10 ** (-0.2 * te.corrected_mag())
    zp = ens.predict_zeropoint()[0].to_value(u.mas)
    cal = fit_uncertainty_scale(te["parallax"], te["parallax_error"], fm * f, total * f, zeropoint=zp, n_bootstrap=50)
    res["gaia_scale_on_test"] = [cal.scale, cal.scale_error, cal.n_stars]
    snr = np.asarray(te["snr"])
    giants = np.asarray(te["logg"]) < 3.5
    res["by_group"] = {}
    for name, sel in {"snr50-100": (snr >= 50) & (snr < 100), "snr100-200": (snr >= 100) & (snr < 200),
                      "giants": giants, "dwarfs": ~giants}.items():
        if sel.sum() > 20:
            res["by_group"][name] = {"n": int(sel.sum()), "sigma_mad": sigma_mad(r[sel] / L[sel]),
                                     "median_total": float(np.median(total[sel] / fm[sel])),
                                     "truth_scale": sigma_mad(r[sel] / total[sel]),
                                     "cov_total": coverage(r[sel], total[sel])["within_1sigma"]}
    out[seed] = res
    print(json.dumps({seed: res}, indent=1), flush=True)
