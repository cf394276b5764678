"""The fault plan: one-shot queue, seeded random mode, JSON control."""

from __future__ import annotations

import pytest

from sorsync.simulator.faults import KINDS, FaultPlan, make_fault


def test_one_shot_faults_are_consumed_in_order() -> None:
    plan = FaultPlan().next("http_status", status=502).next("reset")
    first, second = plan.take(), plan.take()
    assert first is not None
    assert first.kind == "http_status"
    assert first["status"] == 502
    assert first["body"] == "Service Unavailable"  # default filled in
    assert second is not None
    assert second.kind == "reset"
    assert plan.take() is None
    assert plan.injected == {"http_status": 1, "reset": 1}


def test_unknown_kind_or_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind 'nope'"):
        make_fault("nope")
    with pytest.raises(ValueError, match="takes no parameter colour"):
        make_fault("reset", colour="red")


def test_random_mode_is_reproducible_from_the_seed() -> None:
    def run() -> list[str | None]:
        plan = FaultPlan().random(0.5, seed=7, kinds=["reset", {"kind": "delay", "seconds": 0}])
        return [f.kind if (f := plan.take()) else None for _ in range(50)]

    first = run()
    assert first == run()
    assert 10 < sum(k is not None for k in first) < 40
    assert {k for k in first if k} == {"reset", "delay"}


def test_queue_goes_before_random_and_clear_stops_everything() -> None:
    plan = FaultPlan().random(1.0, seed=1, kinds=["reset"]).next("malformed_xml")
    assert plan.take().kind == "malformed_xml"  # type: ignore[union-attr]
    assert plan.take().kind == "reset"  # type: ignore[union-attr]
    plan.clear()
    assert plan.take() is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        plan.random(1.5)


def test_json_control() -> None:
    plan = FaultPlan()
    plan.apply_json({"kind": "replication_fault", "code": "urn:stamdata:unauthorized-access"})
    plan.apply_json([{"kind": "delay", "seconds": 0.1}])
    plan.apply_json({"next": ["reset"], "random": {"rate": 0.25, "seed": 3, "kinds": ["truncate"]}})
    state = plan.to_json()
    assert [f["kind"] for f in state["next"]] == ["replication_fault", "delay", "reset"]
    assert state["random"]["rate"] == 0.25
    for bad in ({"colour": 1}, {"next": [{"status": 1}]}, {"random": {"seed": 1}}, "x"):
        with pytest.raises(ValueError, match=r"expected|kind|random"):
            plan.apply_json(bad)


def test_every_kind_has_defaults() -> None:
    for kind in KINDS:
        assert make_fault(kind).kind == kind
