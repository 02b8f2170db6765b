"""Deep ensembles: training, combination rule, save/load."""
import numpy as np
import pytest
from astropy import units as u

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.models import DeepEnsemble, load
from astronn_gaiacal.models.ensemble import _combine

from _toy import N_PIX, ToyApogeeBCNN, toy_survey


def test_combination_rule():
    means = np.array([[1.0], [2.0], [3.0]])
    mc_var = np.array([[0.1], [0.2], [0.3]])
    mean, mc, between = _combine(means, mc_var)
    assert mean[0] == 2.0 and np.isclose(mc[0], 0.2) and np.isclose(between[0], 1.0)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    data = toy_survey(200, seed=5, n_pixels=N_PIX, zeropoint=-0.1)

    def factory():
        net = ToyApogeeBCNN(offset="constant", lr=2e-3)
        net.max_epochs, net.verbose = 5, 0
        return net

    ens = DeepEnsemble.train(
        factory, n_members=3, seed=10, progress=False,
        spectra=data["spectra"], parallax=data["parallax"], parallax_error=data["parallax_error"], magnitude=data["mag"],
    )
    folder = ens.save(str(tmp_path_factory.mktemp("ens") / "ensemble"))
    return ens, folder, data


def test_members_differ_and_reload(ensemble):
    ens, folder, data = ensemble
    assert len(ens) == 3 and ens.offset == "constant"
    w = [m.keras_model.get_weights()[0] for m in ens.members]
    assert not np.array_equal(w[0], w[1])  # different seeds
    loaded = load(folder)
    assert isinstance(loaded, DeepEnsemble) and len(loaded) == 3
    for a, b in zip(ens.members, loaded.members):
        for wa, wb in zip(a.keras_model.get_weights(), b.keras_model.get_weights()):
            np.testing.assert_array_equal(wa, wb)


def test_zeropoint_error_components(ensemble):
    ens, _, _ = ensemble
    value, error, parts = ens.zeropoint(mc_num=50, components=True, estimate="learned")
    member_values = np.array([m.zeropoint(mc_num=50, estimate="learned")[0].to_value(u.uas) for m in ens.members])
    # the between-member part is the sample std of the member values (MC noise aside)
    assert parts["ensemble"].to_value(u.uas) == pytest.approx(member_values.std(ddof=1), rel=0.3, abs=0.5)
    assert error.to_value(u.uas) == pytest.approx(np.hypot(parts["mc"].value, parts["ensemble"].value), rel=1e-10)
    assert value.unit == u.uas


def test_predict_adds_between_member_spread(ensemble):
    ens, _, data = ensemble
    ens.mc_num = 20
    fakemag, err = ens.predict(data["spectra"][:10])
    assert fakemag.shape == (10, 1)
    member_means = np.array([m.predict(data["spectra"][:10])[0] for m in ens.members])
    assert np.all(err["model"][:, 0] >= 0.5 * member_means.std(axis=0, ddof=1)[:, 0])
    np.testing.assert_allclose(err["total"] ** 2, err["model"] ** 2 + err["predictive"] ** 2, rtol=1e-10)


def test_without_drops_members(ensemble):
    ens, _, _ = ensemble
    kept = ens.without([1])
    assert isinstance(kept, DeepEnsemble) and kept.members == [ens.members[0], ens.members[2]]
    assert len(ens) == 3  # the original is unchanged
    with pytest.raises(IndexError, match=r"\[3\]"):
        ens.without([3])
    with pytest.raises(ValueError, match="no member"):
        ens.without([0, 1, 2])


def test_refit_zeropoint_estimates(ensemble):
    from astronn_gaiacal.zeropoint.estimates import DEFAULT_ESTIMATE
    from astronn_gaiacal.zeropoint.fit import fit_zeropoint
    from astronn_gaiacal.zeropoint.estimates import combine_fits

    ens, _, data = ensemble
    ens.mc_num = 10
    args = (data["spectra"], data["parallax"], data["parallax_error"])
    fit, parts = ens.refit_zeropoint(*args, magnitude=data["mag"], components=True)
    plain, plain_parts = ens.refit_zeropoint(*args, magnitude=data["mag"], components=True, estimate="refit_ensemble")
    # the default estimate is the plain ensemble refit with its statistical term inflated by the consistency factor
    assert DEFAULT_ESTIMATE == "refit_consistency_ensemble" and parts["consistency_factor"] >= 1.0
    assert fit.value.to_value(u.uas) == pytest.approx(plain.value.to_value(u.uas), rel=1e-12)
    expected = np.hypot(parts["consistency_factor"] * plain_parts["statistical"].to_value(u.uas),
                        plain_parts["ensemble"].to_value(u.uas))
    assert fit.error.to_value(u.uas) == pytest.approx(expected, rel=1e-12)
    # the plain ensemble refit combines the members' own refits
    members = [m.refit_zeropoint(*args, magnitude=data["mag"]) for m in ens.members]
    assert plain.value.to_value(u.uas) == pytest.approx(combine_fits(members)[0].value.to_value(u.uas), rel=1e-9)
    assert plain_parts["failed"] == [] and len(members) == 3
    mean_plx = np.mean([m.predict_parallax(data["spectra"], magnitude=data["mag"])[0].to_value(u.mas)
                        for m in ens.members], axis=0)
    assert abs(fit_zeropoint(data["parallax"], data["parallax_error"], mean_plx).value.to_value(u.uas)
               - plain.value.to_value(u.uas)) < 3 * plain.error.to_value(u.uas)
    with pytest.raises(ValueError, match="estimate must be one of"):
        ens.refit_zeropoint(*args, magnitude=data["mag"], estimate="mc")


def test_load_rejects_non_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "nope")


class _RecordingModel:
    """Records the keyword arguments of fit (the ensemble's training loop is what is tested)."""

    offset, n_features, uncertainty_calibration = "constant", 0, None

    def fit(self, **kwargs):
        self.fit_kwargs = kwargs


@pytest.mark.parametrize("bootstrap", [False, True])
def test_train_bootstrap_weights(bootstrap, monkeypatch):
    monkeypatch.setattr(DeepEnsemble, "calibrate_at_fit", False)  # the recording members predict nothing
    plx = np.linspace(0.1, 2.0, 50)
    kwargs = {} if not bootstrap else {"bootstrap": True}
    ens = DeepEnsemble.train(_RecordingModel, n_members=3, seed=7, progress=False, parallax=plx, **kwargs)
    for k, member in enumerate(ens.members):
        weight = member.fit_kwargs["sample_weight"]
        if bootstrap:  # Poisson(1) draws of member k's own generator
            np.testing.assert_array_equal(weight, np.random.default_rng(7 + k).poisson(1.0, 50).astype(float))
        else:  # the default: every member sees every star once
            assert weight is None
        assert member.fit_kwargs["parallax"] is plx


def test_single_model_and_ensemble_share_one_interface(ensemble):
    """Both are ZeropointModels with the same signatures; the ensemble describes itself by its members."""
    import inspect

    from astronn_gaiacal.models import GaiaCalBCNNBase, ZeropointModel
    from astronn_gaiacal.models.protocol import DESCRIPTIVE_ATTRIBUTES

    ens, _, _ = ensemble
    single = ens.members[0]
    assert isinstance(single, ZeropointModel) and isinstance(ens, ZeropointModel)
    for name in ("predict", "test", "predict_parallax", "predict_distance", "predict_zeropoint", "member_parallaxes",
                 "refit_zeropoint", "refit_zeropoint_trend", "zeropoint"):
        assert inspect.signature(getattr(GaiaCalBCNNBase, name)) == inspect.signature(getattr(DeepEnsemble, name)), name
    for name in DESCRIPTIVE_ATTRIBUTES:
        expected = 3 if name == "n_members" else getattr(single, name)
        assert getattr(ens, name) == expected, name
    assert single.n_members == 1
    assert not hasattr(ens, "keras_model")  # no forwarding of anything else to the members


def test_single_model_as_one_member_ensemble(ensemble):
    """A single model refits as the one-member ensemble of it; its zero-point has no between-member part."""
    ens, _, data = ensemble
    single = ens.members[0]
    single.mc_num = 10
    args = (data["spectra"], data["parallax"], data["parallax_error"])
    astronn_gaiacal._compat.keras.utils.set_random_seed(2)
    own, own_parts = single.refit_zeropoint(*args, magnitude=data["mag"], components=True)
    astronn_gaiacal._compat.keras.utils.set_random_seed(2)
    as_ensemble = single.refit_zeropoint(*args, magnitude=data["mag"], estimate="refit_ensemble")
    astronn_gaiacal._compat.keras.utils.set_random_seed(2)
    of = DeepEnsemble.of(single).refit_zeropoint(*args, magnitude=data["mag"], estimate="refit_ensemble")
    assert as_ensemble.value == of.value == own.value and own_parts["failed"] == []
    assert own_parts["ensemble"].value == 0 and own_parts["statistical"] == own.error
    with pytest.raises(ValueError, match="estimate must be one of"):
        ens.refit_zeropoint(*args, magnitude=data["mag"], estimate="refit")
    with pytest.raises(ValueError, match="scatter and fit_scale"):
        ens.refit_zeropoint(*args, magnitude=data["mag"], fit_scale=True)
    value, error, parts = single.zeropoint(mc_num=20, components=True, estimate="learned")
    assert parts["mc"] == error and parts["ensemble"].value == 0 and value.unit == u.uas
