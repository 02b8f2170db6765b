"""Random streams of the simulator: one seed, independent named streams.

A survey's seed makes a :class:`numpy.random.SeedSequence`; each ingredient
(population, sky, distances, photometry, Gaia, S/N, spectra noise) draws from
its own stream of it, so changing one ingredient never changes the others'
numbers.
"""
import numbers

import numpy as np

__all__ = ["STREAMS", "seed_sequence", "stream"]

#: Stream number of each ingredient of a survey.
STREAMS = {"population": 0, "sky": 1, "distance": 2, "photometry": 3, "gaia": 4, "snr": 5, "spectra": 6, "outliers": 7}


def seed_sequence(seed):
    """A :class:`numpy.random.SeedSequence` from a non-negative int, None (fresh entropy) or a SeedSequence.

    Raises
    ------
    TypeError
        ``seed`` is not an int, None or a SeedSequence.
    ValueError
        ``seed`` is negative.
    """
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is not None and not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.SeedSequence(seed)


def stream(ss, name, *extra):
    """The random generator of ingredient ``name`` (a key of :data:`STREAMS`) of seed sequence ``ss``.

    Parameters
    ----------
    ss : numpy.random.SeedSequence
    name : str
    *extra : int
        Further spawn-key entries (e.g. a block number) for sub-streams.

    Returns
    -------
    numpy.random.Generator
    """
    return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key + (STREAMS[name],) + extra))
