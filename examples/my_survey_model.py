"""A joint distance + zero-point model for a new survey, in twenty lines."""
import numpy as np

import astronn_gaiacal
from astroNN.models import load_folder
from astronn_gaiacal.models import GaiaCalBCNNBase


@astronn_gaiacal.register
class MySurveyBCNN(GaiaCalBCNNBase):
    spectrum_length = 2000  # pixels per continuum-normalised spectrum
    band = "J"  # photometric band of the magnitudes
    gaia_release = "dr3"


rng = np.random.default_rng(42)
n = 256
spectra = 1 + 0.01 * rng.standard_normal((n, 2000))
magnitude = rng.uniform(8.0, 12.0, n)  # extinction-corrected J
parallax, parallax_error = rng.uniform(0.2, 2.0, n), np.full(n, 0.05)  # Gaia, mas

net = MySurveyBCNN(offset="constant")
net.max_epochs = 2
net.fit(spectra, parallax, parallax_error, magnitude)
folder = net.save("my_survey_model", overwrite=True)
reloaded = load_folder(folder)
print(type(reloaded).__name__, reloaded.zeropoint())
