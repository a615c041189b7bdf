"""The crop-template checks of a plot's season (design §7): ``SEASON_UNRECOGNISED`` and ``CROP_MISMATCH``.

A plot's NDVI series is explained by the region's crop calendars (:mod:`agricredit.cropfit` ranks the
explanations by fit); these checks compare the best explanation holding the plot's declared crop seasons
(:class:`Declared`) with the best overall, in the declared seasons' green periods as fitted.
:mod:`agricredit.season` runs them for every plot (:func:`_window_rmses` for all plots at once) and re-exports
the public names.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agricredit.cropfit import STEEPNESS_DAYS, SeasonFit, SystemFit, explanations_for, fitted_curves
from agricredit.flag import Flag
from agricredit.seeds import load_calendars, load_crops

__all__ = ["Declared", "MIN_GREEN_OBSERVATIONS", "template_flags"]

#: Observations in a declared season's fitted green period, none green, that show it was not grown.
MIN_GREEN_OBSERVATIONS = 2

_NAME = operator.attrgetter("name")


@dataclass(frozen=True)
class Declared:
    """One declared crop season of a plot: the crop and, optionally, its slot (``winter``, ``summer`` ...)."""

    crop: str
    slot: str | None = None

    @classmethod
    def parse(cls, text: str) -> Declared:
        """``"maize"`` or ``"maize:summer"``; ``"maize:single"`` (the year's only crop) names no slot."""
        crop, _, slot = str(text).partition(":")
        slot = slot.strip()
        return cls(crop.strip(), None if slot in ("", "single") else slot)

    def matches(self, season: Any) -> bool:
        """True when a :class:`~agricredit.seeds.CropSeason` is this crop (in this slot, if one was given)."""
        return season.crop == self.crop and (self.slot is None or season.slot == self.slot)


def _declared_of(value: Any) -> tuple[Declared, ...]:
    """A plot's declarations: ``None``, a crop (``"maize"``, ``"maize:summer"``) or a sequence of them."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return ()
    if isinstance(value, str):
        return _declared_text(value)
    return tuple(declared for item in value if item for declared in _declared_text(item))


@functools.lru_cache(maxsize=4096)
def _declared_text(text: str) -> tuple[Declared, ...]:
    """:func:`_declared_of` of one crop's text (cached: plots declaring the same crop share it)."""
    return (Declared.parse(text),)


def _window_mask(dates: np.ndarray, windows: Iterable[tuple[Any, Any]]) -> np.ndarray:
    mask = np.zeros(len(dates), dtype=bool)
    for lo, hi in windows:
        mask |= (dates >= np.datetime64(lo, "D")) & (dates <= np.datetime64(hi, "D"))
    return mask


def _holds_declared(fit: SystemFit, declared: Sequence[Declared]) -> bool:
    """True when every declared crop season is one of the fit's seasons."""
    return all(any(d.matches(x.season) for x in fit.seasons) for d in declared)


def _chosen_index(fits: Sequence[SystemFit], declared: Sequence[Declared]) -> int | None:
    """The position of the best of the ranked ``fits`` holding the declared crops (any fit without a declaration);
    ``None`` when none does."""
    return next((i for i, f in enumerate(fits) if _holds_declared(f, declared)), None)


@functools.lru_cache(maxsize=4096)
def _ranking_of(region: str, names: tuple[str, ...], declared: tuple[Declared, ...]
                ) -> tuple[str, int | None, tuple[int, ...]]:
    """What a plot's fits ranked as ``names`` (the region's explanations) tell of its declaration: the crop ranking
    text, :func:`_chosen_index`, and which seasons of the chosen fit (the first without a declaration, or when none
    holds the declared crops) are declared (all of them without a declaration). Cached: plots ranking alike share it.
    """
    seasons = {e.name: e.seasons for e in explanations_for(region)}
    chosen_at = next((i for i, name in enumerate(names)
                      if all(any(d.matches(x) for x in seasons[name]) for d in declared)), None)
    chosen = names[chosen_at if declared and chosen_at is not None else 0] if names else None
    own = tuple(i for i, x in enumerate(seasons.get(chosen, ())) if not declared or any(d.matches(x) for d in declared))
    return ";".join(names), chosen_at, own


#: :func:`_template_checks` without the chosen fit's position: it looks it up.
_UNKNOWN = object()


def _template_checks(row: dict[str, Any], fits: Sequence[SystemFit], declared: Sequence[Declared], region: str,
                     dates: np.ndarray, ndvi: np.ndarray, *, margin: float, max_fit_rmse: float,
                     window_rmse: np.ndarray | None = None, chosen_at: int | None | object = _UNKNOWN,
                     own: Sequence[SeasonFit] | None = None) -> list[Flag]:
    """``SEASON_UNRECOGNISED`` (nothing explains the series, or a declared crop has no calendar here) and ``CROP_MISMATCH``.

    Each declared crop is checked in its own window: its green period as fitted in the best
    explanation holding the declared crops (green-up to senescence, one logistic width
    inside). A declared season never seen there reaching the crop's ``cropped_ndvi_threshold``
    was not grown (``CROP_MISMATCH``) when at least :data:`MIN_GREEN_OBSERVATIONS`
    observations fall in it, else clouds hid it (``CLOUD_INSUFFICIENT``). Then the best
    explanation holding the declared crops is compared with the best explanation overall
    on the observations of the declared seasons' green periods (as fitted, widened by one
    logistic width), by RMSE there plus each fit's calendar prior. A declaration of one
    season of a double-cropped year is judged on that season only. ``window_rmse`` are the fits' RMSEs there
    (:func:`_window_rmses`) when already computed; ``chosen_at`` the position of the
    best fit holding the declared crops (:func:`_chosen_index`) when already looked up, and ``own`` that fit's
    declared seasons.
    """
    best = fits[0]
    no_calendar = _without_calendar(region, tuple(declared))
    chosen_at = _chosen_index(fits, declared) if chosen_at is _UNKNOWN else chosen_at
    chosen = fits[chosen_at] if chosen_at is not None else best
    row.update(best_crop=best.label, best_explanation=best.name, best_score=best.score, best_rmse=best.rmse,
               declared_explanation=chosen.name if declared else None, declared_score=np.nan)
    if no_calendar or best.rmse > max_fit_rmse:
        return [Flag("SEASON_UNRECOGNISED", {
            "region": region, "best_explanation": best.name, "best_rmse": best.rmse, "max_fit_rmse": max_fit_rmse,
            "declared_without_calendar": ";".join(no_calendar) or None,
        })]
    if not declared:
        return []
    if chosen_at is None:  # each crop has a calendar here, but no cropping system of the region grows them together
        return [Flag("CROP_MISMATCH", {
            "declared_crop": ";".join(d.crop for d in declared), "best_crop": best.label,
            "best_explanation": best.name, "declared_explanation": None, "declared_score": None,
            "best_score": best.score, "margin": margin, "method": "template",
        })]
    crops = load_crops()
    own = [x for x in chosen.seasons if any(d.matches(x.season) for d in declared)] if own is None else own
    greens, inside = _fitted_green_masks(np.asarray(dates, dtype="datetime64[D]").tobytes(),
                                         tuple((x.dates["greenup"], x.dates["senescence"]) for x in own))
    for x, green in zip(own, greens):  # each declared season must be seen green in its green period as fitted
        threshold = crops[x.season.crop].cropped_ndvi_threshold
        if np.maximum.reduce(ndvi[green], initial=-np.inf) >= threshold:  # seen green (-inf: never seen)
            continue
        figures = {"declared_crop": x.season.crop, "green_period": f"{x.dates['greenup']}/{x.dates['senescence']}",
                   "max_ndvi_in_green_period": float(ndvi[green].max()) if green.any() else None,
                   "observations": int(np.count_nonzero(green)), "cropped_ndvi_threshold": threshold}
        if np.count_nonzero(green) >= MIN_GREEN_OBSERVATIONS:
            return [Flag("CROP_MISMATCH", {**figures, "season_not_seen": x.season.key, "best_crop": best.label,
                                           "best_explanation": best.name, "method": "template"})]
        return [Flag("CLOUD_INSUFFICIENT", {**figures, "crop": x.season.crop, "green_period_unseen": True})]
    if inside is None:
        return []
    if window_rmse is None:
        window_rmse = _rmse_in(fitted_curves(fits, dates), ndvi, inside)
    # RMSE in the window + calendar prior, of each fit
    window_scores = [rmse + f.score - f.rmse for rmse, f in zip(window_rmse.tolist(), fits)]
    declared_score, best_score = window_scores[chosen_at], min(window_scores)
    row.update(declared_score=declared_score, best_window_score=best_score)
    if declared_score - best_score > margin:
        width = dt.timedelta(days=STEEPNESS_DAYS)
        return [Flag("CROP_MISMATCH", {
            "declared_crop": ";".join(d.crop for d in declared), "best_crop": best.label,
            "best_explanation": best.name, "declared_explanation": chosen.name,
            "declared_score": declared_score, "best_score": best_score, "margin": margin, "method": "template",
            "window": ";".join(f"{x.dates['greenup'] - width}/{x.dates['senescence'] + width}" for x in own),
        })]
    return []


@functools.lru_cache(maxsize=1024)
def _without_calendar(region: str, declared: tuple[Declared, ...]) -> list[str]:
    """The declared crops with no season in the region's calendar (cached: read only)."""
    seasons = load_calendars()[region].values()
    return sorted({d.crop for d in declared if not any(d.matches(s) for s in seasons)})


@functools.lru_cache(maxsize=8192)
def _fitted_green_masks(days: bytes, periods: tuple[tuple[dt.date, dt.date], ...]
                        ) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
    """Which observation days (the bytes of a ``datetime64[D]`` array) fall in each fitted green period
    ``(green-up, senescence)`` taken one logistic width inside, and in any of them widened by one logistic width
    (``None`` when none does).

    Cached (plots seen on the same days with the same fitted dates share them): read only.
    """
    dates = np.frombuffer(days, dtype="datetime64[D]")
    width = dt.timedelta(days=STEEPNESS_DAYS)
    masks = [_window_mask(dates, [(lo + width, hi - width)]) for lo, hi in periods]
    masks.append(_window_mask(dates, [(lo - width, hi + width) for lo, hi in periods]))
    for mask in masks:
        mask.flags.writeable = False
    return tuple(masks[:-1]), masks[-1] if masks[-1].any() else None


def _rmse_in(curves: np.ndarray, ndvi: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The RMSE of each curve (``... × fits × days``) to ``ndvi`` (``... × days``) on the days ``inside``."""
    residual = curves[..., inside] - ndvi[..., None, inside]
    return np.sqrt(np.add.reduce(residual**2, axis=-1) / residual.shape[-1])  # np.mean, without its wrapper


def _window_rmses(region: str, plots: Sequence[tuple[Sequence[SystemFit], tuple[Declared, ...], np.ndarray, np.ndarray]]
                  ) -> list[np.ndarray | None]:
    """Each plot's fits' RMSE in its declared seasons' window (:func:`_template_checks`), for all plots at once.

    ``plots`` are ``(ranked fits, declaration, days, ndvi)``: the observations the fits were made on. The window is
    the green periods, as fitted in the best fit holding the declared crops, widened by one logistic width
    (:func:`_fitted_green_masks`); plots with the same days, window and number of fits are computed together, with
    the same operations as one by one. ``None`` where the template checks compute none (no fit, no declaration, no
    fit holding it, no observation in the window).
    """
    out: list[np.ndarray | None] = [None] * len(plots)
    groups: dict[tuple[bytes, bytes, int], list[int]] = {}
    for k, (fits, declared, dates, _) in enumerate(plots):
        if not fits or not declared:
            continue
        _, chosen_at, own_at = _ranking_of(region, tuple(map(_NAME, fits)), declared)
        if chosen_at is None:
            continue
        seasons = fits[chosen_at].seasons
        days = np.asarray(dates, dtype="datetime64[D]").tobytes()
        _, inside = _fitted_green_masks(days, tuple((seasons[i].dates["greenup"], seasons[i].dates["senescence"])
                                                    for i in own_at))
        if inside is not None:
            groups.setdefault((days, inside.tobytes(), len(fits)), []).append(k)
    for (_, inside, n_fits), members in groups.items():
        # the curves (plots × fits × days) and NDVI (plots × days) copied in one concatenation each
        n_days = len(plots[members[0]][3])
        curves = np.concatenate([f.fitted for k in members for f in plots[k][0]], dtype=float).reshape(
            len(members), n_fits, n_days)
        ndvi = np.concatenate([plots[k][3] for k in members], dtype=float).reshape(len(members), n_days)
        for k, rmse in zip(members, _rmse_in(curves, ndvi, np.frombuffer(inside, dtype=bool))):
            out[k] = rmse
    return out


def template_flags(fits: Sequence[SystemFit], declared: Sequence[Declared], region: str, dates: np.ndarray,
                   ndvi: np.ndarray, *, crop_mismatch_margin: float, max_fit_rmse: float) -> list[Flag]:
    """The template checks of one plot (``SEASON_UNRECOGNISED``, ``CROP_MISMATCH``) for a declaration.

    Parameters
    ----------
    fits
        The plot's ranked explanations (``agricredit.season.SeasonResult.fits[plot_id]``, non-empty).
    declared
        The declared crop seasons (:class:`Declared`).
    region
        The region the fits were made in.
    dates, ndvi
        The observations the fits were made on (see :func:`agricredit.season.fit_observations`).
    crop_mismatch_margin, max_fit_rmse
        The ``[satellite]`` policy.
    """
    return _template_checks({}, fits, declared, region, dates, ndvi, margin=crop_mismatch_margin,
                            max_fit_rmse=max_fit_rmse)
