"""Atomic file and folder writing: an interrupted run never leaves a half-written output.

Examples
--------
>>> import os, tempfile
>>> from astronn_gaiacal.io.atomic import atomic_path
>>> d = tempfile.mkdtemp()
>>> with atomic_path(os.path.join(d, "cat.fits")) as tmp:
...     with open(tmp, "w") as f:
...         _ = f.write("data")
>>> os.listdir(d)
['cat.fits']
"""
import contextlib
import os
import shutil
import tempfile


def cache_folder(subfolder, env_var):
    """A cache folder (not created): ``conf.<subfolder>_cache_dir`` if set, else ``$env_var`` (the older
    setting, still read), else ``<astropy cache>/astronn_gaiacal/<subfolder>``."""
    from ..config import conf

    configured = getattr(conf, {"kernels": "kernel_cache_dir"}.get(subfolder, f"{subfolder}_cache_dir"), "")
    if configured:
        return os.path.expanduser(configured)
    env = os.environ.get(env_var)
    if env:
        return env
    from astropy.config import get_cache_dir

    return os.path.join(get_cache_dir(), "astronn_gaiacal", subfolder)


def current_umask():
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_target(path, overwrite):
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")


@contextlib.contextmanager
def atomic_path(path, overwrite=False):
    """Yield a temporary file name next to ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Final file name.
    overwrite : bool
        Replace an existing ``path``; otherwise raise ``FileExistsError``.
    """
    path = os.fspath(path)
    _check_target(path, overwrite)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{ext}", dir=directory)
    os.close(fd)
    os.unlink(tmp)  # writers (astropy, h5py) create the file themselves
    try:
        yield tmp
        _check_target(path, overwrite)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_directory(path, overwrite=False):
    """Yield a temporary directory next to ``path``; rename it to ``path`` on success.

    On an exception the temporary directory is removed and ``path`` is untouched.
    With ``overwrite=True`` an existing ``path`` is replaced only after the new
    one is complete.
    """
    path = os.path.abspath(os.fspath(path))
    _check_target(path, overwrite)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=parent)
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would stay on the renamed folder
    try:
        yield tmp
        _check_target(path, overwrite)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
