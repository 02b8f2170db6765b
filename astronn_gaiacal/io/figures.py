"""Figures without pyplot: made on matplotlib's Agg canvas and written atomically.

The package never switches the user's matplotlib backend (no
``matplotlib.use``) and keeps no figure in pyplot's state: a figure from
:func:`new_figure` belongs to its caller and is freed like any object.

Examples
--------
>>> import os, tempfile
>>> from astronn_gaiacal.io.figures import new_figure, save_figure
>>> fig = new_figure(figsize=(3, 2))
>>> ax = fig.subplots()
>>> _ = ax.plot([0, 1], [1, 0])
>>> path = save_figure(fig, os.path.join(tempfile.mkdtemp(), "line.png"))
>>> os.path.getsize(path) > 0
True
"""
import os

from .atomic import atomic_path

__all__ = ["new_figure", "save_figure"]


def new_figure(figsize=None, **kwargs):
    """A new :class:`matplotlib.figure.Figure` drawn by the Agg (PNG) canvas.

    Parameters
    ----------
    figsize : (float, float), optional
        Width and height in inches (default: ``rcParams["figure.figsize"]``).
    **kwargs
        More arguments of :class:`~matplotlib.figure.Figure` (``dpi``, ``layout``, ...).

    Returns
    -------
    matplotlib.figure.Figure
        Add axes with ``fig.subplots(nrows, ncols, ...)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path, overwrite=True, dpi=110, **kwargs):
    """Write ``fig`` as a PNG file, atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or os.PathLike
    overwrite : bool
        Replace an existing ``path``; otherwise raise ``FileExistsError``.
    dpi : float
    **kwargs
        More arguments of :meth:`~matplotlib.figure.Figure.savefig` (e.g. ``bbox_inches="tight"``).

    Returns
    -------
    str
        ``path``.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, **kwargs)
    return os.fspath(path)
