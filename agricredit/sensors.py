"""Sensor facts: band names, radiometric scale/offset and cloud/quality mask rules.

Pure functions over numbers, names and numpy arrays; no file access (that is
:mod:`agricredit.raster`). The facts are those of design §4:

- Sentinel-2 L2A/L1C: B04 red, B08 NIR (10 m); reflectance = (DN + ADD_OFFSET) / 10000
  with ADD_OFFSET = -1000 from processing baseline 04.00 on, 0 before; DN 0 = no data.
  L2A carries the scene classification SCL (20 m), invalid classes 0,1,3,8,9,10 by default.
- Landsat Collection 2 L2: red and NIR by spacecraft (MTL ``SPACECRAFT_ID``): Landsat 4/5 TM
  and 7 ETM+ SR_B3 red, SR_B4 NIR; Landsat 8/9 OLI SR_B4 red, SR_B5 NIR; reflectance =
  DN x 0.0000275 - 0.2 for every one of them; fill 0; QA_PIXEL bits 0 fill, 1 dilated cloud,
  2 cirrus, 3 cloud, 4 cloud shadow; QA_RADSAT marks saturated bands and defective pixels.
- Landsat Collection 1 L1: B3/B4 (TM, ETM+) or B4/B5 (OLI), BQA quality band (see :func:`bqa_c1_mask`).
- Sentinel-2 L1C cloud mask from the product: ``MSK_CLASSI_B00.jp2`` (baseline 04.00 on; band 1
  opaque clouds, 2 cirrus, 3 snow/ice) or the ``MSK_CLOUDS_B00.gml`` polygons (before 04.00).
- The largest DN of an unsigned integer product (65535 in uint16) is saturation, never a reading.

Every mask function returns ``(fill, cloud)``: ``fill`` marks pixels outside the
acquisition (no data), ``cloud`` the pixels a cloud or quality rule removed.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable

import numpy as np

__all__ = [
    "SENSORS",
    "QUALITY_BANDS",
    "DEFAULT_SCL_INVALID",
    "S2_QUANTIFICATION",
    "LANDSAT_C2_SCALE",
    "LANDSAT_C2_OFFSET",
    "LANDSAT_C1_SCALE",
    "LANDSAT_C1_OFFSET",
    "parse_baseline",
    "s2_add_offset",
    "parse_date",
    "parse_mask_classes",
    "LANDSAT_INSTRUMENTS",
    "landsat_spacecraft",
    "landsat_bands",
    "radsat_bits",
    "bits_set",
    "msk_classi_mask",
    "apply_defect_rule",
    "sensor_from_band_names",
    "band_token",
    "mask_rule_for",
    "apply_mask_rule",
    "scl_mask",
    "qa_pixel_mask",
    "bqa_c1_mask",
    "bqa_precollection_mask",
    "bqa_is_precollection",
]

#: Sensor ids accepted by ``--sensor`` (plus ``'ndvi'`` for NDVI rasters written by this tool).
SENSORS = ("s2-l2a", "s2-l1c", "landsat-c2-l2", "landsat-c1", "generic")

#: The quality band each sensor's products carry (None: Sentinel-2 L1C has its masks in QI_DATA).
#: Red/NIR names: B04/B08 for Sentinel-2; Landsat's depend on the spacecraft (:func:`landsat_bands`).
QUALITY_BANDS: dict[str, str | None] = {"s2-l2a": "SCL", "s2-l1c": None, "landsat-c2-l2": "QA_PIXEL", "landsat-c1": "BQA"}

#: Sentinel-2 SCL classes removed by default: 0 no data, 1 saturated/defective,
#: 3 cloud shadow, 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus.
DEFAULT_SCL_INVALID = (0, 1, 3, 8, 9, 10)

#: Sentinel-2 QUANTIFICATION_VALUE (DN of reflectance 1.0).
S2_QUANTIFICATION = 10000.0
#: Processing baseline from which the -1000 add offset applies.
S2_OFFSET_BASELINE = (4, 0)
S2_ADD_OFFSET = -1000.0

#: Landsat Collection 2 Level-2 surface reflectance scale and offset (USGS).
LANDSAT_C2_SCALE = 0.0000275
LANDSAT_C2_OFFSET = -0.2
#: Landsat instrument of each spacecraft (MTL ``SPACECRAFT_ID``); Landsat 1-5 MSS products are not supported.
LANDSAT_INSTRUMENTS = {"LANDSAT_4": "TM", "LANDSAT_5": "TM", "LANDSAT_7": "ETM+", "LANDSAT_8": "OLI", "LANDSAT_9": "OLI"}
#: (red, NIR) band numbers per instrument: TM/ETM+ band 3 red (0.63-0.69 um), band 4 NIR (0.76-0.90 um);
#: OLI band 4 red (0.64-0.67 um), band 5 NIR (0.85-0.88 um). USGS Landsat 4-7 and 8-9 C2 L2 product guides.
LANDSAT_RED_NIR = {"TM": (3, 4), "ETM+": (3, 4), "OLI": (4, 5)}
#: QA_RADSAT bit of a defective pixel: bit 9 "dropped pixel" (TM/ETM+), bit 11 "terrain occlusion" (OLI).
#: Bit n-1 marks band n saturated. USGS "Landsat Collection 2 Quality Assessment Bands".
_RADSAT_DEFECT_BIT = {"TM": 9, "ETM+": 9, "OLI": 11}

#: Landsat 8 Collection 1 L1 TOA reflectance REFLECTANCE_MULT/ADD_BAND_4/5 (the same for
#: both bands in every MTL); the sun-elevation division cancels in the NDVI ratio.
LANDSAT_C1_SCALE = 2.0e-5
LANDSAT_C1_OFFSET = -0.1


def parse_baseline(text: str | float | None) -> tuple[int, int] | None:
    """Parse a Sentinel-2 processing baseline (``"04.00"``, ``"N0400"``, ``4.0``) to (major, minor).

    Returns None if ``text`` is None or not a baseline.
    """
    if text is None:
        return None
    s = str(text).strip().upper()
    match = re.fullmatch(r"N?(\d{2})\.?(\d{2})", s) or re.fullmatch(r"(\d{1,2})\.(\d{1,2})", s)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def s2_add_offset(baseline: str | float) -> float:
    """Return the Sentinel-2 BOA/RADIO add offset in DN for a processing baseline.

    Parameters
    ----------
    baseline
        Processing baseline, e.g. ``"04.00"``, ``"02.14"`` or ``"N0400"``.

    Returns
    -------
    float
        -1000.0 for baselines 04.00 and later, 0.0 before.

    Raises
    ------
    ValueError
        If ``baseline`` is not a baseline.
    """
    parsed = parse_baseline(baseline)
    if parsed is None:
        raise ValueError(f"not a processing baseline: {baseline!r} (expected e.g. 04.00)")
    return S2_ADD_OFFSET if parsed >= S2_OFFSET_BASELINE else 0.0


_DATE_RE = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


def parse_date(text: str | None) -> datetime.date | None:
    """Return the first valid ``YYYYMMDD`` or ``YYYY-MM-DD`` date in ``text`` (None if none)."""
    if not text:
        return None
    for match in _DATE_RE.finditer(text):
        year, month, day = (int(g) for g in match.groups())
        if 1970 <= year <= 2100:
            try:
                return datetime.date(year, month, day)
            except ValueError:
                continue
    return None


def parse_mask_classes(text: str | Iterable[int] | None) -> tuple[int, ...]:
    """Parse ``"0,1,3,8,9,10"`` (or an iterable of ints) into a sorted tuple of SCL classes."""
    if text is None:
        return DEFAULT_SCL_INVALID
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        classes = tuple(sorted({int(str(item).strip()) for item in items if str(item).strip()}))
    except ValueError:
        raise ValueError(f"mask classes must be integers 0-11, got {text!r}") from None
    if any(c < 0 or c > 11 for c in classes):
        raise ValueError(f"SCL classes are 0-11, got {text!r}")
    return classes


def _token(name: str) -> re.Pattern[str]:
    # A band name as a whole token inside a file name: l8_B4.tif, T31_B04_10m.jp2, ..._SR_B4.TIF
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", re.IGNORECASE)


def sensor_from_band_names(names: Iterable[str]) -> str | None:
    """Guess the sensor from band names or file names (None if no rule fits).

    Landsat C2 is recognised by ``SR_B4`` with ``SR_B3`` or ``SR_B5`` (red/NIR of TM/ETM+
    or OLI), Sentinel-2 by ``B04``/``B08`` (L2A if an ``SCL`` is present, else L1C),
    Landsat C1 by ``B4`` with ``B3`` or ``B5``.
    """
    names = list(names)

    def has(band: str) -> bool:
        return any(band_token(band).search(n) for n in names)

    if has("SR_B4") and (has("SR_B3") or has("SR_B5")):
        return "landsat-c2-l2"
    if has("B04") and has("B08"):
        return "s2-l2a" if has("SCL") else "s2-l1c"
    if has("B4") and (has("B3") or has("B5")):
        return "landsat-c1"
    return None


def band_token(name: str) -> re.Pattern[str]:
    """Regular expression matching band ``name`` as a token of a file name."""
    if re.fullmatch(r"B\d", name):
        # Collection 1 "B4" must not match Collection 2 "SR_B4" or "ST_B6".
        return re.compile(rf"(?<![A-Za-z0-9])(?<!SR_)(?<!ST_){name}(?![A-Za-z0-9])", re.IGNORECASE)
    return _token(name)


_LANDSAT_NAME = re.compile(r"(?<![A-Za-z0-9])L(?:ANDSAT)?[_-]?[COTEM]?0?([1-9])(?=[_\W]|$)", re.IGNORECASE)


def landsat_spacecraft(text: str | None) -> str | None:
    """The Landsat spacecraft (``'LANDSAT_5'``) a text names, or None.

    Reads an MTL ``SPACECRAFT_ID`` (``LANDSAT_5``), a Collection product ID
    (``LT05_L2SP_...``), a pre-collection scene ID (``LT51240322011...``) or a short
    name (``l8_B4.tif``, ``landsat-9``).
    """
    if not text:
        return None
    text = str(text).strip()
    match = re.fullmatch(r"LANDSAT[_ -]?(\d)", text, re.IGNORECASE) or re.match(r"L[COTEM]0?(\d)", text)
    match = match or _LANDSAT_NAME.search(text)
    return f"LANDSAT_{match.group(1)}" if match else None


def landsat_bands(sensor: str, spacecraft: str) -> dict[str, str]:
    """Red and NIR band names of a Landsat product (``'landsat-c2-l2'`` or ``'landsat-c1'``) by spacecraft.

    Raises
    ------
    ValueError
        For a spacecraft without red/NIR bands this tool supports (Landsat 1-5 MSS).
    """
    instrument = LANDSAT_INSTRUMENTS.get(spacecraft)
    if instrument is None:
        raise ValueError(f"{spacecraft} is not supported (Landsat 4/5 TM, 7 ETM+, 8/9 OLI are)")
    red, nir = LANDSAT_RED_NIR[instrument]
    prefix = "SR_B" if sensor == "landsat-c2-l2" else "B"
    return {"red": f"{prefix}{red}", "nir": f"{prefix}{nir}"}


def radsat_bits(spacecraft: str) -> tuple[int, ...]:
    """QA_RADSAT bits that make a red/NIR reading invalid: red and NIR saturated, and the defect bit."""
    instrument = LANDSAT_INSTRUMENTS[spacecraft]
    red, nir = LANDSAT_RED_NIR[instrument]
    return red - 1, nir - 1, _RADSAT_DEFECT_BIT[instrument]


def bits_set(qa: np.ndarray, bits: Iterable[int]) -> np.ndarray:
    """True where any of ``bits`` is set in the integer array ``qa``."""
    mask = sum(1 << b for b in bits)
    return (qa.astype(np.uint32, copy=False) & mask).astype(bool)


def apply_defect_rule(rule: str, band: np.ndarray) -> np.ndarray:
    """Pixels a defect rule marks saturated or defective (``qa_radsat:B1,B2,...``: any of the bits set)."""
    name, _, bits = rule.partition(":")
    if name != "qa_radsat" or not bits:
        raise ValueError(f"unknown defect rule {rule!r}")
    return bits_set(band, (int(b) for b in bits.split(",")))


def msk_classi_mask(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sentinel-2 L1C ``MSK_CLASSI_B00`` (bands, rows, cols): cloud = band 1 opaque or band 2 cirrus.

    Band 3 (snow/ice) is not a cloud and is left alone, as SCL class 11 is by default.
    """
    return np.zeros(stack.shape[1:], bool), (stack[0] != 0) | (stack[1] != 0)


def scl_mask(scl: np.ndarray, classes: Iterable[int] = DEFAULT_SCL_INVALID) -> tuple[np.ndarray, np.ndarray]:
    """Sentinel-2 scene classification: class 0 is no data (fill); other listed classes are cloud/quality."""
    classes = [c for c in classes if c != 0]
    fill = scl == 0
    if scl.dtype.kind == "u" and scl.dtype.itemsize <= 2:  # a look-up table: several times faster than np.isin
        listed = np.zeros(1 << (8 * scl.dtype.itemsize), bool)
        listed[[c for c in classes if 0 <= c < len(listed)]] = True
        return fill, np.take(listed, scl)  # (take: faster than indexing with integer arrays)
    cloud = np.isin(scl, classes) if classes else np.zeros(scl.shape, bool)
    return fill, cloud


def qa_pixel_mask(qa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landsat Collection 2 QA_PIXEL: bit 0 fill; bits 1-4 (dilated cloud, cirrus, cloud, shadow) cloud."""
    qa = qa.astype(np.uint16, copy=False)
    return (qa & 1).astype(bool), (qa & 0b11110).astype(bool)


def _high_confidence(qa: np.ndarray, *firsts: int) -> np.ndarray:
    """True where any 2-bit confidence field starting at one of bits ``firsts`` is 3 (high)."""
    return np.logical_or.reduce([(qa >> first) & 0b11 == 3 for first in firsts])


def bqa_c1_mask(bqa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landsat 8 Collection 1 Level-1 BQA.

    Bit layout (USGS "Landsat Collection 1 Level-1 Quality Assessment Band"; the same
    table is quoted in the Earth Engine catalogue for LANDSAT/LC08/C01 "BQA" and in
    mapbox/rio-l8qa docs/collections.md): bit 0 designated fill, bit 1 terrain
    occlusion, bits 2-3 radiometric saturation, bit 4 cloud, bits 5-6 cloud
    confidence, bits 7-8 cloud shadow confidence, bits 9-10 snow/ice confidence,
    bits 11-12 cirrus confidence (0 not determined, 1 low, 2 medium, 3 high).

    Rule: fill = bit 0; cloud = bit 4, or high (3) cloud, cloud-shadow or cirrus confidence.
    """
    qa = bqa.astype(np.uint16, copy=False)
    fill = (qa & 1).astype(bool)
    cloud = ((qa >> 4) & 1).astype(bool) | _high_confidence(qa, 5, 7, 11)
    return fill, cloud & ~fill


def bqa_precollection_mask(bqa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landsat 8 pre-collection BQA (products from before 2017; Landsat 8 Data Users Handbook v1 §5.4).

    Bit 0 designated fill, bit 1 dropped frame, bit 2 terrain occlusion, bits 4-5 water,
    bits 6-7 cloud shadow (unused), bits 10-11 snow/ice, bits 12-13 cirrus, bits 14-15 cloud
    confidence (mapbox/rio-l8qa ``qa_pre.py`` uses the same layout).

    Rule: fill = bit 0; cloud = high (3) cloud, cirrus or cloud-shadow confidence.
    """
    qa = bqa.astype(np.uint16, copy=False)
    fill = (qa & 1).astype(bool)
    cloud = _high_confidence(qa, 14, 12, 6)
    return fill, cloud & ~fill


def bqa_is_precollection(sample: np.ndarray) -> bool:
    """True if a BQA sample uses the pre-collection layout.

    Collection 1 leaves bits 13-15 unused (always 0); the pre-collection layout stores
    the cloud confidence there, which is set on almost every non-fill pixel.
    """
    return bool(np.any(sample.astype(np.uint16) & 0xE000))


def _nonzero_mask(band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An external or generic mask band: no fill; nonzero = cloud."""
    return np.zeros(band.shape, bool), band != 0


#: Mask rule ids (besides ``scl:C1,C2,...``) and the mask functions they name.
_RULES = {
    "qa_pixel:bits0-4": qa_pixel_mask,
    "bqa-c1": bqa_c1_mask,
    "bqa-pre": bqa_precollection_mask,
    "nonzero": _nonzero_mask,
    "msk_classi:opaque,cirrus": msk_classi_mask,
}


def mask_rule_for(sensor: str, mask_classes: Iterable[int] | None = None) -> str:
    """The default mask rule id of a sensor (written to the ``MASK_RULE`` tag)."""
    if sensor == "s2-l2a":
        return "scl:" + ",".join(str(c) for c in parse_mask_classes(mask_classes))
    return {"landsat-c2-l2": "qa_pixel:bits0-4", "landsat-c1": "bqa-c1"}.get(sensor, "none")


def apply_mask_rule(rule: str, band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a mask rule id (see :func:`mask_rule_for`) to a quality band, return ``(fill, cloud)``.

    Rules: ``scl:C1,C2,...``, ``qa_pixel:bits0-4``, ``bqa-c1``, ``bqa-pre``,
    ``msk_classi:opaque,cirrus`` (``band`` holds the mask's bands first) and ``nonzero``
    (an external or generic mask band: nonzero = cloud).
    """
    if rule.startswith("scl:"):
        return scl_mask(band, parse_mask_classes(rule[4:]))
    if rule not in _RULES:
        raise ValueError(f"unknown mask rule {rule!r}")
    return _RULES[rule](band)
