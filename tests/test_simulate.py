"""The mock survey simulator: determinism, physics, Gaia errors, zero-point, spectra, writing."""
import doctest
import os
import re

import numpy as np
import pytest
from astropy import constants as const
from astropy import units as u

import astronn_gaiacal  # noqa: F401  (compatibility layer first)
from astronn_gaiacal import conversions as conv
from astronn_gaiacal import simulate as sim
from astronn_gaiacal.constants import PAPER_QUADRATIC_TRENDS, PAPER_ZEROPOINT_UAS, SOLAR_ABSMAG_KS
from astronn_gaiacal.io.dataset import Dataset, DatasetError, read_dataset
from astronn_gaiacal.zeropoint.trends import paper_trend


@pytest.fixture(scope="module")
def survey():
    return sim.simulate_survey(1500, seed=11)


@pytest.fixture(scope="module")
def catalogue():
    columns, units, attrs = sim.simulate_catalogue(20000, seed=12)
    return columns, attrs


def _model(ds):
    return sim.model_spectra(ds["teff"], ds["logg"], ds["fe_h"], ds["alpha_fe"], ds["c_n"], a_ks=ds["mag_ext"],
                             dib=ds.attrs["dib_strength"])


def test_doctests():
    attempted = 0
    for module in (sim, sim.photometry, sim.spectra, sim.population, sim.survey, sim.seeds):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted >= 5


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_same_survey_other_seed_differs():
    a = sim.simulate_survey(300, seed=7)
    b = sim.simulate_survey(300, seed=7)
    c = sim.simulate_survey(300, seed=8)
    np.testing.assert_array_equal(a["spectra"], b["spectra"])
    for name in a.names:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.allclose(a["teff"], c["teff"])
    assert not np.allclose(a["spectra"], c["spectra"])


def test_written_file_equals_in_memory_for_any_chunk_size(tmp_path):
    mem = sim.simulate_survey(600, seed=3, zeropoint="quadratic")
    for chunk in (1, 300, 5000):
        path = tmp_path / f"s{chunk}.h5"
        assert sim.write_survey(str(path), 600, seed=3, zeropoint="quadratic", chunk_size=chunk,
                                progress=False) == str(path)
        ds = read_dataset(str(path), require=["spectra", "parallax", "true_zeropoint"])
        np.testing.assert_array_equal(ds["spectra"], mem["spectra"])
        np.testing.assert_array_equal(ds["spectra_err"], mem["spectra_err"])
        for name in mem.names:
            np.testing.assert_array_equal(ds[name], mem[name])
        assert ds.units["parallax"] == "mas" and ds.units["true_distance"] == "pc"
        assert ds.attrs["zeropoint_model"] == mem.attrs["zeropoint_model"]
        assert ds.attrs["fractions"] == mem.attrs["fractions"]


def test_seed_none_is_recorded_and_reproducible():
    a = sim.simulate_survey(64, seed=None)
    b = sim.simulate_survey(64, seed=int(a.attrs["seed"]))
    np.testing.assert_array_equal(a["spectra"], b["spectra"])


# --- physics ---------------------------------------------------------------------------------


def test_contract_columns_and_units(survey):
    required = ["mag", "mag_ext", "parallax", "parallax_error", "phot_g_mean_mag", "bp_rp", "teff", "logg",
                "fe_h", "snr", "ra", "dec", "apogee_id", "true_parallax", "true_zeropoint", "true_fakemag",
                "true_distance", "true_mass", "true_absmag_ks", "population"]
    assert isinstance(survey, Dataset)
    assert all(c in survey for c in required + ["spectra", "spectra_err"])
    assert survey["spectra"].shape == (1500, 7514) and survey["spectra"].dtype == np.float32
    assert survey.attrs["band"] == "Ks" and survey.attrs["gaia_release"] == "dr2"
    assert survey.quantity("true_distance").unit == u.pc
    assert set(np.unique(survey["population"])) == {"rgb", "rc", "ms"}
    ids = survey["apogee_id"]
    assert len(np.unique(ids)) == len(ids)
    assert all(re.fullmatch(r"2M\d{8}[+-]\d{7}(_\d+)?", i) for i in ids[:200])


def test_fakemag_consistent_with_absmag_distance_and_magnitudes(survey):
    absmag = survey["true_absmag_ks"]
    np.testing.assert_allclose(survey["true_fakemag"], 10.0 ** (absmag / 5.0 + 2.0), rtol=1e-12)
    corrected = survey["true_mag"] - survey["mag_ext"]
    np.testing.assert_allclose(conv.mag_to_fakemag(corrected, survey["true_parallax"]), survey["true_fakemag"],
                               rtol=1e-10)
    np.testing.assert_allclose(survey["true_parallax"], 1000.0 / survey["true_distance"], rtol=1e-12)
    # catalogue Ks = truth + 0.02 mag noise
    assert np.std(survey["mag"] - survey["true_mag"]) == pytest.approx(0.02, rel=0.1)


def test_luminosity_from_radius_and_temperature(survey):
    mass = survey.quantity("true_mass")
    g = 10.0 ** survey["logg"] * u.cm / u.s**2
    radius = np.sqrt(const.G * mass / g)
    lum = 4 * np.pi * radius**2 * const.sigma_sb * (survey["teff"] * u.K) ** 4
    np.testing.assert_allclose(lum.to_value(u.L_sun), survey["true_luminosity"], rtol=2e-3)
    mbol = 4.74 - 2.5 * np.log10(survey["true_luminosity"])
    np.testing.assert_allclose(mbol - sim.bolometric_correction_ks(survey["teff"]), survey["true_absmag_ks"],
                               rtol=0, atol=1e-9)


def test_red_clump_absolute_magnitude(catalogue):
    columns, _ = catalogue
    rc = columns["population"] == "rc"
    assert np.median(columns["true_absmag_ks"][rc]) == pytest.approx(-1.61, abs=0.08)  # Hawkins et al. 2017
    ms = columns["population"] == "ms"
    assert np.all(columns["logg"][ms] > 3.8) and np.all(columns["logg"][~ms] < 3.6)


def test_bolometric_correction_and_colours_match_the_sun():
    assert sim.bolometric_correction_ks(5772.0) == pytest.approx(4.74 - SOLAR_ABSMAG_KS, abs=0.02)
    teff = np.linspace(3600.0, 7000.0, 50)
    assert np.all(np.diff(sim.bolometric_correction_ks(teff)) < 0)
    bp_rp, g_ks = sim.gaia_colours(5772.0)
    assert bp_rp == pytest.approx(0.82, abs=0.03)  # Casagrande & VandenBerg (2018) solar colour
    assert np.all(np.diff(sim.gaia_colours(teff)[0]) < 0)
    assert sim.bolometric_correction_ks(5772.0 * u.K) == sim.bolometric_correction_ks(5772.0)


def test_giant_c_n_tracks_mass(catalogue):
    columns, _ = catalogue
    giant = columns["population"] != "ms"
    r = np.corrcoef(np.log10(columns["true_mass"][giant]), columns["c_n"][giant])[0, 1]
    assert r < -0.8


def test_magnitude_window_extinction_and_sky(catalogue):
    columns, attrs = catalogue
    lo, hi = attrs["mag_limits"]
    assert np.all((columns["true_mag"] >= lo - 1e-9) & (columns["true_mag"] <= hi + 1e-9))
    assert np.all(columns["phot_g_mean_mag"] < sim.GAIA_G_LIMIT + 0.05)
    assert np.all(columns["mag_ext"] >= 0)
    assert np.all(columns["dec"] > -30.0)
    from astropy.coordinates import SkyCoord

    b = SkyCoord(ra=columns["ra"] * u.deg, dec=columns["dec"] * u.deg).galactic.b.deg
    assert np.median(columns["mag_ext"][np.abs(b) < 3]) > 3 * np.median(columns["mag_ext"][np.abs(b) > 20])
    far = columns["true_distance"] > 3000
    near = columns["true_distance"] < 1000
    assert np.median(columns["mag_ext"][far]) > np.median(columns["mag_ext"][near])


# --- Gaia ------------------------------------------------------------------------------------


def test_parallax_errors_follow_real_dr2_errors_of_apogee_stars(catalogue):
    import astroNN.data

    columns, _ = catalogue
    with np.load(os.path.join(astroNN.data.datapath(), "gaiadr2_apogeedr14_parallax.npz")) as f:
        real_g, real_err = f["g"], f["parallax_error"]
    ok = (real_g > 0) & (real_err > 0)
    real_g, real_err = real_g[ok], real_err[ok]
    g, err = columns["phot_g_mean_mag"], columns["parallax_error"]
    checked = 0
    for lo in np.arange(9.0, 17.0, 1.0):
        sim_sel = (g >= lo) & (g < lo + 1)
        real_sel = (real_g >= lo) & (real_g < lo + 1)
        if sim_sel.sum() < 200:
            continue
        checked += 1
        assert np.median(err[sim_sel]) == pytest.approx(np.median(real_err[real_sel]), rel=0.1), lo
        assert np.percentile(err[sim_sel], 90) == pytest.approx(np.percentile(real_err[real_sel], 90), rel=0.2), lo
    assert checked >= 6


def test_injected_constant_zeropoint_is_recovered(catalogue):
    columns, attrs = catalogue
    assert attrs["zeropoint_model"] == "constant -52.3 uas"
    assert attrs["zeropoint_mean_uas"] == pytest.approx(PAPER_ZEROPOINT_UAS)
    np.testing.assert_allclose(columns["true_zeropoint"], PAPER_ZEROPOINT_UAS / 1000.0)
    diff = columns["parallax"] - columns["true_parallax"]
    w = 1.0 / columns["parallax_error"] ** 2
    mean = np.sum(w * diff) / np.sum(w)
    assert abs(mean - PAPER_ZEROPOINT_UAS / 1000.0) < 3.0 / np.sqrt(np.sum(w))
    pull = (diff - columns["true_zeropoint"]) / columns["parallax_error"]
    assert np.std(pull) == pytest.approx(1.0, abs=0.03)
    assert np.any(columns["parallax"] < 0)  # negative parallaxes stay


def test_quadratic_and_callable_zeropoints():
    cols, _, attrs = sim.simulate_catalogue(3000, seed=4, zeropoint="quadratic")
    lo, hi = PAPER_QUADRATIC_TRENDS["phot_g_mean_mag"]["range"]
    expected = paper_trend("phot_g_mean_mag", np.clip(cols["phot_g_mean_mag"], lo, hi)).to_value(u.mas)
    np.testing.assert_allclose(cols["true_zeropoint"], expected, rtol=1e-12)
    assert "-0.92" in attrs["zeropoint_model"]
    # at G = 16 (the pivot) the injected offset is the eq.-7 constant
    assert sim.paper_quadratic_zeropoint()({"phot_g_mean_mag": [16.0]}).to_value(u.uas) == pytest.approx(-55.49)

    both = sim.paper_quadratic_zeropoint("bp_rp", "teff")
    cols, _, attrs = sim.simulate_catalogue(500, seed=4, zeropoint=both)
    c = np.clip(cols["bp_rp"], 0.8, 3.0)
    t = np.clip(cols["teff"], 4000.0, 5750.0)
    expected = 0.5 * ((6.90 * c**2 - 34.63 * c - 11.67) + (6e-6 * (t - 4500) ** 2 + 0.0348 * (t - 4500) - 53.17))
    np.testing.assert_allclose(cols["true_zeropoint"] * 1000.0, expected, rtol=1e-10)

    def linear_in_g(columns):
        return (-0.03 - 0.01 * (np.asarray(columns["phot_g_mean_mag"]) - 15.0)) * u.mas

    cols, _, attrs = sim.simulate_catalogue(500, seed=4, zeropoint=linear_in_g)
    np.testing.assert_allclose(cols["true_zeropoint"], -0.03 - 0.01 * (cols["phot_g_mean_mag"] - 15.0))
    assert "linear_in_g" in attrs["zeropoint_model"]
    cols, _, attrs = sim.simulate_catalogue(200, seed=4, zeropoint=0)
    assert np.all(cols["true_zeropoint"] == 0) and attrs["zeropoint_model"] == "constant 0 uas"
    cols, _, _ = sim.simulate_catalogue(200, seed=4, zeropoint=-0.02 * u.mas)
    np.testing.assert_allclose(cols["true_zeropoint"], -0.02)


@pytest.mark.parametrize(
    "zeropoint, error",
    [(-52.3, TypeError), (-52.3 * u.mag, u.UnitTypeError), ("linear", ValueError),
     ([1, 2] * u.uas, ValueError), (lambda c: np.full(len(c["teff"]), np.nan), ValueError),
     (lambda c: 1 * u.K, u.UnitTypeError)],
)
def test_bad_zeropoint(zeropoint, error):
    with pytest.raises(error, match="zeropoint"):
        sim.simulate_catalogue(50, seed=1, zeropoint=zeropoint)


# --- spectra ---------------------------------------------------------------------------------


def test_template_is_the_real_mean_dr14_spectrum_and_population_mean_is_close(survey):
    template = np.load(sim.TEMPLATE_FILE)
    assert template.shape == (7514,)
    assert np.allclose(sim.model_spectra(**sim.REFERENCE_LABELS)[0], template, atol=1e-4)
    giants = survey["population"] != "ms"
    mean = survey["spectra"][giants].mean(axis=0)
    assert np.median(np.abs(mean - template)) < 0.02
    assert np.corrcoef(mean, template)[0, 1] > 0.95


def test_noise_matches_snr_and_errors(survey):
    residual = (survey["spectra"] - _model(survey)) / survey["spectra_err"]
    assert np.std(residual) == pytest.approx(1.0, abs=0.01)
    assert abs(np.mean(residual)) < 0.01
    # photon noise: sigma = sqrt(f / continuum) / SNR, i.e. 1 / SNR in the continuum
    scaled = survey["spectra_err"] * survey["snr"][:, None]
    assert np.all(scaled <= 1.0 + 1e-5)
    np.testing.assert_allclose(np.percentile(scaled, 95, axis=1), 1.0, atol=0.03)


def test_spectra_carry_labels_but_not_distance(survey):
    # noise-free spectra are a function of the labels only
    one = dict(teff=4600.0, logg=2.3, fe_h=0.0, alpha_fe=0.0, c_n=-0.4)
    np.testing.assert_array_equal(sim.model_spectra(**one, a_ks=0.01), sim.model_spectra(**one, a_ks=1.5))
    # the noise realisations do not know the distance either
    residual = (survey["spectra"] - _model(survey)) / survey["spectra_err"]
    per_star = residual.mean(axis=1)
    for quantity in ("true_distance", "mag_ext"):
        r = np.corrcoef(per_star, np.log(survey[quantity]))[0, 1]
        assert abs(r) < 4 / np.sqrt(len(survey)), quantity
    # log g and [C/N] (mass) change the spectrum at realistic strengths
    ref = sim.REFERENCE_LABELS
    base = sim.model_spectra(**ref)[0]
    d_logg = sim.model_spectra(**dict(ref, logg=ref["logg"] + 0.1))[0] - base
    d_cn = sim.model_spectra(**dict(ref, c_n=ref["c_n"] + 0.1))[0] - base
    assert 5e-4 < np.sqrt(np.mean(d_logg**2)) < 5e-3
    assert 1e-3 < np.sqrt(np.mean(d_cn**2)) < 1e-2


def test_spectra_hold_enough_luminosity_information():
    """A linear (ridge) regression on high-S/N spectra predicts giants' fakemag to ~10%."""
    ds = sim.simulate_survey(1800, seed=21, snr=300)
    x = ds["spectra"].astype(float)
    y = np.log(ds["true_fakemag"])
    train = np.arange(len(ds)) < 1300
    xc = x - x[train].mean(axis=0)
    kernel = xc[train] @ xc[train].T
    alpha = np.linalg.solve(kernel + 0.1 * np.eye(train.sum()), y[train] - y[train].mean())
    pred = xc[~train] @ (xc[train].T @ alpha) + y[train].mean()
    giants = ds["population"][~train] != "ms"
    scatter = np.std((pred - y[~train])[giants])
    assert scatter < 0.12
    assert scatter < 0.25 * np.std(y[~train][giants])


def test_dib_off_by_default_and_present_when_on():
    plain = sim.simulate_survey(40, seed=5)
    assert plain.attrs["dib_strength"] == 0.0
    with_dib = sim.simulate_survey(40, seed=5, dib=True)
    assert with_dib.attrs["dib_strength"] == 1.0
    lam = sim.spectra.wavelength()
    near = np.abs(lam - sim.DIB_WAVELENGTH) < 4 * sim.DIB_SIGMA
    far = ~near
    np.testing.assert_array_equal(plain["spectra"][:, far], with_dib["spectra"][:, far])
    assert np.all(with_dib["spectra"][:, near] <= plain["spectra"][:, near] + 1e-6)
    # equivalent width of the band: W = 0.1 A * A_V (Zasowski et al. 2015), A_V = A_Ks / 0.078
    labels = dict(teff=4700.0, logg=2.4, fe_h=0.0)
    f0 = sim.model_spectra(**labels, a_ks=0.2)[0]
    f1 = sim.model_spectra(**labels, a_ks=0.2, dib=1.0)[0]
    ew = np.sum((1.0 - f1 / f0) * np.gradient(lam))
    assert ew == pytest.approx(0.1 * 0.2 / 0.078, rel=0.05)
    assert np.sum((1.0 - sim.model_spectra(**labels, a_ks=0.2, dib=0.5)[0] / f0) * np.gradient(lam)) == \
        pytest.approx(ew / 2, rel=0.05)
    # with the band on, the spectra do leak extinction
    ds = sim.simulate_survey(400, seed=6, dib=True, snr=500)
    pixel = np.argmin(np.abs(lam - sim.DIB_WAVELENGTH))
    nodib = sim.model_spectra(ds["teff"], ds["logg"], ds["fe_h"], ds["alpha_fe"], ds["c_n"])[:, pixel]
    assert np.corrcoef(ds["spectra"][:, pixel] - nodib, ds["mag_ext"])[0, 1] < -0.8


# --- train/test, writing, errors -------------------------------------------------------------


def test_train_test_pair_splits_on_snr(tmp_path):
    train, test = sim.simulate_train_test(300, 200, seed=9)
    assert len(train) == 300 and len(test) == 200
    assert np.all(train["snr"] > 200) and np.all(test["snr"] < 200)
    assert np.median(train["mag"]) < np.median(test["mag"])
    assert train.attrs["split"].startswith("train") and test.attrs["split"].startswith("test")
    assert not np.intersect1d(train["apogee_id"], test["apogee_id"]).size
    paths = sim.write_train_test(str(tmp_path / "train.h5"), str(tmp_path / "test.h5"), 300, 200, seed=9,
                                 progress=False)
    for path, mem in zip(paths, (train, test)):
        ds = read_dataset(path)
        np.testing.assert_array_equal(ds["spectra"], mem["spectra"])
        np.testing.assert_array_equal(ds["parallax"], mem["parallax"])
    with pytest.raises(FileExistsError):
        sim.write_train_test(paths[0], str(tmp_path / "other.h5"), 10, 10, progress=False)
    assert not (tmp_path / "other.h5").exists()
    with pytest.raises(ValueError, match="snr"):
        sim.simulate_train_test(10, 10, snr=100)


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "mock.h5"
    sim.write_survey(str(path), 50, seed=1, progress=False)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        sim.write_survey(str(path), 50, seed=2, progress=False)
    assert path.read_bytes() == before

    calls = []

    def failing(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    real = sim.survey.noisy_spectra
    monkeypatch.setattr(sim.survey, "noisy_spectra", failing)
    with pytest.raises(KeyboardInterrupt):
        sim.write_survey(str(tmp_path / "new.h5"), 600, seed=1, chunk_size=256, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["mock.h5"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [(dict(n_stars=0), ValueError, "n_stars"), (dict(n_stars=2.5), ValueError, "n_stars"),
     (dict(mag_limits=(12.0, 7.0)), ValueError, "mag_limits"),
     (dict(mag_limits=(7.0, 7.01)), ValueError, "mag_limits"),
     (dict(mag_limits=None), ValueError, "mag_limits"), (dict(mag_error=-0.1), ValueError, "mag_error"),
     (dict(selection_slope=np.nan), ValueError, "selection_slope"),
     (dict(fractions={"giants": 1.0}), KeyError, "giants"), (dict(fractions={"rgb": -1}), ValueError, "fractions"),
     (dict(snr="high"), ValueError, "snr"), (dict(snr=(300, 100)), ValueError, "snr"),
     (dict(snr=-5.0), ValueError, "snr"), (dict(dib=-1.0), ValueError, "dib"), (dict(seed=1.5), TypeError, "seed")],
)
def test_bad_arguments(kwargs, error, match):
    args = dict(n_stars=100, seed=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sim.simulate_survey(**args)


def test_model_spectra_rejects_missing_labels_and_needs_extinction_for_dib():
    with pytest.raises(ValueError, match="teff"):
        sim.model_spectra([4700.0, np.nan], 2.5, 0.0)
    with pytest.raises(ValueError, match="a_ks"):
        sim.model_spectra(4700.0, 2.5, 0.0, dib=1.0)
    with pytest.raises(ValueError, match="a_ks"):
        sim.model_spectra(4700.0, 2.5, 0.0, a_ks=-0.1, dib=1.0)


def test_plot_survey(survey, tmp_path):
    path = sim.plot_survey(survey, str(tmp_path / "survey.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 20000
    with pytest.raises(DatasetError, match="true_absmag_ks"):
        sim.plot_survey(Dataset(columns={"teff": [1.0]}), str(tmp_path / "x.png"))
