"""Loading and validating policy files (``seeds/policy.toml`` is the default).

A policy holds every number a decision depends on. It is a TOML file with five
sections, mirrored here by frozen dataclasses: ``[policy]`` (:class:`PolicyMeta`,
the attribute :attr:`Policy.meta`), ``[area]`` (:class:`AreaPolicy`),
``[satellite]`` (:class:`SatellitePolicy`) and ``[credit]`` (:class:`CreditPolicy`),
and two optional ones, ``[chain]`` (:class:`ChainPolicy`, the industry-chain
checks) and ``[monitor]`` (:class:`MonitorPolicy`, the in-season alerts and their
recommendations): when the file has no such section the defaults of
``seeds/policy.toml`` apply; when it has one, every key is required and
validated like the others.

Validation is strict: an unknown section or key, a missing key, a value of the
wrong type or out of range is a :class:`~agricredit.errors.PolicyError` whose
message names the file and the key (``section.key``).

A policy is identified by :attr:`Policy.sha256`, the hash of its canonical
values (:func:`canonical_policy_text`: sections and keys sorted, every number
in the type its key declares, so ``150000`` and ``150000.0`` or ``1.5e5`` are
one value), not of the file's bytes: comments, whitespace and key order do not
change it, any value does. An audit record embeds the values and this hash;
:func:`policy_from_record` refuses values that do not match it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from agricredit.cropfit import MAX_SCALE
from agricredit.errors import InputNotFoundError, PolicyError
from agricredit.seeds import DEFAULT_POLICY_PATH, load_regions

__all__ = ["Policy", "PolicyMeta", "AreaPolicy", "SatellitePolicy", "CreditPolicy", "ChainPolicy", "MonitorPolicy",
           "load_policy", "policy_from_record", "canonical_policy_text"]

INF = math.inf


def _range(low: float = -INF, high: float = INF, *, low_open: bool = False, high_open: bool = False) -> dict:
    return {"range": (low, high, low_open, high_open)}


@dataclass(frozen=True)
class PolicyMeta:
    """The ``[policy]`` section: name, version, currency and area unit."""

    name: str
    version: str
    currency: str
    area_unit: str = field(metadata={"choices": ("mu",)})


@dataclass(frozen=True)
class AreaPolicy:
    """The ``[area]`` section: tolerances of the area and geometry checks."""

    declared_over_tolerance: float = field(metadata=_range(0, 1))
    drawn_vs_registered_tolerance: float = field(metadata=_range(0, 1))
    unit_ratio_tolerance: float = field(metadata=_range(0, 0.5))
    double_claim_min_share: float = field(metadata=_range(0, 1))
    double_claim_min_area_m2: float = field(metadata=_range(0))
    repair_max_area_change: float = field(metadata=_range(0, 1))
    outline_accuracy_m: float = field(metadata=_range(0, 50))
    absurd_area_ratio: float = field(metadata=_range(1, low_open=True))


@dataclass(frozen=True)
class SatellitePolicy:
    """The ``[satellite]`` section: thresholds of the satellite checks and the vigor factor."""

    min_valid_fraction: float = field(metadata=_range(0, 1))
    min_observations_in_window: int = field(metadata=_range(1))
    min_pixel_count: float = field(metadata=_range(0))
    cultivated_min_share: float = field(metadata=_range(0, 1))
    max_sowing_shift_days: int = field(metadata=_range(0, 366))
    crop_mismatch_margin: float = field(metadata=_range(0))
    low_vigor_percentile: float = field(metadata=_range(0, 100))
    low_vigor_min_gap: float = field(metadata=_range(0, 1))
    vigor_factor_min: float = field(metadata=_range(0, 1, low_open=True))
    vigor_factor_max: float = field(metadata=_range(1))
    min_season_amplitude: float = field(metadata=_range(0, 2))
    min_peers: int = field(metadata=_range(1))
    shift_penalty: float = field(metadata=_range(0))
    crop_model_margin: float = field(metadata=_range(0, 1))
    region: str = field(metadata={"choices": ("auto", *load_regions())})
    max_fit_rmse: float = field(metadata=_range(0, 1, low_open=True))
    min_template_scale: float = field(metadata=_range(0, MAX_SCALE, low_open=True))
    min_covered_fraction: float = field(metadata=_range(0, 1))


@dataclass(frozen=True)
class CreditPolicy:
    """The ``[credit]`` section: the limit formula's numbers."""

    advance_rate: float = field(metadata=_range(0, 1, low_open=True))
    cap_per_borrower: float = field(metadata=_range(0, low_open=True))
    rounding_step: float = field(metadata=_range(0, low_open=True))
    min_limit: float = field(metadata=_range(0))


@dataclass(frozen=True)
class ChainPolicy:
    """The ``[chain]`` section: tolerances of the industry-chain checks (:mod:`agricredit.chain`).

    The defaults are those of ``seeds/policy.toml`` (used when a policy file has no ``[chain]``).
    """

    inputs_min_share: float = field(default=0.5, metadata=_range(0, 1))
    machinery_tolerance: float = field(default=0.15, metadata=_range(0, 1))
    other_crop_min_share: float = field(default=0.5, metadata=_range(0, 1, low_open=True))
    corroboration_min_partners: int = field(default=2, metadata=_range(2))
    corroboration_min_share: float = field(default=0.9, metadata=_range(0, 1, low_open=True))
    sales_seasons: int = field(default=3, metadata=_range(1, 20))
    sales_min_seasons: int = field(default=2, metadata=_range(1, 20))
    own_yield_max_factor: float = field(default=1.2, metadata=_range(1))
    sales_below_share: float = field(default=0.6, metadata=_range(0, 1))
    season_grace_days: int = field(default=60, metadata=_range(0, 366))


#: What a monitoring alert code asks for (``agricredit.monitor``), weakest first.
MONITOR_ACTIONS = ("keep", "visit", "reduce")


@dataclass(frozen=True)
class MonitorPolicy:
    """The ``[monitor]`` section: thresholds of the in-season alerts and the recommendation rules.

    The defaults are those of ``seeds/policy.toml`` (used when a policy file has no ``[monitor]``).
    """

    sudden_drop_min: float = field(default=0.25, metadata=_range(0, 2, low_open=True))
    sudden_drop_excess: float = field(default=0.20, metadata=_range(0, 2, low_open=True))
    drop_percentile: float = field(default=10.0, metadata=_range(0, 100))
    regional_drop_min: float = field(default=0.15, metadata=_range(0, 2, low_open=True))
    water_ndvi_max: float = field(default=0.10, metadata=_range(-1, 1))
    growth_lag_gap: float = field(default=0.20, metadata=_range(0, 2, low_open=True))
    growth_lag_percentile: float = field(default=10.0, metadata=_range(0, 100))
    no_emergence_action: str = field(default="reduce", metadata={"choices": MONITOR_ACTIONS})
    growth_lag_action: str = field(default="visit", metadata={"choices": MONITOR_ACTIONS})
    sudden_drop_action: str = field(default="reduce", metadata={"choices": MONITOR_ACTIONS})
    regional_stress_action: str = field(default="keep", metadata={"choices": MONITOR_ACTIONS})
    early_harvest_action: str = field(default="visit", metadata={"choices": MONITOR_ACTIONS})
    freeze_min_share: float = field(default=0.5, metadata=_range(0, 1, low_open=True))


_SECTIONS: dict[str, type] = {
    "policy": PolicyMeta,
    "area": AreaPolicy,
    "satellite": SatellitePolicy,
    "credit": CreditPolicy,
    "chain": ChainPolicy,
    "monitor": MonitorPolicy,
}
#: Sections a policy file may leave out (their dataclass defaults apply).
_OPTIONAL_SECTIONS = ("chain", "monitor")


@dataclass(frozen=True)
class Policy:
    """A validated policy.

    Attributes
    ----------
    meta, area, satellite, credit, chain, monitor
        The file's ``[policy]``, ``[area]``, ``[satellite]``, ``[credit]``, ``[chain]`` and ``[monitor]`` sections.
    path
        Where the policy was read from (for messages; not part of :meth:`to_dict`).
    """

    meta: PolicyMeta
    area: AreaPolicy
    satellite: SatellitePolicy
    credit: CreditPolicy
    chain: ChainPolicy = ChainPolicy()
    monitor: MonitorPolicy = MonitorPolicy()
    path: str = field(default="", compare=False)

    def values(self) -> dict[str, dict[str, Any]]:
        """Return the policy's values as ``{section: {key: value}}`` (the sections of the TOML file)."""
        return {section: dataclasses.asdict(getattr(self, attribute))
                for section, attribute in zip(_SECTIONS, ("meta", "area", "satellite", "credit", "chain", "monitor"))}

    @functools.cached_property
    def sha256(self) -> str:
        """sha256 (hex) of :func:`canonical_policy_text`: it names the policy in manifests and audit records."""
        return hashlib.sha256(canonical_policy_text(self.values()).encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """Return the policy as ``{section: {key: value}}`` plus its ``sha256`` (for audit records)."""
        return {"sha256": self.sha256, **self.values()}


#: Prefix of the hashed text, so that a policy hash cannot be confused with the hash of another document.
_CANONICAL_PREFIX = "agricredit.policy/1\n"


def canonical_policy_text(values: dict[str, dict[str, Any]]) -> str:
    """Return the canonical text of validated policy values, the input of :attr:`Policy.sha256`.

    Parameters
    ----------
    values
        ``{section: {key: value}}`` as :meth:`Policy.values` gives, i.e. after
        validation, where every number already has its key's type (a float key
        given as ``150000`` holds ``150000.0``).

    Returns
    -------
    str
        ``agricredit.policy/1`` and a newline, then JSON with sorted keys, no
        spaces, non-ASCII kept, floats in Python's shortest round-trip form.
    """
    return _CANONICAL_PREFIX + json.dumps(values, sort_keys=True, ensure_ascii=False, allow_nan=False,
                                          separators=(",", ":"))


def _check_value(value: Any, spec: dataclasses.Field, key: str, path: Path) -> Any:
    kind = spec.type if isinstance(spec.type, type) else {"str": str, "int": int, "float": float}[spec.type]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PolicyError(f"{key} must be {kind.__name__}, got {type(value).__name__} {value!r}", path=path)
    if kind is float and not math.isfinite(value):
        raise PolicyError(f"{key} must be a finite number, got {value!r}", path=path)
    if "choices" in spec.metadata and value not in spec.metadata["choices"]:
        raise PolicyError(f"{key} must be one of {list(spec.metadata['choices'])}, got {value!r}", path=path)
    if "range" in spec.metadata:
        low, high, low_open, high_open = spec.metadata["range"]
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == INF else ']'}"
            raise PolicyError(f"{key} = {value!r} is out of range {bounds}", path=path)
    return value


def _build_section(cls: type, section: str, table: Any, path: Path) -> Any:
    if not isinstance(table, dict):
        raise PolicyError(f"[{section}] must be a table", path=path)
    specs = {spec.name: spec for spec in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(specs))
    if unknown:
        raise PolicyError(f"unknown key {section}.{unknown[0]}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""), path=path)
    values = {}
    for name, spec in specs.items():
        if name not in table:
            raise PolicyError(f"missing key {section}.{name}", path=path)
        values[name] = _check_value(table[name], spec, f"{section}.{name}", path)
    return cls(**values)


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate a policy file.

    Parameters
    ----------
    path
        A TOML policy file; ``None`` reads the bundled default ``seeds/policy.toml``.

    Returns
    -------
    Policy
        The validated policy (its :attr:`~Policy.sha256` is that of its canonical values).

    Raises
    ------
    InputNotFoundError
        The file cannot be read.
    PolicyError
        The file is not TOML, or a section/key is unknown or missing, or a value
        has the wrong type or is out of range (the message names file and key).
    """
    path = Path(DEFAULT_POLICY_PATH if path is None else path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputNotFoundError(f"cannot read policy: {error.strerror}", path=path) from error
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PolicyError(f"not a valid UTF-8 TOML file ({error})", path=path) from error
    return _from_document(document, path)


def _from_document(document: dict[str, Any], path: Path) -> Policy:
    unknown = sorted(set(document) - set(_SECTIONS))
    if unknown:
        raise PolicyError(f"unknown section [{unknown[0]}]", path=path)
    sections = []
    for section, cls in _SECTIONS.items():
        if section not in document and section in _OPTIONAL_SECTIONS:
            sections.append(cls())
            continue
        if section not in document:
            raise PolicyError(f"missing section [{section}]", path=path)
        sections.append(_build_section(cls, section, document[section], path))
    meta, area, satellite, credit, chain, monitor = sections
    if satellite.vigor_factor_min > 1 or satellite.vigor_factor_max < 1:
        raise PolicyError("satellite.vigor_factor_min <= 1 <= satellite.vigor_factor_max is required", path=path)
    unit_ratio = 15 * (1 + area.unit_ratio_tolerance)
    if area.absurd_area_ratio <= unit_ratio:
        raise PolicyError(f"area.absurd_area_ratio must exceed 15 x (1 + area.unit_ratio_tolerance) = {unit_ratio:g}, "
                          "or a unit confusion would reject the plot instead of sending it to review", path=path)
    if credit.min_limit > credit.cap_per_borrower:
        raise PolicyError("credit.min_limit must not exceed credit.cap_per_borrower", path=path)
    if chain.sales_min_seasons > chain.sales_seasons:
        raise PolicyError("chain.sales_min_seasons must not exceed chain.sales_seasons", path=path)
    return Policy(meta, area, satellite, credit, chain, monitor, path=str(path))


def policy_from_record(record: Any, *, source: str = "audit record") -> Policy:
    """Rebuild the policy embedded in an audit record (:meth:`Policy.to_dict`), validated like a file.

    Parameters
    ----------
    record
        The record's ``policy`` member: the values and their ``sha256``.
    source
        Where the record is (file and line), for messages.

    Raises
    ------
    PolicyError
        No policy with a sha256, values that do not validate, or values whose
        canonical hash is not the recorded ``sha256`` (they were changed after
        the record was written: the issue's advance rate 0.6 → 1.0 with the
        hash left as it was).
    """
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise PolicyError("no policy with a sha256 in the record", path=source)
    policy = _from_document({key: value for key, value in record.items() if key != "sha256"}, Path(source))
    if policy.sha256 != record["sha256"]:
        raise PolicyError(f"the embedded policy does not match its recorded sha256 {record['sha256'][:12]}… "
                          f"(its values hash to {policy.sha256[:12]}…): the policy was changed after the record "
                          "was written", path=source)
    return policy

