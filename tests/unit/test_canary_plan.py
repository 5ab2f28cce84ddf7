"""Adapter resolution and rollout planning: which variant is stable, what is canaried, the split."""

from __future__ import annotations

from datetime import UTC, datetime

from loraplane.api import ChatbotDeployment
from loraplane.canary import RolloutState, plan_rollout, resolve
from loraplane.storage import AdapterManifest, FileEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def spec(**fields):
    return ChatbotDeployment.model_validate({
        "metadata": {"name": "bot"},
        "spec": {"baseModel": {"name": "smol"}, **fields},
    }).spec


def ftj(*versions: tuple[str, str], r: int = 8) -> dict:
    vs = [{"version": v, "uri": f"s3://a/ftj/{v}/", "sha256": f"sha-{v}", "verdict": verdict,
           "reason": "gate" if verdict == "rejected" else None} for v, verdict in versions]
    return {"spec": {"lora": {"r": r}}, "status": {"versions": vs, "adapter": vs[-1] if vs else None}}


def manifest(version: str, verdict: str = "accepted") -> AdapterManifest:
    return AdapterManifest(job="j", version=version, verdict=verdict, reason=None if verdict == "accepted" else "ppl",
                           base_model="smol", lora_rank=16, created_at=T0,
                           files=[FileEntry(path="adapter_config.json", sha256="00", size=1)])


FOLLOW = [{"name": "support", "fineTuneJobRef": {"name": "j"}}]


def test_resolution_refuses_rejected_unpublished_and_missing():
    s = spec(adapters=[
        {"name": "u1", "uri": "s3://a/u1/"}, {"name": "u2", "uri": "s3://a/u2/"}, {"name": "u3", "uri": "s3://a/u3/"},
        {"name": "p1", "fineTuneJobRef": {"name": "j", "version": "v1"}},
        {"name": "p2", "fineTuneJobRef": {"name": "j", "version": "v2"}},
        {"name": "p9", "fineTuneJobRef": {"name": "j", "version": "v9"}},
        {"name": "gone", "fineTuneJobRef": {"name": "nope"}},
        {"name": "support", "fineTuneJobRef": {"name": "j"}},
    ])
    entries = resolve(s, {"j": ftj(("v1", "accepted"), ("v2", "rejected"), ("v3", "accepted")), "nope": None},
                      {"s3://a/u1/": manifest("v1"), "s3://a/u2/": manifest("v2", "rejected"), "s3://a/u3/": None})
    by = {e.entry: e for e in entries}
    assert by["u1"].latest.name == "u1" and by["u1"].latest.lora_rank == 16 and by["u1"].latest.sha256
    assert "rejected" in by["u2"].problem and not by["u2"].versions
    assert "not published" in by["u3"].problem
    assert by["p1"].latest.uri == "s3://a/ftj/v1/" and by["p1"].latest.lora_rank == 8
    assert "rejected" in by["p2"].problem
    assert "has not published v9" in by["p9"].problem
    assert "FineTuneJob nope not found" in by["gone"].problem
    # A followed FineTuneJob: every accepted version, named <entry>-<version>; rejected v2 skipped.
    assert [v.name for v in by["support"].versions] == ["support-v1", "support-v3"]


def test_first_sight_serves_the_latest_accepted_version():
    s = spec(adapters=FOLLOW, rollout={"autoCanary": True})
    p = plan_rollout(s, resolve(s, {"j": ftj(("v1", "accepted"), ("v2", "accepted"))}, {}), RolloutState(), {})
    assert p.stable == "support-v2" and p.base_weights == {"support-v2": 100} and p.candidate is None


def test_a_new_version_is_the_candidate_with_autocanary_else_a_direct_switch():
    for auto in (True, False):
        s = spec(adapters=FOLLOW, rollout={"autoCanary": auto})
        prev = RolloutState(stable="support-v1")
        p = plan_rollout(s, resolve(s, {"j": ftj(("v1", "accepted"), ("v2", "accepted"))}, {}), prev,
                         {"support-v1": 100})
        assert (p.stable, p.candidate, p.canary_needed) == ("support-v1", "support-v2", auto)
        assert p.base_weights == {"support-v1": 100}


def test_with_traffic_the_canary_splits_only_its_entrys_share_and_unservable_share_moves():
    s = spec(adapters=[*FOLLOW, {"name": "old", "uri": "s3://a/old/"}],
             traffic=[{"adapter": "support", "weight": 60}, {"adapter": "base", "weight": 30},
                      {"adapter": "old", "weight": 10}],
             rollout={"autoCanary": True})
    entries = resolve(s, {"j": ftj(("v1", "accepted"), ("v2", "accepted"))}, {"s3://a/old/": None})
    p = plan_rollout(s, entries, RolloutState(stable="support-v1"), {"support-v1": 70, "base": 30})
    # "old" is not published: its 10% goes to the largest servable variant.
    assert p.base_weights == {"support-v1": 70, "base": 30}
    assert (p.stable, p.candidate) == ("support-v1", "support-v2")
    state = RolloutState(stable="support-v1", canary="support-v2", canary_weight=50)
    assert state.weights(p.base_weights) == {"support-v1": 35, "base": 30, "support-v2": 35}


def test_without_traffic_the_last_adapter_listed_is_canaried_against_the_stable():
    s = spec(adapters=[{"name": "v1", "uri": "s3://a/v1/"}, {"name": "v2", "uri": "s3://a/v2/"}])
    entries = resolve(s, {}, {"s3://a/v1/": manifest("v1"), "s3://a/v2/": manifest("v2")})
    p = plan_rollout(s, entries, RolloutState(stable="v1"), {"v1": 100})
    assert (p.stable, p.candidate, p.canary_needed) == ("v1", "v2", True)
    # Nothing before: the target is simply stable.
    p = plan_rollout(s, entries, RolloutState(), {})
    assert (p.stable, p.candidate) == ("v2", None)
    # No adapter servable at all: the bare base model, with the reasons kept.
    entries = resolve(s, {}, {"s3://a/v1/": None, "s3://a/v2/": manifest("v2", "rejected")})
    p = plan_rollout(s, entries, RolloutState(), {})
    assert p.base_weights == {"base": 100} and len(p.problems) == 2


def test_a_rolled_back_canary_keeps_the_stable_in_service():
    s = spec(adapters=FOLLOW, rollout={"autoCanary": True})
    entries = resolve(s, {"j": ftj(("v1", "accepted"), ("v2", "accepted"))}, {})
    prev = RolloutState(stable="support-v1", canary="support-v2", rolled_back=True)
    p = plan_rollout(s, entries, prev, {"support-v1": 100, "support-v2": 0})
    assert p.stable == "support-v1" and p.candidate == "support-v2"
    assert prev.weights(p.base_weights) == {"support-v1": 100, "support-v2": 0}
