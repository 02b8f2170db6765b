"""Screening an ensemble's members on the validation stars they share (models.screening)."""
import functools
import json
import os
import warnings

import numpy as np
import pytest

from astronn_gaiacal._compat import keras
from astronn_gaiacal.models import DeepEnsemble, load
from astronn_gaiacal.models.calibration import VALIDATION_SEED
from astronn_gaiacal.models.screening import MemberScreeningWarning, held_out_nll, screen_members

from _toy import N_PIX, toy_model, toy_survey


def test_screen_members_finds_the_worse_member_and_only_it():
    rng = np.random.default_rng(0)
    same = rng.normal(0, 1, (4, 300)) + rng.normal(0, 1, 300)  # a shared per-star part, as real stars have
    assert screen_members(same)["dropped"] == []
    worse = same + np.array([[0], [0], [0.4], [0]])
    slightly = same + np.array([[0], [0], [0.05], [0]])  # significant on 300 stars, but too small to matter
    assert screen_members(slightly, sigma=0.5)["dropped"] == []
    result = screen_members(worse)
    assert result["dropped"] == [2] and result["n_stars"] == 300
    # the statistic: the member's mean excess over the per-star median, in standard errors of that mean
    excess = worse - np.median(worse, axis=0)
    z = excess.mean(1) / (excess.std(1, ddof=1) / np.sqrt(300))
    np.testing.assert_allclose(result["significance"], z)
    np.testing.assert_allclose(result["excess"], excess.mean(1))


def test_screen_members_limits():
    rng = np.random.default_rng(1)
    two = rng.normal(0, 1, (2, 300)) + np.array([[0], [1.0]])
    assert screen_members(two)["dropped"] == []  # two members cannot say which is the odd one
    many = rng.normal(0, 1, (5, 300)) + np.array([[0], [1.0], [1.0], [1.0], [0]])
    assert len(screen_members(many)["dropped"]) == 2  # at most half


@pytest.fixture(scope="module")
def trained():
    """Three toy members trained as DeepEnsemble.train trains them (the shared validation split)."""
    data = toy_survey(500, seed=3, n_pixels=N_PIX)
    members = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(3):
            keras.utils.set_random_seed(seed)
            net = toy_model("constant", epochs=8)
            net.fit(data["spectra"], data["parallax"], data["parallax_error"], magnitude=data["mag"],
                    validation_seed=VALIDATION_SEED, calibrate_zeropoint=False)
            members.append(net)
    return members, data


def test_training_records_the_screening():
    data = toy_survey(300, seed=3, n_pixels=N_PIX)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = DeepEnsemble.train(functools.partial(toy_model, "constant", epochs=1), n_members=3, seed=5,
                                 progress=False, spectra=data["spectra"], parallax=data["parallax"],
                                 parallax_error=data["parallax_error"], magnitude=data["mag"])
    assert ens.screening["members_before"] == 3 and len(ens) == 3 - len(ens.screening["dropped"])
    assert ens.screening["n_stars"] == 30  # the shared 10 % validation split


def test_a_member_with_wrong_luminosities_is_left_out(trained, tmp_path):
    members, data = trained
    bad = members[1]
    honest = bad.predict

    def too_bright(x, **kw):  # a member whose luminosities are all 40 % too high
        fakemag, err = honest(x, **kw)
        return fakemag * 1.4, err

    bad.predict = too_bright
    try:
        full = DeepEnsemble(members)
        nll, stars = held_out_nll(full, data["spectra"], data["parallax"], data["parallax_error"],
                                  magnitude=data["mag"])
        assert nll.shape == (len(members), stars.size) and stars.size == 50  # the 10 % validation split
        first = screen_members(nll)
        assert 1 in first["dropped"] and first["excess"][1] == max(first["excess"])
        with pytest.warns(MemberScreeningWarning, match=r"left out"):
            kept = full.screened(data["spectra"], data["parallax"], data["parallax_error"], data["mag"])
        assert bad not in kept.members and kept.screening["dropped"] == first["dropped"]
        folder = kept.save(str(tmp_path / "ens"))
        with open(os.path.join(folder, "astronn_gaiacal_ensemble.json")) as f:
            assert json.load(f)["member_screening"]["dropped"] == first["dropped"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert load(folder).screening["dropped"] == first["dropped"]
    finally:
        del bad.predict
