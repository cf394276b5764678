"""The API's in-memory answer cache (api.caching.ResponseCache, CachedLookup): pure, no server
needed."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.types import Scope

from api.caching import CACHE_CONTROL, MAX_CACHED_BODY, CachedLookup, ResponseCache
from api.metrics import Metrics, make_metrics
from sorsync.lookup import NO_VERSION, DataVersion

V1 = DataVersion(run_id=1, finished_at=datetime(2026, 1, 1, tzinfo=UTC))
V2 = DataVersion(run_id=2, finished_at=datetime(2026, 1, 2, tzinfo=UTC))


def test_hit_after_put_for_the_same_version_only() -> None:
    cache = ResponseCache(10)
    cache.put(V1, '"1-a"', b"A")
    assert cache.get(V1, '"1-a"') == b"A"
    assert cache.get(V1, '"1-b"') is None
    assert cache.get(V2, '"1-a"') is None


def test_a_new_version_empties_it() -> None:
    cache = ResponseCache(10)
    cache.put(V1, "a", b"A")
    cache.put(V2, "b", b"B")
    assert len(cache) == 1
    assert cache.get(V1, "a") is None
    # The same run id again (ids restart after a TRUNCATE) but another finish: another version.
    again = DataVersion(run_id=2, finished_at=datetime(2026, 1, 3, tzinfo=UTC))
    assert cache.get(again, "b") is None


def test_least_recently_used_goes_first() -> None:
    cache = ResponseCache(2)
    cache.put(V1, "a", b"A")
    cache.put(V1, "b", b"B")
    assert cache.get(V1, "a") == b"A"  # now b is the oldest
    cache.put(V1, "c", b"C")
    assert cache.get(V1, "b") is None
    assert cache.get(V1, "a") == b"A"
    assert cache.get(V1, "c") == b"C"


def test_what_is_never_kept() -> None:
    off = ResponseCache(0)
    off.put(V1, "a", b"A")
    assert off.get(V1, "a") is None
    cache = ResponseCache(10)
    cache.put(NO_VERSION, "a", b"A")  # data not loaded by a sync: no way to know it changed
    assert cache.get(NO_VERSION, "a") is None
    cache.put(V1, "big", b"x" * (MAX_CACHED_BODY + 1))
    assert cache.get(V1, "big") is None


def test_bounded_by_bytes_too() -> None:
    cache = ResponseCache(100, max_bytes=10)
    cache.put(V1, "a", b"1234")
    cache.put(V1, "b", b"5678")
    cache.put(V1, "a", b"abcd")  # replaced, not counted twice
    cache.put(V1, "c", b"90")
    assert len(cache) == 3
    cache.put(V1, "d", b"xyz")  # 13 bytes now: the least recently used ("b") goes
    assert cache.get(V1, "b") is None
    assert [cache.get(V1, k) for k in "acd"] == [b"abcd", b"90", b"xyz"]


def _found(metrics: Metrics, kind: str) -> float:
    prefix = f'sorsync_lookups_total{{kind="{kind}",result="found"}} '
    for line in metrics.render().decode().splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


def test_a_cached_lookup_answers_route_and_middleware_alike() -> None:
    """CachedLookup.known, the one answer of the route and of CachedLookups: 304 for the ETag
    the client has, else the cached body (counted as found), else nothing; before routing, a
    request whose answer is not cached is left to the route even with a matching ETag."""
    lookup, metrics, cache = CachedLookup("shak"), make_metrics(), ResponseCache(10)
    plain: Scope = {"headers": []}
    holding: Scope = {"headers": [(b"accept", b"*/*"), (b"if-none-match", b'W/"1-a", "x"')]}
    etag = '"1-a"'
    for routed in (True, False):
        assert lookup.known(metrics, cache, V1, etag, plain, routed=routed) is None
    not_modified = lookup.known(metrics, cache, V1, etag, holding)
    assert not_modified is not None
    assert not_modified.status_code == 304
    assert lookup.known(metrics, cache, V1, etag, holding, routed=False) is None
    cache.put(V1, etag, b'{"a":1}')
    for routed in (True, False):
        hit = lookup.known(metrics, cache, V1, etag, plain, routed=routed)
        assert hit is not None
        assert hit.body == b'{"a":1}'
        assert hit.headers["etag"] == etag
        assert hit.headers["cache-control"] == CACHE_CONTROL
        again = lookup.known(metrics, cache, V1, etag, holding, routed=routed)
        assert again is not None
        assert again.status_code == 304
    assert _found(metrics, "shak") == 2  # the two bodies sent; a 304 is no lookup
