"""The on-disk format of saved models: astroNN model folders and ensemble folders.

A single model is an astroNN model folder: ``astroNN_model_parameter.json``
(with the plugin's options in its :data:`~astronn_gaiacal.io.model_folders.PLUGIN_KEY` section), the weights and
the normalisation.  An ensemble folder holds one such folder per member
(``member_00`` ...) and the manifest :data:`MANIFEST`.  This module reads and
writes those files (JSON only: nothing here imports TensorFlow, so that Dask
workers and the command line can read a folder without it);
:func:`astronn_gaiacal.models.load` opens either kind.
"""
import hashlib
import json
import os

__all__ = [
    "MANIFEST",
    "PARAMETER_FILE",
    "PLUGIN_KEY",
    "WEIGHTS_FILE",
    "ZEROPOINT_KEY",
    "folder_kind",
    "member_folders",
    "read_manifest",
    "read_plugin_config",
    "weights_checksum",
    "write_manifest",
    "write_plugin_config",
]

#: File of an ensemble folder that lists its members.
MANIFEST = "astronn_gaiacal_ensemble.json"
#: astroNN's parameter file of a model folder.
PARAMETER_FILE = "astroNN_model_parameter.json"
#: Section of :data:`PARAMETER_FILE` that holds the plugin's options.
PLUGIN_KEY = "astronn_gaiacal"

#: Key of the calibrated zero-point (:class:`~astronn_gaiacal.zeropoint.calibrated.CalibratedZeropoint`) in the
#: plugin section of a model folder and in an ensemble's manifest.
ZEROPOINT_KEY = "zeropoint_calibration"


def folder_kind(folder):
    """``'ensemble'`` or ``'model'`` (an astroNN model folder).

    Raises
    ------
    FileNotFoundError
        ``folder`` does not exist, or is neither kind.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"model folder {folder!r} does not exist")
    if os.path.isfile(os.path.join(folder, MANIFEST)):
        return "ensemble"
    if not os.path.isfile(os.path.join(folder, PARAMETER_FILE)):
        raise FileNotFoundError(f"{folder!r} is neither an astroNN model folder nor an ensemble folder")
    return "model"


#: astroNN's weights file in a model folder; its SHA-256 is kept in the plugin section as ``weights_sha256``.
WEIGHTS_FILE = "model_weights.h5"


def weights_checksum(folder):
    """SHA-256 (hex) of the weights file of ``folder``, or None without one."""
    path = os.path.join(os.fspath(folder), WEIGHTS_FILE)
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder):
    """The manifest (a dict) of an ensemble folder.

    Raises
    ------
    FileNotFoundError
        ``folder`` has no manifest.
    """
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} is not an ensemble folder (no {MANIFEST})")
    with open(path) as f:
        return json.load(f)


def member_folders(folder):
    """Paths of the member folders listed in an ensemble folder's manifest.

    Raises
    ------
    FileNotFoundError
        ``folder`` has no manifest.
    """
    return [os.path.join(folder, m) for m in read_manifest(folder)["members"]]


def write_manifest(folder, manifest):
    """Write an ensemble manifest (a JSON-ready dict with ``'members'``, the member folder names) into ``folder``."""
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)


def read_plugin_config(folder):
    """The plugin's section of a model folder's parameter file, or ``None`` if the folder has no parameter file.

    Raises
    ------
    ValueError
        The parameter file has no :data:`~astronn_gaiacal.io.model_folders.PLUGIN_KEY` section (a folder not
        saved by this package).
    """
    path = os.path.join(folder, PARAMETER_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        block = json.load(f).get(PLUGIN_KEY)
    if block is None:
        raise ValueError(f"{path} has no '{PLUGIN_KEY}' section: not saved by astronn_gaiacal")
    return block


def write_plugin_config(folder, block):
    """Add the plugin's section ``block`` to the parameter file astroNN wrote into ``folder``."""
    path = os.path.join(folder, PARAMETER_FILE)
    with open(path) as f:
        params = json.load(f)
    checksum = weights_checksum(folder)  # astroNN writes the weights before this section
    params[PLUGIN_KEY] = dict(block, weights_sha256=checksum) if checksum else block
    with open(path, "w") as f:
        json.dump(params, f, indent=4, sort_keys=True)
