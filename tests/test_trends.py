import numpy as np
import pytest
from astropy import units as u

from astronn_gaiacal.constants import PAPER_QUADRATIC_TRENDS
from astronn_gaiacal.zeropoint.trends import fit_quadratic_trend, paper_trend, quadratic


def test_paper_trend_values_and_ranges():
    # eq. 9 at its pivot, eq. 8 at c = 1: 6.90 - 34.63 - 11.67
    assert paper_trend("teff", 4500.0).to_value(u.uas) == pytest.approx(-53.17)
    assert paper_trend("bp_rp", 1.0).to_value(u.uas) == pytest.approx(6.90 - 34.63 - 11.67)
    # eq. 7 with the -0.92 reading: more negative when fainter, about -50 uas at G = 14
    g = paper_trend("phot_g_mean_mag", [12.0, 14.0, 16.5])
    assert g[1].to_value(u.uas) == pytest.approx(1.18 * 4 + 0.92 * 2 - 55.49)
    assert np.all(np.diff(g.value) < 0)
    assert np.isnan(paper_trend("teff", 6500.0))
    with pytest.raises(KeyError, match="no published trend"):
        paper_trend("ruwe", 1.0)


def test_fit_recovers_known_quadratic(rng):
    x = rng.uniform(11, 17, 3000)
    true = (1.5, -2.0, -50.0)
    err = np.full_like(x, 2.0)
    zp = (quadratic(x, true, 16.0) + rng.normal(0, 2.0, x.size)) * u.uas
    trend = fit_quadratic_trend(x, zp, err * u.uas, feature="phot_g_mean_mag")
    assert trend.pivot == PAPER_QUADRATIC_TRENDS["phot_g_mean_mag"]["pivot"]
    for got, want, e in zip(trend.coeffs, true, trend.coeffs_err):
        assert abs(got - want) < 4 * e
    assert 11 <= trend.valid_range[0] < 11.2 and 16.8 < trend.valid_range[1] <= 17
    assert trend(20.0).size == 1 and np.isnan(trend(20.0))
    d = trend.to_dict()
    assert d["n_stars"] == trend.n_stars and "valid_range" in d


def test_fit_input_errors():
    with pytest.raises(ValueError, match="must match"):
        fit_quadratic_trend(np.ones(5), np.ones(4))
    with pytest.raises(ValueError, match="at least 4"):
        fit_quadratic_trend(np.array([1.0, 2.0, np.nan, 4.0]), np.ones(4))
