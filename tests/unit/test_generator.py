"""The fictive SOR generator: determinism, validity of every identifier, realistic shape,
evolution into the next day's snapshot, the bundled demo data and `sorsync generate`."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sorsync.cli.app import app
from sorsync.identifiers import gln_problem, shak_problem, sor_id_problem
from sorsync.simulator.demo import DEMO_UNITS, demo_snapshot_path, load_generated, write_demo
from sorsync.simulator.generator import evolve, generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.sortree import HOSPITAL, PHARMACY, SorUnit, read_bytes
from sorsync.simulator.store import Store


def xml(units: int, seed: int = 0, changes: int | None = None) -> bytes:
    model = generate(units, seed=seed)
    if changes is not None:
        evolve(model, changes, seed=seed)
    buffer = io.BytesIO()
    write_sortree(model, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tree() -> list[SorUnit]:
    return read_bytes(xml(3000, seed=7))[1]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert xml(400, seed=3) == xml(400, seed=3)
    assert xml(400, seed=3, changes=30) == xml(400, seed=3, changes=30)
    assert xml(400, seed=3) != xml(400, seed=4)


@pytest.mark.parametrize("units", [5, 6, 7, 12, 40, 333, 1000])
def test_exact_unit_count(units: int) -> None:
    assert len(generate(units, seed=units)) == units
    assert len(read_bytes(xml(units, seed=units))[1]) == units


def test_identifiers_are_valid_and_unique(tree: list[SorUnit]) -> None:
    ids = [u.sor_id for u in tree]
    assert len(set(ids)) == len(ids)
    assert [sor_id_problem(str(i)) for i in ids if sor_id_problem(str(i))] == []
    eans = [u.ean for u in tree if u.ean is not None]
    assert len(eans) > 100
    assert len(set(eans)) == len(eans)
    assert all(str(e).startswith("579") and gln_problem(str(e)) is None for e in eans)


def test_shak_codes_have_the_right_shape(tree: list[SorUnit]) -> None:
    by_id = {u.sor_id: u for u in tree}
    hospitals = [u for u in tree if u.level == "SI" and u.institution_type == HOSPITAL]
    assert len(hospitals) >= 5
    assert all(u.shak is not None and re.fullmatch(r"[0-9]{4}", u.shak) for u in hospitals)
    codes = [u.shak for u in tree if u.shak is not None]
    assert len(set(codes)) == len(codes)
    for u in tree:
        if u.shak is None or u.level != "OE":
            continue
        assert shak_problem(u.shak) is None
        assert len(u.shak) in (6, 7)
        assert u.shak.startswith(by_id[u.institution_id].shak)  # type: ignore[index,arg-type]
        if len(u.shak) == 6:
            assert u.shak.isdigit()
    assert any(len(c) == 7 and c[-1].isalpha() for c in codes)  # letters in the last position


def test_realistic_shape(tree: list[SorUnit]) -> None:
    by_id = {u.sor_id: u for u in tree}
    regions = [u for u in tree if u.level == "IE" and u.owner_type == 550881000005103]
    assert sorted(u.region_code for u in regions) == [1081, 1082, 1083, 1084, 1085]  # type: ignore[type-var]
    hospital_oes = [u for u in tree if u.level == "OE" and u.institution_type == HOSPITAL]
    assert max(u.depth for u in hospital_oes) >= 5  # SI + 4 levels
    # a SHAK-bearing unit below one without SHAK (NSP drops it)
    assert any(u.shak and by_id[u.parent_id].shak is None for u in hospital_oes)  # type: ignore[index]
    types = Counter(u.institution_type for u in tree if u.level == "SI")
    assert types[394761003] > types[550671000005100] > 0
    assert types[264372000] > 0
    assert sum(types.values()) > sum(
        types[t] for t in (22232009, 394761003, 550671000005100, 264372000)
    )
    ydernumre = [u.provider_id for u in tree if u.provider_id]
    assert all(re.fullmatch(r"0[0-9]{5}", y) for y in ydernumre)
    assert any(n == 2 for n in Counter(ydernumre).values())  # a few shared by two practices
    pharmacy = [u for u in tree if u.level == "OE" and u.institution_type == PHARMACY]
    assert all(re.fullmatch(r"[0-9]+,[0-9]+", u.pharmacy_id or "") for u in pharmacy)
    assert any(u.ean_inherited and u.effective_ean for u in tree)
    assert any(u.to_date is not None for u in tree)  # some closed units
    # half of the closed units were replaced by a sibling (sorreplacedentity); evolve adds more
    replaced = [u for u in tree if u.replaced_by]
    assert replaced
    by_sor = {u.sor_id: u for u in tree}
    for old in replaced:
        (successor,) = old.replaced_by
        assert old.to_date is not None
        assert by_sor[successor].to_date is None
        assert by_sor[successor].parent_id == old.parent_id
        assert old.sor_id in by_sor[successor].replaces


def test_evolve_applies_every_kind_of_change() -> None:
    model = generate(2000, seed=11)
    day0 = model.snapshot_date
    before = read_bytes(xml(2000, seed=11))[1]
    evolve(model, 70, seed=11)
    buffer = io.BytesIO()
    write_sortree(model, buffer)
    header, after = read_bytes(buffer.getvalue())
    assert header.snapshot_date == day0 + timedelta(days=1)
    old = {u.sor_id: u for u in before}
    new = {u.sor_id: u for u in after}
    added = [u for u in after if u.sor_id not in old]
    assert len(added) >= 20  # new units and successors
    successors = [u for u in added if u.replaces]
    assert successors
    assert all(new[u.replaces[0]].replaced_by == (u.sor_id,) for u in successors)
    assert all(
        new[u.replaces[0]].to_date == header.snapshot_date - timedelta(1) for u in successors
    )
    renamed = [i for i, u in old.items() if i in new and new[i].name != u.name]
    moved = [i for i, u in old.items() if i in new and new[i].parent_id != u.parent_id]
    reopened = [i for i, u in old.items() if u.to_date and new[i].to_date is None]
    shak_moved = [i for i, u in old.items() if u.shak and new[i].shak != u.shak]
    assert renamed
    assert moved
    assert reopened
    assert shak_moved
    assert [sor_id_problem(str(i)) for i in new if sor_id_problem(str(i))] == []


def test_evolve_is_pinned_for_a_small_seed() -> None:
    """Two evolved days of a small tree, byte for byte: a refactoring of `evolve` must keep the
    order of its random draws (the other tests only compare runs of the same code). A deliberate
    change to the generator updates the digest, and the bundled demo data with it."""
    model = generate(400, seed=3)
    for day in range(2):
        evolve(model, 30, seed=3 + day)
    buffer = io.BytesIO()
    write_sortree(model, buffer)
    counters = (model.next_sequence, model.next_gln, model.next_ydernummer)
    assert (model.snapshot_date.isoformat(), counters) == ("2025-01-08", (10415, 100120, 2070))
    assert hashlib.sha256(buffer.getvalue()).hexdigest() == (
        "9cca4f08e4c804dbad8076ad71b2d3f1104e1884e5353c92a3e27f451a1973b5"
    )


def test_evolved_snapshot_loads_as_nsp_deltas() -> None:
    store = Store()
    first, second = load_generated(store, 1500, seed=5, evolve_changes=40, days=1)
    assert first.written == sum(c.inserted for c in first.counts.values()) > 0
    afd = second.counts["sor/sygehusafdeling/v1"]
    assert afd.inserted > 0
    assert afd.updated > 0
    assert afd.unchanged > afd.records * 0.8
    assert sum(c.closed for c in second.counts.values()) > 0
    assert second.written < first.written / 5


def test_bundled_demo_snapshot_is_current_small_and_loads(tmp_path: Path) -> None:
    path = demo_snapshot_path()
    assert path.is_file()
    assert path.stat().st_size < 1_000_000
    fresh = write_demo(tmp_path / "demo.xml.gz")
    assert fresh.read_bytes() == path.read_bytes(), "regenerate: python -m sorsync.simulator.demo"
    store = Store()
    report = load_snapshot(store, path)
    assert report.units == DEMO_UNITS
    assert all(len(table) > 0 for table in store.tables.values())


def test_cli_writes_plain_and_gzip_snapshots(tmp_path: Path) -> None:
    runner = CliRunner()
    plain, packed = tmp_path / "day1.xml", tmp_path / "day1.xml.gz"
    for out in (plain, packed):
        args = ["generate", "--units", "300", "--seed", "2", "--evolve", "10", "--out", str(out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    header, _ = read_bytes(plain.read_bytes())
    assert header.snapshot_date == generate(5).snapshot_date + timedelta(days=1)
    result = runner.invoke(app, ["generate", "--units", "300", "--out", str(tmp_path / "x" / "y")])
    assert result.exit_code == 1
    assert "cannot write" in result.output
