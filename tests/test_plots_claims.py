"""Overlaps and repeated areas from one spatial query, only the outlines that share area shrunk: the same figures,
to the bit, as a plain plot-by-plot reading (every pair, every outline shrunk, pyproj's area of each geometry)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely

from agricredit import plots as P

GEOD = pyproj.Geod(ellps="WGS84")


def _area(geom) -> float:
    """pyproj's own geodesic area of one WGS84 geometry (shells counter-clockwise, so holes subtract)."""
    return abs(GEOD.geometry_area_perimeter(shapely.orient_polygons(geom))[0])


def plain_overlaps(wgs, ids, tolerance_m2, outline_accuracy_m):
    outlines = P.shrink_outlines(wgs, outline_accuracy_m) if outline_accuracy_m > 0 else wgs
    found = {}
    for i in range(len(wgs)):
        for j in range(i + 1, len(wgs)):
            a, b = outlines[i], outlines[j]
            if a is None or b is None or not a.intersects(b) or a.touches(b):
                continue
            area = _area(a.intersection(b))
            if np.isfinite(area) and area > tolerance_m2:
                found.setdefault(ids[i], []).append((ids[j], round(area, 2)))
                found.setdefault(ids[j], []).append((ids[i], round(area, 2)))
    return [sorted(found.get(pid, [])) for pid in ids]


def plain_repeated(wgs, ids, owners):
    repeated = []
    for i in range(len(wgs)):
        earlier = [j for j in range(len(wgs)) if owners[j] == owners[i] and ids[j] < ids[i]
                   and wgs[i].intersects(wgs[j]) and not wgs[i].touches(wgs[j])]
        shared = shapely.intersection(wgs[i], shapely.union_all([wgs[j] for j in _tree_order(wgs, i, earlier)]))
        repeated.append(_area(shared) if earlier else 0.0)
    return repeated


def _tree_order(wgs, i, earlier):
    """``earlier`` in the order the spatial index visits them for plot ``i`` (a union's vertices follow its inputs)."""
    visited = shapely.STRtree(wgs).query(wgs[i], predicate="intersects").tolist()
    return sorted(earlier, key=visited.index)


def _as_lists(found):
    return [sorted((o["plot_id"], o["shared_m2"]) for o in items) for items in found]


def _field(lon, lat, width_m, height_m, zone):
    """A width × height m rectangle with its south-west corner at (lon, lat), straight in the UTM zone."""
    to_utm = pyproj.Transformer.from_crs(4326, 32600 + zone, always_xy=True)
    x, y = to_utm.transform(lon, lat)
    return shapely.box(x, y, x + width_m, y + height_m), 32600 + zone


def _county(seed):
    """Plots of every kind near 36° N: in UTM 50 and across the 49/50 zone edge (114° E); overlapping by bands
    around twice the shrink, touching, with holes, multipolygons, a field drawn twice by one borrower."""
    rng = np.random.default_rng(seed)
    wgs, owners = [], []

    def add(geom, epsg, owner):
        wgs.append(gpd.GeoSeries([geom], crs=epsg).to_crs(4326).values[0])
        owners.append(owner)

    for lon in (113.9985, 117.0):  # a row of fields straddling the zone edge, and one well inside zone 50
        zone = 49 if lon < 114 else 50
        x = 0.0
        base, epsg = _field(lon, 36.0, 1, 1, zone)
        for k in range(8):
            width = float(rng.uniform(40, 120))
            band = float(rng.choice([0.0, 4.9, 5.0, 5.1, 6.0, 12.0]))  # overlap with the previous field
            x0 = x - band
            geom = shapely.box(base.bounds[0] + x0, base.bounds[1], base.bounds[0] + x0 + width, base.bounds[1] + 80)
            if k == 3:
                geom = geom.difference(shapely.box(geom.bounds[0] + 10, geom.bounds[1] + 10,
                                                   geom.bounds[0] + 25, geom.bounds[1] + 30))  # a hole
            if k == 5:
                geom = shapely.MultiPolygon([geom, shapely.box(geom.bounds[0], geom.bounds[1] - 60,
                                                               geom.bounds[0] + 30, geom.bounds[1] - 20)])
            add(geom, epsg, f"B{int(rng.integers(0, 3))}")
            x = x0 + width
        twice = shapely.box(base.bounds[0], base.bounds[1] + 200, base.bounds[0] + 50, base.bounds[1] + 260)
        add(twice, epsg, "B9")
        add(shapely.affinity.translate(twice, 3.0, 0.0), epsg, "B9")  # drawn again, shifted 3 m
        add(shapely.affinity.translate(twice, 25.0, 0.0), epsg, "B8")  # another borrower's, half over it
    ids = [f"P{k:02d}" for k in rng.permutation(len(wgs))]
    return gpd.GeoDataFrame({"plot_id": ids, "borrower_id": owners}, geometry=wgs, crs="EPSG:4326")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("outline_accuracy_m", [0.0, 2.5])
def test_overlaps_and_repeats_are_the_plain_pairwise_figures(seed, outline_accuracy_m):
    plots = _county(seed)
    wgs, ids, owners = plots.geometry.values, plots["plot_id"].tolist(), plots["borrower_id"].tolist()
    found, repeated = P.overlaps_and_repeats(plots, outline_accuracy_m=outline_accuracy_m)
    plain = plain_overlaps(np.asarray(wgs, dtype=object), ids, 1.0, outline_accuracy_m)
    assert _as_lists(found) == plain
    assert sum(map(len, plain)) >= 6  # the county has overlaps to find
    assert repeated.tolist() == plain_repeated(np.asarray(wgs, dtype=object), ids, owners)
    assert (repeated > 0).sum() >= 1
    # the separate functions give the same
    assert _as_lists(P.find_overlaps(plots, outline_accuracy_m=outline_accuracy_m)) == plain
    assert P.repeated_area_m2(plots).tolist() == repeated.tolist()
    for items in found:  # each plot's partners in the order of the plots
        positions = [ids.index(o["plot_id"]) for o in items]
        assert positions == sorted(positions)


def test_the_shrink_takes_off_bands_up_to_twice_the_outline_accuracy():
    field, epsg = _field(117.0, 36.0, 100, 80, 50)
    found = {}
    for band in (4.9, 5.0, 5.1):
        other = shapely.affinity.translate(field, 100 - band, 0)
        pair = gpd.GeoDataFrame({"plot_id": ["A", "B"], "borrower_id": ["B1", "B2"]}, geometry=[field, other],
                                crs=epsg)
        found[band], _ = P.overlaps_and_repeats(pair, tolerance_m2=0.01, outline_accuracy_m=2.5)
    assert found[4.9] == found[5.0] == [[], []]
    assert found[5.1][0][0]["plot_id"] == "B" and found[5.1][0][0]["shared_m2"] == pytest.approx(0.1 * 75, rel=0.01)


def test_the_tolerance_at_and_around_the_shared_area():
    field, epsg = _field(117.0, 36.0, 100, 80, 50)
    pair = gpd.GeoDataFrame({"plot_id": ["A", "B"], "borrower_id": ["B1", "B2"]},
                            geometry=[field, shapely.affinity.translate(field, 90, 0)], crs=epsg)
    shared = P.overlaps_and_repeats(pair, tolerance_m2=0.0, outline_accuracy_m=2.5)[0][0][0]["shared_m2"]
    assert shared == pytest.approx(5 * 75, rel=0.01)  # the 10 m band less 2 x 2.5 m, 80 m less 2 x 2.5 m
    for tolerance, kept in ((shared - 0.01, True), (shared + 0.01, False)):
        assert bool(P.overlaps_and_repeats(pair, tolerance_m2=tolerance, outline_accuracy_m=2.5)[0][0]) is kept


def test_geodesic_areas_of_a_mix_of_polygons_are_pyprojs_per_geometry_to_the_bit():
    # plain polygons (measured on their own coordinates) shuffled among polygons with holes and multipolygons
    # (split into parts and rings): each figure lands on its own geometry, summed in pyproj's order
    rng = np.random.default_rng(7)
    geoms = []
    for k in range(60):
        field, epsg = _field(117.0 + 0.01 * k, 36.0, float(rng.uniform(30, 300)), float(rng.uniform(30, 300)), 50)
        x0, y0, x1, y1 = field.bounds
        kind = k % 4
        if kind == 1:
            field = field.difference(shapely.box(x0 + 5, y0 + 5, x0 + 20, y0 + 20))
        elif kind == 2:
            field = shapely.MultiPolygon([field, shapely.box(x1 + 10, y0, x1 + 40, y0 + 25)])
        elif kind == 3:
            field = shapely.MultiPolygon([field.difference(shapely.box(x0 + 5, y0 + 5, x0 + 20, y0 + 20)),
                                          shapely.box(x1 + 10, y0, x1 + 40, y0 + 25).reverse()])
        geoms.append(gpd.GeoSeries([field], crs=epsg).to_crs(4326).values[0])
    geoms = np.array(geoms, dtype=object)[rng.permutation(len(geoms))]
    area, perimeter = P.geodesic_area_perimeter(geoms)
    expected = [GEOD.geometry_area_perimeter(g) for g in shapely.orient_polygons(geoms)]
    assert area.tolist() == [abs(a) for a, _ in expected] and perimeter.tolist() == [p for _, p in expected]
