"""The luminosity check: the network's parallaxes against Gaia's in bins of the predicted fakemag."""
import itertools
import json
import warnings

import numpy as np
import pytest

from astronn_gaiacal.models.calibration import UncertaintyCalibration
from astronn_gaiacal.models.luminosity_check import (
    BIAS_TOLERANCE,
    LuminosityBiasWarning,
    flagged_stars,
    luminosity_bias,
    warn_luminosity_bias,
)


def _stars(rng, n=1200, bias_top=0.0, zeropoint=-0.05, outliers=0.0):
    """Mock held-out stars: giants far away (imprecise Gaia) and dwarfs nearby, the top quarter in fakemag biased."""
    fakemag = 10 ** rng.uniform(1.0, 2.8, n)
    kmag = rng.uniform(7.0, 11.0, n)
    true = fakemag * 10 ** (-0.2 * kmag)
    top = fakemag > np.quantile(fakemag, 0.75)
    nn = true / np.where(top, 1.0 + bias_top, 1.0)  # the network's parallaxes, too small by bias_top at the top
    nn_err = 0.05 * nn
    nn_obs = nn * (1 + rng.normal(0, 0.05, n))
    gaia_err = rng.uniform(0.02, 0.06, n)
    gaia = true + zeropoint + rng.normal(0, gaia_err)
    bad = rng.random(n) < outliers
    gaia[bad] = rng.uniform(-0.5, 3.0, bad.sum())  # mismatched cross-matches
    return gaia, gaia_err, nn_obs, nn_err, fakemag, top


def test_injected_bias_is_recovered_in_its_bin_only():
    rng = np.random.default_rng(3)
    gaia, gerr, nn, nerr, fm, _ = _stars(rng, bias_top=0.06)
    check = luminosity_bias(gaia, gerr, nn, nerr, fm, zeropoint=-0.05)
    *rest, top = check["bins"]
    assert top["bias"] == pytest.approx(0.06, abs=3 * top["bias_error"]) and top["flagged"]
    assert all(abs(b["bias"]) < 3 * b["bias_error"] + 0.005 and not b["flagged"] for b in rest)
    assert check["n_flagged"] == 1 and sum(b["n"] for b in check["bins"]) == fm.size
    edges = [b["log10_fakemag"] for b in check["bins"]]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(edges))  # contiguous quantile bins


def test_bias_is_the_weighted_least_squares_slope():
    """b of one bin against an independent solve of (gaia - zp - nn) / sigma = b nn / sigma, then the
    errors-in-variables correction: b = (b0 S + N) / (S - N), S = sum (nn / sigma)^2, N = sum (nn_err / sigma)^2."""
    rng = np.random.default_rng(5)
    gaia, gerr, nn, nerr, fm, _ = _stars(rng, n=400, bias_top=0.04)
    check = luminosity_bias(gaia, gerr, nn, nerr, fm, zeropoint=-0.05, n_bins=2)
    for b in check["bins"]:
        lo, hi = b["log10_fakemag"]
        sel = (np.log10(fm) >= lo) & (np.log10(fm) <= hi)
        sigma = np.hypot(gerr, nerr)[sel]
        design = (nn[sel] / sigma)[:, None]
        target = (gaia[sel] + 0.05 - nn[sel]) / sigma
        keep = np.abs(target - design[:, 0] * b["bias"]) < 4.0  # the same clipping, in units of sigma
        (b0,), *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
        big_s, big_n = np.sum(design[keep] ** 2), np.sum((nerr[sel] / sigma)[keep] ** 2)
        assert b["bias"] == pytest.approx((b0 * big_s + big_n) / (big_s - big_n), rel=1e-6, abs=1e-9)
        assert b["bias_error"] == pytest.approx(1 / np.sqrt(big_s), rel=1e-6)


def test_errors_match_the_scatter_over_realisations():
    pulls = []
    for seed in range(150):
        rng = np.random.default_rng(100 + seed)
        check = luminosity_bias(*_stars(rng, n=400, bias_top=0.05)[:5], zeropoint=-0.05)
        top = check["bins"][-1]
        pulls.append((top["bias"] - 0.05) / top["bias_error"])
    assert abs(np.mean(pulls)) < 0.3 and 0.8 < np.std(pulls) < 1.25


def test_mismatched_stars_do_not_fake_a_bias():
    rng = np.random.default_rng(8)
    gaia, gerr, nn, nerr, fm, _ = _stars(rng, outliers=0.05)
    check = luminosity_bias(gaia, gerr, nn, nerr, fm, zeropoint=-0.05)
    assert check["n_flagged"] == 0 and all(abs(b["bias"]) < BIAS_TOLERANCE for b in check["bins"])
    assert sum(b["n"] for b in check["bins"]) < 0.97 * fm.size  # the outliers were left out


def test_few_stars_use_fewer_bins_and_too_few_none():
    rng = np.random.default_rng(2)
    args = _stars(rng, n=35)[:5]
    assert len(luminosity_bias(*args, zeropoint=-0.05)["bins"]) == 3
    assert luminosity_bias(*[a[:15] for a in args], zeropoint=-0.05) is None
    gaia = args[0].copy()
    gaia[:10] = np.nan  # missing parallaxes are left out, not propagated
    check = luminosity_bias(gaia, *args[1:], zeropoint=-0.05)
    assert len(check["bins"]) == 2 and sum(b["n"] for b in check["bins"]) <= 25
    assert np.isfinite([b["bias"] for b in check["bins"]]).all()


def test_warning_names_the_flagged_bins_only():
    rng = np.random.default_rng(3)
    check = luminosity_bias(*_stars(rng, bias_top=0.06)[:5], zeropoint=-0.05)
    with pytest.warns(LuminosityBiasWarning, match=r"log10 fakemag 2\.\d\d-2\.\d\d: Gaia's parallaxes \+[5-7]\.\d"):
        warn_luminosity_bias(check, "M")
    clean = luminosity_bias(*_stars(np.random.default_rng(4))[:5], zeropoint=-0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LuminosityBiasWarning)
        warn_luminosity_bias(clean, "M")
        warn_luminosity_bias(None, "M")


def test_check_travels_with_the_calibration_record():
    check = luminosity_bias(*_stars(np.random.default_rng(3), bias_top=0.06)[:5], zeropoint=-0.05)
    cal = UncertaintyCalibration(0.4, 0.02, 300, 0.5, 1.0, 0.0, 0.68, 0.95, "given stars", -0.05,
                                 luminosity_check=check)
    again = UncertaintyCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again.luminosity_check == check
    old = {k: v for k, v in cal.to_dict().items() if k != "luminosity_check"}  # folders saved before the check
    assert UncertaintyCalibration.from_dict(old).luminosity_check is None


def test_flagged_stars_are_those_in_flagged_bins_and_beyond_the_ends():
    check = {"bins": [{"log10_fakemag": [1.0, 1.7], "flagged": True}, {"log10_fakemag": [1.7, 2.2], "flagged": False},
                      {"log10_fakemag": [2.2, 2.8], "flagged": True}]}
    fakemag = 10 ** np.array([0.5, 1.2, 1.9, 2.5, 3.1, np.nan])
    np.testing.assert_array_equal(flagged_stars(check, fakemag), [True, True, False, True, True, False])
    check["bins"][-1]["flagged"] = False
    np.testing.assert_array_equal(flagged_stars(check, fakemag), [True, True, False, False, False, False])
    assert not flagged_stars(None, fakemag).any()


def test_catalogue_flags_the_stars_of_a_flagged_range(tmp_path, capsys):
    """Through the CLI: a model whose stored check flags the top of its range flags exactly those stars."""
    from _toy import N_PIX, toy_survey
    from astropy.table import QTable

    from astronn_gaiacal.cli import main
    from astronn_gaiacal.io.dataset import Dataset
    from astronn_gaiacal.models import DenseGaiaBNN, load

    d = toy_survey(200, seed=4, n_pixels=N_PIX)
    net = DenseGaiaBNN(hidden=(16,), offset="constant")
    net.max_epochs, net.verbose, net.batch_size, net.calibrate_at_fit = 1, 0, 64, False
    net.fit(d["spectra"], d["parallax"], d["parallax_error"], magnitude=d["mag"])
    edge = float(np.log10(np.median(net.predict(d["spectra"], calibrated=False)[0])))  # above it: "biased"
    check = {"bins": [{"log10_fakemag": [-5.0, edge], "n": 100, "bias": 0.0, "bias_error": 0.01, "flagged": False},
                      {"log10_fakemag": [edge, 9.0], "n": 100, "bias": 0.08, "bias_error": 0.01, "flagged": True}],
             "n_flagged": 1, "method": "test"}
    net.uncertainty_calibration = UncertaintyCalibration(0.5, 0.02, 100, 0.5, 1.0, 0.0, 0.68, 0.95, "given stars",
                                                         -0.1, luminosity_check=check)
    folder = net.save(str(tmp_path / "m"))
    assert load(folder).uncertainty_calibration.luminosity_check == check  # saved with the model
    ds = Dataset(spectra=d["spectra"], columns={"mag": d["mag"], "mag_ext": np.zeros(200), "parallax": d["parallax"],
                                                "parallax_error": d["parallax_error"]},
                 units={"parallax": "mas", "parallax_error": "mas", "mag": "mag"}, attrs={"band": "Ks"})
    ds.write(str(tmp_path / "stars.h5"))
    capsys.readouterr()  # astroNN's training messages
    code = main(["predict", folder, str(tmp_path / "stars.h5"), "--out", str(tmp_path / "cat.fits"), "--mc-num", "3",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    cat = QTable.read(tmp_path / "cat.fits")
    fakemag = np.asarray(cat["fakemag"])
    expected = np.log10(fakemag) >= edge
    assert code == 0 and 0 < expected.sum() < len(cat)  # the edge splits the toy stars
    np.testing.assert_array_equal(np.asarray(cat["flag_luminosity"]), expected)
    assert report["flags"]["flag_luminosity"] == int(expected.sum())


def test_tied_or_noise_dominated_predictions_give_no_false_numbers():
    """A network that predicts one fakemag for every star (dead units) gets one bin, not empty ones; one whose own
    scatter is as large as its parallaxes gets no check at all."""
    rng = np.random.default_rng(6)
    gaia, gerr, nn, nerr, _, _ = _stars(rng, n=300)
    one = luminosity_bias(gaia, gerr, nn, nerr, np.full(300, 50.0), zeropoint=-0.05)
    assert len(one["bins"]) == 1 and one["bins"][0]["n"] > 280 and abs(one["bins"][0]["bias"]) < 0.02
    with pytest.warns(LuminosityBiasWarning, match="the same fakemag for every held-out star"):
        warn_luminosity_bias(one, "M")
    assert luminosity_bias(gaia, gerr, nn, 3 * nn, 10 ** rng.uniform(1, 3, 300), zeropoint=-0.05) is None


def test_a_corrupted_check_in_a_folder_is_refused_at_load(tmp_path, capsys):
    """A hand-edited or corrupted ``luminosity_check`` is a one-line usage error (exit 2) when the folder is opened."""
    from _toy import N_PIX, toy_survey

    from astronn_gaiacal.cli import main
    from astronn_gaiacal.models import DenseGaiaBNN

    good = luminosity_bias(*_stars(np.random.default_rng(3), bias_top=0.06)[:5], zeropoint=-0.05)
    block = UncertaintyCalibration(0.4, 0.02, 300, 0.5, 1.0, 0.0, 0.68, 0.95, "given stars", -0.05,
                                   luminosity_check=good).to_dict()
    assert UncertaintyCalibration.from_dict(block).luminosity_check == good
    for bad in ({"bins": [{"log10_fakemag": "x"}]}, {"bins": [{**good["bins"][0], "flagged": "yes"}]}, {"no": 1}):
        with pytest.raises(ValueError, match="luminosity_check is malformed"):
            UncertaintyCalibration.from_dict({**block, "luminosity_check": bad})
    d = toy_survey(120, seed=4, n_pixels=N_PIX)
    net = DenseGaiaBNN(hidden=(8,), offset="constant")
    net.max_epochs, net.verbose, net.batch_size, net.calibrate_at_fit = 1, 0, 64, False
    net.fit(d["spectra"], d["parallax"], d["parallax_error"], magnitude=d["mag"])
    net.uncertainty_calibration = UncertaintyCalibration.from_dict(block)
    folder = net.save(str(tmp_path / "m"))
    capsys.readouterr()  # astroNN's training messages
    corrupted = []
    for path in (tmp_path / "m").iterdir():  # the file that holds the calibration, whatever its name
        if path.suffix == ".json" and "luminosity_check" in path.read_text():
            path.write_text(path.read_text().replace('"flagged": true', '"flagged": "yes"'))
            corrupted.append(path)
    assert corrupted
    code = main(["zeropoint", folder, "--json"])
    err = capsys.readouterr().err
    assert code == 2 and "luminosity_check is malformed" in err and "Traceback" not in err
