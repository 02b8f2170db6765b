"""Settings of astronn_gaiacal, in astropy's configuration system.

:data:`conf` is an :class:`astropy.config.ConfigNamespace`, as astroquery's
services have: change a setting for the session with ``conf.chunk_size =
2000``, for a block with ``conf.set_temp``, or permanently in
``~/.astropy/config/astronn_gaiacal.cfg`` (:func:`astropy.config.generate_config`
writes a commented template).  Functions take the same values as keyword
arguments, which win over ``conf`` for that call.

Examples
--------
>>> from astronn_gaiacal import conf
>>> conf.chunk_size
5000
>>> with conf.set_temp("read_timeout", 5.0):
...     conf.read_timeout
5.0
>>> conf.read_timeout
60.0
"""
from astropy import config as _config

__all__ = ["Conf", "conf"]


class Conf(_config.ConfigNamespace):
    """Configuration parameters for :mod:`astronn_gaiacal`."""

    gaia_archive_url = _config.ConfigItem(
        "https://gea.esac.esa.int/",
        "Root of the ESA Gaia archive; its TAP service is <url>tap-server/tap.")
    connect_timeout = _config.ConfigItem(
        10.0, "Seconds to wait for a connection to the Gaia archive, per request.", cfgtype="float")
    read_timeout = _config.ConfigItem(
        60.0, "Seconds to wait for each answer of the Gaia archive, per request.", cfgtype="float")
    job_timeout = _config.ConfigItem(
        600.0, "Seconds a Gaia archive job may run before the cross-match gives up on it.", cfgtype="float")
    chunk_size = _config.ConfigItem(
        5000, "Input rows uploaded per Gaia archive job by the cross-match.", cfgtype="integer")
    retries = _config.ConfigItem(
        3, "Extra attempts of a cross-match chunk after a transient archive failure.", cfgtype="integer")
    xmatch_cache_dir = _config.ConfigItem(
        "", "Folder caching finished cross-match chunks; empty: $ASTRONN_GAIACAL_CACHE_DIR if set, else "
            "<astropy cache>/astronn_gaiacal/xmatch.")
    kernel_cache_dir = _config.ConfigItem(
        "", "Folder of the compiled fused kernels; empty: $ASTRONN_GAIACAL_KERNEL_CACHE if set, else "
            "<astropy cache>/astronn_gaiacal/kernels.")


#: The package's settings (see :class:`Conf`).
conf = Conf()
