"""Registration puts plugin components where load_folder looks, without shadowing astroNN."""
import pytest

import astronn_gaiacal
from astronn_gaiacal import register, registered
from astronn_gaiacal._compat import keras


def test_astronn_classes_untouched():
    import astroNN.models as am
    from astroNN.models.apogee_models import ApogeeBCNN, ApogeeDR14GaiaDR2BCNN

    assert am.ApogeeDR14GaiaDR2BCNN is ApogeeDR14GaiaDR2BCNN
    assert am.ApogeeBCNN is ApogeeBCNN
    assert not set(registered("models")) & {"ApogeeDR14GaiaDR2BCNN", "ApogeeBCNN", "ApogeeCNN"}


def test_layers_and_losses_registered():
    import astroNN.nn.layers as al
    import astroNN.nn.losses as aloss

    assert al.FakemagToParallax is astronn_gaiacal.nn.FakemagToParallax
    assert aloss.gaia_gaussian_nll is astronn_gaiacal.nn.gaia_gaussian_nll
    assert keras.utils.get_registered_object("astronn_gaiacal>FakemagToParallax") is astronn_gaiacal.nn.FakemagToParallax


def test_refuses_to_shadow_astronn_names():
    from astroNN.models.base_bayesian_cnn import BayesianCNNBase

    class ApogeeBCNN(BayesianCNNBase):
        pass

    with pytest.raises(ValueError, match="must not shadow"):
        register(ApogeeBCNN)

    def mean_squared_error(y_true, y_pred):
        return y_true

    with pytest.raises(ValueError, match="must not shadow"):
        register(mean_squared_error)


def test_register_user_model_class_and_reregister():
    import astroNN.models as am
    from astroNN.models.base_bayesian_cnn import BayesianCNNBase

    @register
    class MyTestSurveyModel(BayesianCNNBase):
        pass

    assert am.MyTestSurveyModel is MyTestSurveyModel
    assert registered("models")["MyTestSurveyModel"] is MyTestSurveyModel

    @register  # a re-definition (e.g. a reloaded module) replaces the plugin's own entry
    class MyTestSurveyModel(BayesianCNNBase):  # noqa: F811
        pass

    assert am.MyTestSurveyModel is MyTestSurveyModel


def test_register_rejects_other_objects():
    with pytest.raises(TypeError, match="register"):
        register(42)
