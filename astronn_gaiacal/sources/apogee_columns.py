"""Where each dataset column is found in APOGEE products: allStar table columns and apStar header keywords.

One map for both readers: :func:`astronn_gaiacal.sources.spectra.read_apstar`
reads the apStar primary header, :func:`astronn_gaiacal.sources.xmatch.to_dataset`
reads an allStar-like table.  The names differ where a FITS header keyword,
at most 8 characters long, cannot hold the table column's name (AK_TARG in
allStar, AKTARG in the header).

Examples
--------
>>> from astronn_gaiacal.sources.apogee_columns import APOGEE_FIELDS, header_keywords, table_columns
>>> APOGEE_FIELDS["mag_ext"].table[0], APOGEE_FIELDS["mag_ext"].header
('AK_TARG', 'AKTARG')
>>> table_columns()["fe_h"], header_keywords()["mag"]
(('FE_H', 'M_H'), 'K')
"""
from dataclasses import dataclass

__all__ = ["FITS_KEYWORD_LENGTH", "ApogeeField", "APOGEE_FIELDS", "table_columns", "header_keywords"]

#: Longest FITS header keyword (without HIERARCH).
FITS_KEYWORD_LENGTH = 8


@dataclass(frozen=True)
class ApogeeField:
    """Names of one dataset column in APOGEE products.

    Attributes
    ----------
    table : tuple of str
        allStar-like table columns it is read from, tried in order
        (case-insensitive); empty when tables are not read for it.
    header : str or None
        apStar primary-header keyword (at most 8 characters); None when the
        header does not carry it.
    kind : {'f', 'i', 'U'}
        Value type read from the header: float, integer or string.
    """

    table: tuple = ()
    header: str = None
    kind: str = "f"


#: Dataset column -> its allStar columns and apStar header keyword, in the dataset's column order.
APOGEE_FIELDS = {
    "apogee_id": ApogeeField(("APOGEE_ID",), "OBJID", "U"),
    # the field's location id of DR14 and earlier (the paper's Table 1); apStar headers name the field instead
    "location_id": ApogeeField(("LOCATION_ID",), None, "i"),
    "ra": ApogeeField(("RA",), "RA"),
    "dec": ApogeeField(("DEC",), "DEC"),
    "teff": ApogeeField(("TEFF",)),
    "logg": ApogeeField(("LOGG",)),
    "fe_h": ApogeeField(("FE_H", "M_H")),
    "snr": ApogeeField(("SNR", "SNREV"), "SNR"),
    "mag": ApogeeField(("K",), "K"),
    "mag_error": ApogeeField((), "K_ERR"),
    # a table made from apStar headers has the header's spelling
    "mag_ext": ApogeeField(("AK_TARG", "AKTARG"), "AKTARG"),
    "starflag": ApogeeField(("STARFLAG",), "STARFLAG", "i"),
    "vscatter": ApogeeField(("VSCATTER",), "VSCATTER"),
    "nvisits": ApogeeField((), "NVISITS", "i"),
}


def table_columns():
    """Dataset column -> allStar-like table columns it is read from, in order.

    Returns
    -------
    dict of str to tuple of str
        Only the columns read from tables.
    """
    return {name: field.table for name, field in APOGEE_FIELDS.items() if field.table}


def header_keywords(kind=None):
    """Dataset column -> apStar primary-header keyword.

    Parameters
    ----------
    kind : {'f', 'i', 'U'}, optional
        Only the keywords whose values have this type.

    Returns
    -------
    dict of str to str
    """
    return {name: field.header for name, field in APOGEE_FIELDS.items()
            if field.header and (kind is None or field.kind == kind)}
