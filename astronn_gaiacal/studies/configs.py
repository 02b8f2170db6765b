"""Sizes and training recipes of the experiments (the demo and the calibration study).

Plain data and the library's training recipes
(:data:`~astronn_gaiacal.constants.TRAINING_RECIPES`), nothing heavier: the
command line reads its defaults from here without loading the experiments.
"""

from ..constants import training_recipe

#: Demo sizes.  The default is sized for about 10 min on 2 CPU cores (the trainings run side by side,
#: :mod:`astronn_gaiacal.models.workers`): 70 epochs at a learning rate of 3e-3 (the paper's 1e-3 needs more)
#: bring the luminosity scatter to 5-8 %, which limits the zero-point, and averaging the weights of the
#: last 35 % of the epochs halves the spread of the members' zero-points (docs/calibration.rst); the
#: no-offset model only has to show its bias, so it gets half the epochs, and so does the multivariate model
#: (its offset network alone, on a fixed luminosity network: converged by then), which keeps the six
#: trainings within three rounds of two.  'full' is the paper's scale.  The calibration study uses 'default'.
CONFIGS = {
    "default": dict(n_train=3000, n_test=1000, epochs_no_offset=35, epochs_multivariate=35, mc_num=30,
                    **training_recipe(3000)),
    "full": dict(n_train=35112, n_test=33468, epochs_no_offset=40, epochs_multivariate=40, mc_num=100,
                 **training_recipe(35112)),
}
