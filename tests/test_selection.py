"""The paper's selection: every cut at its boundary, the per-cut report, and the seeded split."""
import numpy as np
import pytest
from astropy import units as u

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.constants import MAGIC_NUMBER
from astronn_gaiacal.io.dataset import Dataset, MissingColumnError
from astronn_gaiacal.sources.selection import CUTS, log_luminosity, paper_selection, train_validation_split

GOOD = {"mag": 10.0, "mag_ext": 0.05, "snr": 250.0, "parallax": 0.5, "parallax_error": 0.05,
        "visibility_periods_used": 12, "starflag": 0, "vscatter": 0.5}
P = 10


def _stars(**variants):
    """One good star per value of the varied column (other columns: GOOD)."""
    (name, values), = variants.items()
    n = len(values)
    cols = {k: np.full(n, v) for k, v in GOOD.items()}
    if name == "spectra":
        spectra = np.asarray(values, float)
    else:
        cols[name] = np.asarray(values, dtype=np.asarray(values).dtype)
        spectra = np.ones((n, P))
    return Dataset(spectra=spectra, columns=cols)


def _kept(ds, **kw):
    sel = paper_selection(ds, **kw)
    assert sel.report.n_selected + sum(sel.report.removed.values()) == len(ds)
    return sel.mask.tolist()


def test_good_star_kept_by_every_cut():
    sel = paper_selection(_stars(mag=[10.0]))
    assert sel.mask.tolist() == [True]
    assert list(sel.report.removed) == list(CUTS) and set(sel.report.removed.values()) == {0}


def test_cut_spectrum():
    spec = np.ones((4, P))
    spec[0] = 0.0
    spec[1] = np.nan
    spec[2, :] = 0.0
    spec[2, 3] = 0.9  # one finite non-zero pixel is enough
    spec[3, 1:] = np.nan
    spec[3, 0] = 0.0  # zeros and NaN only
    assert _kept(_stars(spectra=spec)) == [False, False, True, False]
    assert _kept(_stars(spectra=spec), require_spectrum=False) == [True] * 4


def test_cut_mag_and_extinction():
    assert _kept(_stars(mag=[MAGIC_NUMBER, np.nan, 10.0])) == [False, False, True]
    # extinction boundary: 0 is valid, anything negative is not (the paper flags negative AK_TARG)
    assert _kept(_stars(mag_ext=[0.0, -1e-6, MAGIC_NUMBER, np.nan])) == [True, False, False, False]
    assert _kept(_stars(mag_ext=[-1e-6, MAGIC_NUMBER]), require_extinction=False) == [True, True]


def test_cut_snr_boundary():
    snr = [200.0, np.nextafter(200.0, 300.0), np.nextafter(200.0, 0.0), MAGIC_NUMBER]
    assert _kept(_stars(snr=snr), sample="train") == [False, True, False, False]
    assert _kept(_stars(snr=snr), sample="test") == [False, False, True, False]
    assert _kept(_stars(snr=snr), sample="all") == [True, True, True, True]
    assert _kept(_stars(snr=[250.0, 150.0]), sample="train", snr_split=100.0) == [True, True]


def test_cut_parallax_and_error_boundary():
    assert _kept(_stars(parallax=[MAGIC_NUMBER, np.nan, 0.5])) == [False, False, True]
    err = [0.1, np.nextafter(0.1, 0.0), MAGIC_NUMBER, np.nan]
    assert _kept(_stars(parallax_error=err)) == [False, True, False, False]
    # a Quantity threshold in another unit is the same cut
    assert _kept(_stars(parallax_error=err), max_parallax_error=100 * u.uas) == [False, True, False, False]
    assert _kept(_stars(parallax_error=[0.2]), max_parallax_error=None) == [True]


def test_cut_visibility_periods_boundary():
    assert _kept(_stars(visibility_periods_used=[11, 10, -9999])) == [True, False, False]
    assert _kept(_stars(visibility_periods_used=[10]), min_visibility_periods=10) == [True]


def test_cut_starflag():
    assert _kept(_stars(starflag=[0, 1, 2**17, -9999])) == [True, False, False, False]
    assert _kept(_stars(starflag=[4]), require_starflag_zero=False) == [True]


def test_cut_vscatter_boundary():
    vsc = [1.0, np.nextafter(1.0, 0.0), MAGIC_NUMBER, np.nan]
    assert _kept(_stars(vscatter=vsc)) == [False, True, False, False]
    assert _kept(_stars(vscatter=vsc), max_vscatter=1000 * u.m / u.s) == [False, True, False, False]


def test_cut_luminosity_boundary():
    # log10 L/Lsun = 0 <=> M_Ks = 3.27 <=> parallax = 10**((13.27 - (K - AK)) / 5) mas
    p0 = 10 ** ((13.27 - (GOOD["mag"] - GOOD["mag_ext"])) / 5)
    assert log_luminosity(GOOD["mag"] - GOOD["mag_ext"], p0) == pytest.approx(0.0, abs=1e-12)
    plx = [p0 * (1 - 1e-6), p0 * (1 + 1e-6), -0.01, 0.0]
    # brighter than the Sun kept, fainter removed, negative parallax kept, zero parallax removed
    assert _kept(_stars(parallax=plx)) == [True, False, True, False]
    assert _kept(_stars(parallax=plx), min_log_luminosity=None) == [True, True, True, True]
    # the cut uses the extinction-corrected magnitude: more extinction, intrinsically brighter
    faint = _stars(parallax=[p0 * (1 + 1e-6)])
    assert _kept(faint) == [False] and _kept(faint.with_columns(mag_ext=[0.06])) == [True]


def test_log_luminosity_against_astronn():
    from astroNN.gaia import fakemag_to_logsol, mag_to_fakemag

    mag = np.array([8.0, 10.0, 12.0])
    plx = np.array([0.3, 1.0, 5.0])
    np.testing.assert_allclose(log_luminosity(mag, plx), fakemag_to_logsol(mag_to_fakemag(mag, plx)), rtol=1e-12)
    assert np.isnan(log_luminosity([10.0, MAGIC_NUMBER], [-1.0, 1.0])).all()


def test_report_counts_sequential_and_match_independent_mask(rng):
    n = 2000
    cols = {
        "mag": np.where(rng.random(n) < 0.03, MAGIC_NUMBER, rng.uniform(6, 15, n)),
        "mag_ext": np.where(rng.random(n) < 0.03, -0.01, rng.uniform(0, 0.5, n)),
        "snr": rng.uniform(50, 500, n),
        "parallax": np.where(rng.random(n) < 0.05, MAGIC_NUMBER, rng.normal(1.0, 1.0, n)),
        "parallax_error": rng.uniform(0.01, 0.2, n),
        "visibility_periods_used": rng.integers(6, 20, n),
        "starflag": np.where(rng.random(n) < 0.1, 4, 0),
        "vscatter": rng.exponential(0.5, n),
    }
    spectra = np.ones((n, P))
    spectra[rng.random(n) < 0.02] = 0.0
    ds = Dataset(spectra=spectra, columns=cols)
    sel = paper_selection(ds, sample="train")
    rep = sel.report
    assert rep.n_input == n and rep.n_selected + sum(rep.removed.values()) == n
    assert all(v > 0 for v in rep.removed.values()), str(rep)
    # independent computation, as the paper's notebook writes it
    corrected = cols["mag"] - cols["mag_ext"]
    with np.errstate(all="ignore"):
        logl = 0.4 * (3.27 - (corrected + 5 * np.log10(cols["parallax"]) - 10))
    expected = (
        np.any(spectra != 0, axis=1) & (cols["mag"] != MAGIC_NUMBER) & (cols["mag_ext"] >= 0)
        & (cols["snr"] > 200) & (cols["parallax"] != MAGIC_NUMBER) & (cols["parallax_error"] < 0.1)
        & (cols["visibility_periods_used"] > 10) & (cols["starflag"] == 0) & (cols["vscatter"] < 1)
        & ((logl > 0) | (cols["parallax"] < 0))
    )
    np.testing.assert_array_equal(sel.mask, expected)
    # sequential: the snr count is among stars that passed the earlier cuts
    earlier = np.any(spectra != 0, axis=1) & (cols["mag"] != MAGIC_NUMBER) & (cols["mag_ext"] >= 0)
    assert rep.removed["snr"] == np.count_nonzero(earlier & ~(cols["snr"] > 200))
    text = str(rep)
    assert "paper selection (train): 2000 stars" in text and f"{rep.n_selected:>8d}" in text
    assert rep.as_dict()["removed"]["luminosity"] == rep.removed["luminosity"]
    mask, report = sel  # unpacks as (mask, report)
    assert report is rep


def test_selection_errors():
    ds = _stars(mag=[10.0])
    no_vsc = Dataset(spectra=ds["spectra"], columns={k: ds[k] for k in ds.names if k != "vscatter"})
    with pytest.raises(MissingColumnError, match="needs column 'vscatter'.*max_vscatter=None"):
        paper_selection(no_vsc)
    assert paper_selection(no_vsc, max_vscatter=None).mask.tolist() == [True]
    with pytest.raises(ValueError, match="sample must be"):
        paper_selection(ds, sample="validation")
    with pytest.raises(u.UnitTypeError, match="max_parallax_error"):
        paper_selection(ds, max_parallax_error=1 * u.pc)
    with pytest.raises(MissingColumnError, match="require_spectrum=False"):
        paper_selection(Dataset(columns={k: [v] for k, v in GOOD.items()}))
    # a Table, and a mapping of columns, are accepted
    assert paper_selection(ds.to_table()).mask.tolist() == [True]
    assert paper_selection({k: [v] for k, v in GOOD.items()}, require_spectrum=False).mask.tolist() == [True]


def test_train_validation_split():
    tr, va = train_validation_split(1000, seed=1)
    assert len(tr) == 900 and len(va) == 100
    assert np.intersect1d(tr, va).size == 0 and np.array_equal(np.union1d(tr, va), np.arange(1000))
    tr2, va2 = train_validation_split(1000, seed=1)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    _, va3 = train_validation_split(1000, seed=2)
    assert not np.array_equal(va, va3)
    ds = _stars(mag=np.linspace(9, 12, 20))
    tr, va = train_validation_split(ds, 0.25, seed=0)
    assert len(va) == 5 and len(ds.subset(tr)) == 15
    with pytest.raises(TypeError, match="seed"):
        train_validation_split(10, seed=None)
    with pytest.raises(ValueError, match="validation_fraction"):
        train_validation_split(10, 1.5, seed=0)
    with pytest.raises(ValueError, match="cannot split 1"):
        train_validation_split(1, seed=0)
