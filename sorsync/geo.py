"""Coordinates: SOR2 gives ETRS89 / UTM zone 32N (EPSG:25832); the API adds WGS84 latitude and
longitude (EPSG:4326), projected by PROJ through pyproj."""

from __future__ import annotations

from functools import cache

from pyproj import Transformer


@cache
def _to_wgs84() -> Transformer:
    # always_xy: (easting, northing) in, (longitude, latitude) out, whatever the CRS axis order.
    return Transformer.from_crs("EPSG:25832", "EPSG:4326", always_xy=True)


def etrs89_utm32_to_wgs84(easting: float, northing: float) -> tuple[float, float]:
    """(latitude, longitude) in degrees of a UTM zone 32N point given in metres."""
    lon, lat = _to_wgs84().transform(easting, northing)
    return lat, lon
