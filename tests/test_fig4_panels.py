"""The 2-D panels of the paper's Fig. 4 (:func:`astronn_gaiacal.plots.plot_zeropoint_maps`).

What is drawn is compared with an independent computation: the median of each
bin found star by star with numpy (the plot bins with scipy), and with the
known trend the synthetic zero-points were made from.
"""
import numpy as np
import pytest
from astropy import units as u

from astronn_gaiacal import plots
from astronn_gaiacal.constants import MAGIC_NUMBER, ZEROPOINT_CONVENTION

A_G, A_C, LEVEL = -5.0, 8.0, -50.0  # uas/mag, uas/mag, uas at G = 14, BP-RP = 1.5


def _stars(n=4000, seed=3, noise=2.0):
    rng = np.random.default_rng(seed)
    g = rng.uniform(9.0, 17.0, n)
    c = rng.uniform(0.8, 3.0, n)
    teff = 7000.0 - 1200.0 * c + rng.normal(0, 80, n)
    truth = LEVEL + A_G * (g - 14.0) + A_C * (c - 1.5)
    zp = truth + rng.normal(0, noise, n)
    return {"phot_g_mean_mag": g, "bp_rp": c, "teff": teff}, zp * u.uas, truth * u.uas


@pytest.fixture
def drawn(monkeypatch):
    """The figures plots.py writes, kept for inspection."""
    figures = []
    save = plots.save_figure

    def keep(fig, path, **kwargs):
        figures.append(fig)
        return save(fig, path, **kwargs)

    monkeypatch.setattr(plots, "save_figure", keep)
    return figures


def _panels(fig):
    """The figure's panels (subplots), not its colour bars."""
    return [ax for ax in fig.axes if ax.get_subplotspec() is not None]


def _meshes(fig):
    return [c for ax in _panels(fig) for c in ax.collections if hasattr(c, "get_coordinates")]


def _mesh_values(mesh):
    """Drawn colour values as (nx, ny) with NaN where blank, and the x and y edges."""
    coords = mesh.get_coordinates()  # (ny + 1, nx + 1, 2)
    xe, ye = coords[0, :, 0], coords[:, 0, 1]
    values = np.ma.filled(np.ma.masked_invalid(mesh.get_array()).astype(float), np.nan)
    return values.reshape(ye.size - 1, xe.size - 1).T, xe, ye


def _numpy_medians(x, y, z, xe, ye, min_count):
    """Independent per-bin median: star by star, half-open bins, the last one closed."""
    out = np.full((xe.size - 1, ye.size - 1), np.nan)
    for i in range(xe.size - 1):
        in_x = (x >= xe[i]) & ((x < xe[i + 1]) | ((i == xe.size - 2) & (x == xe[-1])))
        for j in range(ye.size - 1):
            sel = in_x & (y >= ye[j]) & ((y < ye[j + 1]) | ((j == ye.size - 2) & (y == ye[-1])))
            if sel.sum() >= min_count:
                out[i, j] = np.median(z[sel])
    return out


def test_figure_written_with_its_panels(tmp_path, drawn):
    features, zp, truth = _stars()
    path = plots.plot_zeropoint_maps(features, zp, tmp_path / "fig4_2d.png", truth=truth)
    assert path == str(tmp_path / "fig4_2d.png")
    data = (tmp_path / "fig4_2d.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
    import matplotlib.image

    assert matplotlib.image.imread(path).ndim == 3  # a readable image
    fig = drawn[-1]
    panels = _panels(fig)
    assert len(_meshes(fig)) == 4 and len(panels) == 4  # 2 pairs x (zero-point, zero-point - truth)
    assert len(fig.axes) == 6  # and one colour bar per row
    assert [ax.get_xlabel() for ax in panels] == [r"$G_{\rm BP} - G_{\rm RP}$ [mag]", r"$T_{\rm eff}$ [K]"] * 2
    assert {ax.get_ylabel() for ax in panels} == {"$G$ [mag]"}
    assert all(ax.yaxis_inverted() for ax in panels)  # magnitudes bright side up
    bars = [ax for ax in fig.axes if ax not in panels]
    assert all(r"[$\mu$as]" in ax.get_ylabel() for ax in bars)
    assert ZEROPOINT_CONVENTION in fig.get_suptitle()


def test_without_truth_one_row(tmp_path, drawn):
    features, zp, _ = _stars(n=1500)
    plots.plot_zeropoint_maps({"phot_g_mean_mag": features["phot_g_mean_mag"], "bp_rp": features["bp_rp"]}, zp,
                              tmp_path / "a.png")
    assert len(_meshes(drawn[-1])) == 1  # no Teff column: only G against BP-RP
    assert not _panels(drawn[-1])[0].lines
    plots.plot_zeropoint_maps(features, zp, tmp_path / "v.png", valid_ranges={"phot_g_mean_mag": (10.0, 15.5)})
    for ax in _panels(drawn[-1]):  # the valid range in G: two dashed horizontal lines
        assert sorted(line.get_ydata()[0] for line in ax.lines) == [10.0, 15.5]
        assert {line.get_linestyle() for line in ax.lines} == {"--"}
    assert "valid ranges" in drawn[-1].get_suptitle()
    with pytest.raises(ValueError, match="neither pair"):
        plots.plot_zeropoint_maps({"teff": features["teff"]}, zp, tmp_path / "b.png")


def test_drawn_medians_equal_independent_computation(tmp_path, drawn):
    features, zp, truth = _stars()
    plots.plot_zeropoint_maps(features, zp, tmp_path / "m.png", truth=truth, min_count=5)
    g = features["phot_g_mean_mag"]
    z, dz = zp.to_value(u.uas), (zp - truth).to_value(u.uas)
    meshes = _meshes(drawn[-1])
    for mesh, (xname, z_row) in zip(meshes, [("bp_rp", z), ("teff", z), ("bp_rp", dz), ("teff", dz)]):
        values, xe, ye = _mesh_values(mesh)
        expected = _numpy_medians(features[xname], g, z_row, xe, ye, 5)
        np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
        np.testing.assert_allclose(values[np.isfinite(values)], expected[np.isfinite(expected)], rtol=1e-12)
        assert np.isfinite(values).sum() > 100
    # the known trend: in G against BP-RP the bin median is the trend at the bin's centre, to the noise and the
    # trend's change across half a bin (stars spread uniformly in both)
    values, xe, ye = _mesh_values(meshes[0])
    xc, yc = np.meshgrid(0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]), indexing="ij")
    model = LEVEL + A_G * (yc - 14.0) + A_C * (xc - 1.5)
    tol = 0.5 * abs(A_G) * np.diff(ye).max() + 0.5 * abs(A_C) * np.diff(xe).max() + 3.0
    assert np.nanmax(np.abs(values - model)) < tol
    # and the drawn colours span the trend's range: at the bright end ~ -15, at the faint end ~ -65 uas
    assert np.nanmax(values) > LEVEL + A_G * (10.0 - 14.0) and np.nanmin(values) < LEVEL + A_G * (16.0 - 14.0)
    # zero-point - truth is noise: its bin medians are near 0 (noise 2 uas, >= 5 stars a bin)
    diff, _, _ = _mesh_values(meshes[2])
    assert abs(np.nanmedian(diff)) < 0.3 and np.nanmax(np.abs(diff)) < 6.0


def test_sparse_bins_are_blank_and_missing_values_left_out():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 1, 400), [2.5, 2.6, 2.7]])  # a dense bin, and 3 stars alone in another
    y = np.concatenate([rng.uniform(0, 1, 400), [2.5, 2.6, 2.7]])
    z = np.concatenate([np.full(400, -40.0), [-10.0, -20.0, -30.0]])
    edges = [np.array([0.0, 1.0, 2.0, 3.0])] * 2
    m = plots.binned_median_2d(x, y, z, bins=edges, min_count=5)
    assert m.count[0, 0] == 400 and m.count[2, 2] == 3 and m.count.sum() == 403
    assert m.median[0, 0] == -40.0
    assert np.isnan(m.median[2, 2])  # 3 < min_count stars: blank
    assert np.isnan(m.median[1, 1])  # empty
    assert plots.binned_median_2d(x, y, z, bins=edges, min_count=3).median[2, 2] == -20.0
    # -9999 and NaN are not stars; a Quantity's values in its own unit
    x2, z2 = np.append(x, [MAGIC_NUMBER, 0.5]), np.append(z, [0.0, np.nan])
    y2 = np.append(y, [0.5, 0.5])
    m2 = plots.binned_median_2d(x2, y2, z2 * u.uas, bins=edges, min_count=5)
    assert m2.count.sum() == 403 and m2.median[0, 0] == -40.0
    with pytest.raises(ValueError, match="no star"):
        plots.binned_median_2d([np.nan], [1.0], [1.0])


def test_default_bins_follow_the_star_count():
    features, zp, _ = _stars(n=1000)
    m = plots.binned_median_2d(features["bp_rp"], features["phot_g_mean_mag"], zp, min_count=5)
    assert m.median.shape == (10, 10)  # sqrt(1000 / 10) bins per axis
    assert m.x_edges[0] > 0.8 and m.x_edges[-1] < 3.0  # the central 99 % of the stars
    big = plots.binned_median_2d(*_stars(n=40000)[0].values(), min_count=5)
    assert big.median.shape == (25, 25)  # at most 25
