"""The simulator's outlier population: fractions, the physics of each kind, the default untouched, the CLI flags."""
import hashlib
import json

import numpy as np
import pytest
from scipy.stats import binom

from astronn_gaiacal.cli import main
from astronn_gaiacal.conversions import fakemag_to_parallax
from astronn_gaiacal.io.dataset import read_dataset
from astronn_gaiacal.simulate import OUTLIER_CODES, Outliers, simulate_survey, simulate_train_test
from astronn_gaiacal.simulate.population import simulate_catalogue

#: sha256 of the default catalogue's arrays (500 stars, seed 11), computed with the simulator before the
#: outlier population was added: the default output must not change.
DEFAULT_DIGEST = "944034f7c637ddff39e7d23ce26084154549be9857f33f4a5aeb184f1dfbb8d4"
DIGEST_COLUMNS = ("parallax", "parallax_error", "mag", "phot_g_mean_mag", "bp_rp", "snr", "true_parallax", "true_mag")


def _digest(cols):
    h = hashlib.sha256()
    for k in DIGEST_COLUMNS:
        h.update(np.ascontiguousarray(cols[k], dtype="<f8").tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def pair():
    """The same 20,000 stars without and with 10 % binaries, 5 % mismatches and 5 % tails."""
    base = simulate_catalogue(20000, seed=3)
    odd = simulate_catalogue(20000, seed=3, outliers=Outliers(binary=0.10, mismatch=0.05, tail=0.05))
    return base[0], odd[0], odd[2]


def test_default_output_is_unchanged():
    cols, _, attrs = simulate_catalogue(500, seed=11)
    assert _digest(cols) == DEFAULT_DIGEST
    assert "true_outlier" not in cols and "outliers" not in attrs
    for off in (None, {}, Outliers(), Outliers(binary_q_min=0.5, tail_scale=9.0)):
        again, _, attrs = simulate_catalogue(500, seed=11, outliers=off)
        assert _digest(again) == DEFAULT_DIGEST and "true_outlier" not in again and "outliers" not in attrs


def test_fractions_come_out_as_requested(pair):
    _, odd, attrs = pair
    codes = odd["true_outlier"]
    n = codes.size
    for kind, fraction in (("binary", 0.10), ("mismatch", 0.05), ("tail", 0.05), ("none", 0.80)):
        count = int(np.sum(codes == OUTLIER_CODES[kind]))
        lo, hi = binom.ppf([0.0005, 0.9995], n, fraction)  # a 99.9 % binomial interval
        assert lo <= count <= hi, (kind, count, lo, hi)
    assert attrs["outliers"]["binary"] == 0.10 and attrs["outliers"]["codes"] == OUTLIER_CODES


def test_binaries_are_twice_as_luminous_and_their_spectro_parallax_sqrt2_too_large(pair):
    base, odd, _ = pair
    b = odd["true_outlier"] == OUTLIER_CODES["binary"]
    # the system is 2.5 log10(2) mag brighter than the primary, at the same distance
    np.testing.assert_allclose(base["true_mag"][b] - odd["true_mag"][b], 2.5 * np.log10(2.0), rtol=1e-12)
    np.testing.assert_allclose(base["phot_g_mean_mag"][b] - odd["phot_g_mean_mag"][b], 2.5 * np.log10(2.0),
                               rtol=1e-9)
    np.testing.assert_array_equal(odd["true_parallax"], base["true_parallax"])
    np.testing.assert_array_equal(odd["true_fakemag"], base["true_fakemag"])  # the primary's spectrum and labels
    # the parallax a spectro-photometric model infers from the primary's luminosity and the system's magnitude
    spectro = fakemag_to_parallax(odd["true_fakemag"], odd["true_mag"] - odd["mag_ext"]).value
    np.testing.assert_allclose(spectro[b] / odd["true_parallax"][b], np.sqrt(2.0), rtol=1e-9)
    np.testing.assert_allclose(spectro[~b] / odd["true_parallax"][~b], 1.0, rtol=1e-9)
    # Gaia measures the true parallax: the same noise draw, at the brighter G's error
    z_base = (base["parallax"] - base["true_parallax"] - base["true_zeropoint"]) / base["parallax_error"]
    z_odd = (odd["parallax"] - odd["true_parallax"] - odd["true_zeropoint"]) / odd["parallax_error"]
    np.testing.assert_allclose(z_odd[b], z_base[b], rtol=1e-9, atol=1e-9)
    assert np.median(odd["snr"][b] / base["snr"][b]) > 1.2  # brighter, so a higher S/N


def test_binary_mass_ratios_set_the_brightening():
    cols, _, _ = simulate_catalogue(5000, seed=4, outliers={"binary": 0.5, "binary_q_min": 0.5})
    base, _, _ = simulate_catalogue(5000, seed=4)
    b = cols["true_outlier"] == OUTLIER_CODES["binary"]
    dm = base["true_mag"][b] - cols["true_mag"][b]
    lo, hi = 2.5 * np.log10(1 + 0.5**4), 2.5 * np.log10(2.0)
    assert dm.min() >= lo - 1e-12 and dm.max() <= hi + 1e-12
    q = (10 ** (dm / 2.5) - 1) ** 0.25  # invert f = q^4: q is uniform in [0.5, 1]
    assert abs(q.mean() - 0.75) < 0.01 and abs(q.std() - 0.5 / np.sqrt(12)) < 0.01
    np.testing.assert_array_equal(base["true_mag"][~b], cols["true_mag"][~b])


def test_mismatches_carry_another_stars_gaia_astrometry(pair):
    base, _, _ = pair
    cols, _, _ = simulate_catalogue(20000, seed=3, outliers={"mismatch": 0.05})
    m = cols["true_outlier"] == OUTLIER_CODES["mismatch"]
    np.testing.assert_array_equal(cols["parallax"][~m], base["parallax"][~m])
    # each mismatched star has the catalogue parallax and error of some other star of the survey
    index = {(p, e): i for i, (p, e) in enumerate(zip(base["parallax"], base["parallax_error"]))}
    partners = np.array([index[(p, e)] for p, e in zip(cols["parallax"][m], cols["parallax_error"][m])])
    assert np.all(partners != np.flatnonzero(m))
    # so the Gaia parallax no longer follows the star's own: a scatter of the order of the parallaxes themselves
    resid = cols["parallax"][m] - cols["true_parallax"][m] - cols["true_zeropoint"][m]
    assert np.std(resid / cols["parallax_error"][m]) > 5
    np.testing.assert_array_equal(cols["mag"], base["mag"])


def test_tails_broaden_the_gaia_noise_by_the_scale(pair):
    base, odd, _ = pair
    t = odd["true_outlier"] == OUTLIER_CODES["tail"]
    expect = base["true_parallax"] + base["true_zeropoint"]
    np.testing.assert_allclose(odd["parallax"][t] - expect[t], 5.0 * (base["parallax"][t] - expect[t]), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_array_equal(odd["parallax_error"][t], base["parallax_error"][t])  # the quoted error stays
    z = (odd["parallax"][t] - expect[t]) / odd["parallax_error"][t]
    assert abs(np.std(z) / 5.0 - 1) < 0.1


@pytest.mark.parametrize("bad, match", [
    ({"binary": 0.6, "mismatch": 0.5}, "add up"), ({"tail": -0.1}, r"\[0, 1\]"), ({"binary_q_min": 0.0}, "q_min"),
    ({"tail_scale": 1.0}, "tail_scale"), ({"binary": float("nan")}, "finite"),
])
def test_bad_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        Outliers(**bad)


def test_datasets_and_files_record_the_outliers(tmp_path):
    ds = simulate_survey(60, seed=2, outliers={"tail": 0.5})
    assert set(np.unique(ds["true_outlier"])) <= {0, 3} and ds.attrs["outliers"]["tail"] == 0.5
    train, test = simulate_train_test(80, 40, seed=1, outliers={"binary": 0.3})
    for part in (train, test):
        assert set(np.unique(part["true_outlier"])) <= {0, 1} and (part["true_outlier"] == 1).any()
    out = tmp_path / "odd.h5"
    assert main(["simulate", str(out), "-n", "300", "--seed", "5", "--binary-fraction", "0.1",
                 "--mismatch-fraction", "0.1", "--tail-fraction", "0.1", "--tail-scale", "4", "--json"]) == 0
    back = read_dataset(str(out))
    counts = np.bincount(back["true_outlier"], minlength=4)
    assert counts.sum() == 300 and np.all(counts[1:] > 10)
    assert back.attrs["outliers"]["tail_scale"] == 4.0
    assert main(["simulate", str(tmp_path / "bad.h5"), "-n", "10", "--binary-fraction", "1.5"]) == 2


def test_cli_json_counts_outliers(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "o.h5"), "-n", "200", "--mismatch-fraction", "0.2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    counts = summary["files"][0]["outliers"]
    assert set(counts) == {"binary", "mismatch", "tail"} and counts["binary"] == counts["tail"] == 0
    assert counts["mismatch"] == int(np.sum(read_dataset(str(tmp_path / "o.h5"))["true_outlier"] == 2))
