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
import re
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


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _owner_pid(name, marker):
    """The process id written after ``marker`` in a temporary name (``None`` if there is none)."""
    rest = name.split(marker, 1)[1] if marker in name else ""
    digits = rest.split(".", 1)[0].split("_", 1)[0]
    return int(digits) if digits.isdigit() else None


def _remove_dead(folder, owner):
    """Remove the entries of ``folder`` whose ``owner(name)`` process id is not alive (this user's only)."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        pid = owner(name)
        path = os.path.join(folder, name)
        try:
            if pid is None or pid == os.getpid() or _pid_alive(pid) or os.lstat(path).st_uid != os.getuid():
                continue
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
            removed.append(path)
        except OSError:
            continue
    return removed


def remove_stale(folder, prefix):
    """Remove the temporary files and folders named ``<prefix><pid>...`` in ``folder`` whose process is gone.

    Every temporary name of this package carries the id of the process that
    made it (:func:`owned_tempdir`; :func:`remove_stale_partials` for those of
    :func:`atomic_path` and :func:`atomic_directory`); a killed process cannot
    clean up, so the next start does.  Only entries of this user are touched.

    Returns
    -------
    list of str
        The paths removed.
    """
    return _remove_dead(folder, lambda name: _owner_pid(name, prefix) if name.startswith(prefix) else None)


_PARTIAL = re.compile(r"^\..*?\.tmp(\d+)\..*\.partial")


def remove_stale_partials(folder):
    """Remove the temporaries of :func:`atomic_path`/:func:`atomic_directory` in ``folder`` (``.NAME.tmp<pid>.*
    .partial*``, of any NAME) whose process is gone, and this user's; return the paths removed."""

    def owner(name):
        match = _PARTIAL.match(name)
        return None if match is None else int(match.group(1))

    return _remove_dead(folder, owner)


@contextlib.contextmanager
def owned_tempdir(kind):
    """A private temporary folder ``astronn_gaiacal_<kind>_<pid>_*`` removed on exit, and those of dead processes
    (killed before they could remove theirs) removed on entry."""
    prefix = f"astronn_gaiacal_{kind}_"
    remove_stale(tempfile.gettempdir(), prefix)
    tmp = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}_")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    remove_stale_partials(directory)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.tmp{os.getpid()}.", suffix=f".partial{ext}", dir=directory)
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
    remove_stale_partials(parent)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp{os.getpid()}.", suffix=".partial", dir=parent)
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
