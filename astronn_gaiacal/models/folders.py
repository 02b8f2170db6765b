"""Loading astroNN model folders; the folder format itself is :mod:`astronn_gaiacal.io.model_folders`."""
import os

from astroNN.models import load_folder

from ..io import model_folders
from ..io.model_folders import *  # noqa: F401,F403  (the folder format, re-exported for models.*)
from ..io.model_folders import WEIGHTS_FILE, read_plugin_config, weights_checksum

__all__ = [*model_folders.__all__, "load_model_folder"]


def load_model_folder(folder):
    """The model of an astroNN model folder (``astroNN.models.load_folder``), its weights checked first.

    Raises
    ------
    ValueError
        The weights file is missing or does not match the checksum the folder was saved with (corrupted or
        replaced).
    """
    try:
        expected = (read_plugin_config(folder) or {}).get("weights_sha256")
    except ValueError:  # a plain astroNN folder: nothing to check
        expected = None
    actual = None if expected is None else weights_checksum(folder)
    path = os.path.join(os.fspath(folder), WEIGHTS_FILE)
    if expected is not None and actual is None:
        raise ValueError(f"{path} is missing (the folder's settings say it was saved with weights): train or copy "
                         "the model again")
    if expected is not None and actual != expected:
        raise ValueError(f"{path} does not match the checksum saved with the model (the file is corrupted or was "
                         "replaced): train or copy the model again")
    return load_folder(os.fspath(folder))
