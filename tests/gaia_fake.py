"""A fake Gaia archive for offline tests of astronn_gaiacal.sources.xmatch.

It is a transport adapter of ``requests`` (mounted on the session of a real
``pyvo.dal.TAPService``) and answers the TAP/UWS async protocol that pyvo's
``AsyncTAPJob`` speaks: POST async -> 303 to the job, POST phase=RUN, GET the
job document (phase, result link or error summary), GET the result, DELETE.  Answers are computed from a sky
of Gaia sources whose columns come from a real DR3 archive response
(tests/data/gaia_dr3_two_sources.vot), by brute force over the sky: an
independent implementation of the ADQL join the client sends.
"""
import io
import os
import re
import urllib.parse

import numpy as np
import requests
import urllib3
from astropy.coordinates import SkyCoord
from astropy import units as u
from astropy.table import MaskedColumn, Table

DATA = os.path.join(os.path.dirname(__file__), "data")
RECORDED_DR3 = os.path.join(DATA, "gaia_dr3_two_sources.vot")

TMASS_COLUMNS = {"designation": "U17", "ks_m": "f4", "ks_msigcom": "f4", "ph_qual": "U3"}


def recorded_rows():
    """The two real DR3 rows, with the archive's column names, dtypes and units."""
    return Table.read(RECORDED_DR3, format="votable", use_names_over_ids=True)


def make_sky(ra, dec, pmra=None, pmdec=None, source_id=None, ks_m=None):
    """Gaia sources at the given positions; every other column from the recorded DR3 rows (cycled)."""
    rec = recorded_rows()
    n = len(ra)
    sky = rec[np.arange(n) % len(rec)]
    sky["source_id"] = np.arange(1, n + 1, dtype=np.int64) * 1000 + 7 if source_id is None else source_id
    sky["ra"], sky["dec"] = ra, dec
    if pmra is not None:
        sky["pmra"], sky["pmdec"] = pmra, pmdec
    ks = np.linspace(8.0, 12.0, n) if ks_m is None else np.asarray(ks_m)
    sky["designation"] = [f"{i:08d}+{i:07d}" for i in range(n)]  # 2MASS-style, replaces Gaia's
    sky["tmass_designation"] = sky["designation"]  # the name a local extract uses
    sky["ks_m"] = MaskedColumn(ks.astype("f4"), mask=np.isnan(ks), unit="mag")
    sky["ks_msigcom"] = MaskedColumn(np.full(n, 0.02, "f4"), mask=np.isnan(ks), unit="mag")
    sky["ph_qual"] = np.where(np.isnan(ks), "", "AAA")
    return sky


def _filled(col):
    data = np.array(col.view(np.ndarray), dtype=float)
    data[np.asarray(getattr(col, "mask", False), bool) & np.ones(len(data), bool)] = np.nan
    return data


def _multipart(data, content_type):
    boundary = content_type.split("boundary=")[1].encode()
    fields = {}
    for part in data.split(b"--" + boundary):
        if b"\r\n\r\n" not in part:
            continue
        head, body = part.split(b"\r\n\r\n", 1)
        name = re.search(rb'name="([^"]+)"', head)
        if name:
            fields[name.group(1).decode()] = body[:-2] if body.endswith(b"\r\n") else body
    return fields


ROOT = "http://fake-gaia.test/"
TAP = ROOT + "tap-server/tap"

_JOB = """<?xml version="1.0" encoding="UTF-8"?>
<uws:job xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" xmlns:xlink="http://www.w3.org/1999/xlink"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.1">
  <uws:jobId>{jobid}</uws:jobId>
  <uws:ownerId xsi:nil="true"/>
  <uws:phase>{phase}</uws:phase>
  <uws:quote xsi:nil="true"/>
  <uws:creationTime>2026-01-01T00:00:00Z</uws:creationTime>
  <uws:startTime xsi:nil="true"/>
  <uws:endTime xsi:nil="true"/>
  <uws:executionDuration>0</uws:executionDuration>
  <uws:destruction xsi:nil="true"/>
  <uws:parameters/>
  <uws:results>{results}</uws:results>
  {error}
</uws:job>
"""


class FakeGaiaArchive(requests.adapters.BaseAdapter):
    """Answers the async TAP requests of pyvo's TAPService from ``sky``.

    Attributes
    ----------
    jobs : list of dict
        Every job posted: ``query`` (ADQL text), ``upload`` (the uploaded Table).
    fail : callable(upload) -> int or None
        HTTP status to answer a job's POST with (None: accept it).
    truncate : int or None
        Return only the first ``truncate`` result rows (a row limit).
    job_error : str or None
        Make every job end in phase ERROR with this message.
    """

    tables = ("gaiadr2.gaia_source", "gaiaedr3.gaia_source", "gaiadr3.gaia_source")

    def __init__(self, sky):
        super().__init__()
        self.sky = sky
        self.jobs = []
        self.posts = 0
        self.deleted = 0
        self.fail = lambda upload: None
        self.truncate = None
        self.job_error = None
        self._results = {}
        self._phase = {}

    # --- the TAP protocol -----------------------------------------------------------------
    def send(self, request, **kwargs):
        path = urllib.parse.urlsplit(request.url).path
        job = re.fullmatch(r"/tap-server/tap/async/(\d+)(/phase|/results/result)?", path)
        if request.method == "POST" and path == "/tap-server/tap/async":
            return self._submit(request)
        if job is None:
            raise AssertionError(f"unexpected {request.method} {request.url}")
        jobid, what = job.groups()
        if request.method == "POST" and what == "/phase":
            fields = dict(urllib.parse.parse_qsl(request.body if isinstance(request.body, str)
                                                  else request.body.decode()))
            assert fields == {"PHASE": "RUN"}, fields
            self._phase[jobid] = "ERROR" if self.job_error else "COMPLETED"
            return self._response(request, 303, headers={"Location": f"{TAP}/async/{jobid}"})
        if request.method == "GET" and what is None:
            return self._response(request, 200, self._job_document(jobid), {"Content-Type": "text/xml"})
        if request.method == "GET" and what == "/results/result":
            return self._response(request, 200, self._results[jobid], {"Content-Type": "application/x-votable+xml"})
        if request.method == "DELETE" and what is None:
            self.deleted += 1
            return self._response(request, 303, headers={"Location": f"{TAP}/async"})
        raise AssertionError(f"unexpected {request.method} {request.url}")

    def close(self):
        pass

    def _submit(self, request):
        self.posts += 1
        fields = _multipart(request.body, request.headers["Content-Type"])
        query = fields["QUERY"].decode()
        assert fields["UPLOAD"].decode() == "xm_input,param:xm_input"
        upload = Table.read(io.BytesIO(fields["xm_input"]), format="votable")
        self.jobs.append({"query": query, "upload": upload, "fields": fields})
        status = self.fail(upload)
        if status is not None:
            return self._response(request, status, b"Internal Server Error")
        jobid = str(len(self.jobs))
        self._results[jobid] = self.answer(query, upload).encode()
        self._phase[jobid] = "PENDING"
        return self._response(request, 303, headers={"Location": f"{TAP}/async/{jobid}"})

    def _job_document(self, jobid):
        phase = self._phase[jobid]
        results = (f'<uws:result id="result" xlink:href="{TAP}/async/{jobid}/results/result"/>'
                   if phase == "COMPLETED" else "")
        error = (f'<uws:errorSummary type="fatal" hasDetail="false"><uws:message>{self.job_error}</uws:message>'
                 "</uws:errorSummary>" if phase == "ERROR" else "")
        return _JOB.format(jobid=jobid, phase=phase, results=results, error=error).encode()

    @staticmethod
    def _response(request, status, body=b"", headers=None):
        raw = urllib3.HTTPResponse(body=io.BytesIO(body), headers=headers or {}, status=status,
                                   preload_content=False, decode_content=False)
        return requests.adapters.HTTPAdapter().build_response(request, raw)

    # --- the database ---------------------------------------------------------------------
    def answer(self, query, upload):
        """VOTable text of the ADQL join of ``upload`` with the sky (brute force)."""
        table = re.search(r"LEFT OUTER JOIN (\S+) AS g ON", query).group(1)
        assert table in self.tables, table
        select = re.search(r"SELECT (.*?)\nFROM", query, re.S).group(1).split(", ")
        names, sources = [], []
        for item in select:
            expr, _, alias = item.partition(" AS ")
            names.append(alias or expr.split(".")[1])
            sources.append(expr.split(".")[1])
        sky = self.sky
        pairs = []  # (upload index, sky index or -1)
        for i in np.argsort(np.asarray(upload["xm_row"]), kind="stable"):  # ORDER BY u.xm_row
            hits = self._join(query, upload, i, sky)
            pairs += [(i, j) for j in hits] or [(i, -1)]
        up_idx = np.array([p[0] for p in pairs], int)
        sky_idx = np.array([p[1] for p in pairs], int)
        out = Table()
        for name, source in zip(names, sources):
            if source == "xm_row":
                out[name] = np.asarray(upload["xm_row"])[up_idx]
                continue
            col = sky[source]
            data = col.view(np.ndarray)[np.maximum(sky_idx, 0)]
            mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), bool)[np.maximum(sky_idx, 0)]
            out[name] = MaskedColumn(data, mask=mask | (sky_idx < 0), unit=col.unit, description=col.description)
        if self.truncate is not None:
            out = out[: self.truncate]
        self.last_answer = out
        buffer = io.BytesIO()
        out.write(buffer, format="votable", tabledata_format="binary2")  # TABLEDATA: astropy C-writer overrun
        return buffer.getvalue().decode()

    @staticmethod
    def _join(query, upload, i, sky):
        if "g.source_id = u.xm_source_id" in query:
            return list(np.flatnonzero(np.asarray(sky["source_id"]) == upload["xm_source_id"][i]))
        circle = float(re.search(r"CIRCLE\('ICRS', u\.xm_ra, u\.xm_dec, ([^)]+)\)", query).group(1))
        here = SkyCoord(upload["xm_ra"][i], upload["xm_dec"][i], unit="deg")
        ra, dec = np.asarray(sky["ra"], float), np.asarray(sky["dec"], float)
        inside = here.separation(SkyCoord(ra, dec, unit="deg")).deg < circle
        if "DISTANCE" not in query:
            return list(np.flatnonzero(inside))
        radius = float(re.search(r"\) < ([0-9.eE+-]+)", query).group(1))
        pmra = _filled(sky["pmra"])
        pmdec = _filled(sky["pmdec"])
        dt = upload["xm_epoch"][i] - np.asarray(sky["ref_epoch"], float)
        moved = SkyCoord(ra + pmra * dt / (3.6e6 * np.cos(np.radians(dec))), dec + pmdec * dt / 3.6e6, unit="deg")
        near = here.separation(moved).deg < radius
        still = np.isnan(pmra) & (here.separation(SkyCoord(ra, dec, unit="deg")).deg < radius)
        return list(np.flatnonzero(inside & (near | still)))


def fake_gaia(sky, fake=None):
    """(the package's archive client, a pyvo TAPService, answered by a FakeGaiaArchive; the fake)."""
    from astronn_gaiacal.sources.xmatch import gaia_archive

    fake = FakeGaiaArchive(sky) if fake is None else fake
    session = requests.Session()
    session.mount(ROOT, fake)
    return gaia_archive(ROOT, session=session), fake


def arcsec_offset(ra, dec, east_arcsec, north_arcsec):
    """Position offset by exact angles (arcsec) towards east and north."""
    moved = SkyCoord(ra, dec, unit="deg").spherical_offsets_by(east_arcsec * u.arcsec, north_arcsec * u.arcsec)
    return moved.ra.deg, moved.dec.deg
