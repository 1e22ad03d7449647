"""The project's exact labels on third-party text in training and evaluation: the held-out fifth is never
trained on, the rest is pooled with its own share and every example of a pool is drawn before any repeats."""

from __future__ import annotations

import numpy as np
import pytest

from tonewatch.data.records import NOT_ABUSIVE, Record
from tonewatch.training import dataset as dataset_module
from tonewatch.training import evaluate as evaluate_module
from tonewatch.training.config import TrainConfig
from tonewatch.training.dataset import ANNOTATIONS_POOL, build_training_data, source_shares
from tonewatch.training.evaluate import REAL_TEXT_SETS, EvalConfig, evaluation_sets, validation_suite
from tonewatch.training.train import sample_plan


def _records(source: str, lang: str, count: int) -> list[Record]:
    """``count`` weakly labelled records; every third annotated for training, every fifth held out."""
    records = []
    for index in range(count):
        meta = {}
        if index % 5 == 0:
            meta = {"annotated": "heldout"}
        elif index % 3 == 0:
            meta = {"annotated": "train"}
        exact = {"emotion": "angry", "escalate": True} if meta else {"emotion_among": ("calm", "frustrated")}
        records.append(
            Record(
                id=f"{source}:{index}", text=f"text {index}", lang=lang, source=source, tier="train", meta=meta, **exact
            )
        )
    return records


@pytest.fixture
def fake_sources(monkeypatch):
    data = {"cold": _records("cold", "zh", 40), "cedr": _records("cedr", "ru", 30)}
    monkeypatch.setattr(dataset_module, "load_source", lambda name, data_root=None: list(data[name]))
    monkeypatch.setattr(evaluate_module, "load_source", lambda name, data_root=None: list(data.get(name, [])))
    return data


def _config(**overrides) -> TrainConfig:
    settings = {"source_shares": {"cold": 0.5, "cedr": 0.5}, "annotated_share": 0.25, "max_records_per_source": 5}
    return TrainConfig(**{**settings, **overrides})


def test_heldout_records_never_train_and_annotated_ones_form_their_own_pool(fake_sources):
    data = build_training_data(_config())
    every = [r for part in (data.train, data.validation) for records in part.values() for r in records]
    assert not [r for r in every if r.meta.get("annotated") == "heldout"]
    pool = data.train[ANNOTATIONS_POOL] + data.validation[ANNOTATIONS_POOL]
    expected = [r for rs in fake_sources.values() for r in rs if r.meta.get("annotated") == "train"]
    assert sorted(r.id for r in pool) == sorted(r.id for r in expected)  # the cap of 5 never drops one
    for name in ("cold", "cedr"):
        rest = data.train[name] + data.validation[name]
        assert rest and all("annotated" not in r.meta for r in rest) and len(rest) <= 5


def test_without_an_annotated_share_they_stay_in_their_sources_but_heldout_still_never_trains(fake_sources):
    data = build_training_data(_config(annotated_share=0.0))
    assert ANNOTATIONS_POOL not in data.train
    cold = data.train["cold"] + data.validation["cold"]
    assert any(r.meta.get("annotated") == "train" for r in cold)
    assert not any(r.meta.get("annotated") == "heldout" for r in cold)


def test_the_annotations_pool_gets_its_share_only_when_it_has_examples():
    config = _config()
    assert source_shares(config) == pytest.approx({"cold": 0.4, "cedr": 0.4, ANNOTATIONS_POOL: 0.2})
    assert source_shares(config, pools={"cold", "cedr"}) == pytest.approx({"cold": 0.5, "cedr": 0.5})


def test_every_example_of_a_pool_is_drawn_once_before_any_is_drawn_twice():
    pools = ["a"] * 7 + ["b"] * 50
    plan = sample_plan(pools, {"a": 0.5, "b": 0.5}, steps=10, batch_size=4, seed=1)
    drawn = plan.ravel()
    from_a = drawn[drawn < 7]
    counts = np.bincount(from_a, minlength=7)
    assert counts.min() >= 1 and counts.max() - counts.min() <= 1  # cycles through all 7 before repeating
    from_b = drawn[drawn >= 7]
    assert len(set(from_b.tolist())) == len(from_b)  # fewer draws than examples: no repeats at all


def test_evaluation_keeps_annotated_records_out_of_their_sources_and_scores_the_heldout_fifth(fake_sources):
    sets = evaluation_sets(EvalConfig(public_sources=True), _config())
    for name in ("cold", "cedr"):
        assert all("annotated" not in r.meta for r in sets.get(name, []))
    assert set(REAL_TEXT_SETS) <= set(sets)
    assert {r.lang for r in sets["real_text_zh"]} == {"zh"} and {r.lang for r in sets["real_text_ru"]} == {"ru"}
    heldout = [r.id for rs in fake_sources.values() for r in rs if r.meta.get("annotated") == "heldout"]
    assert sorted(r.id for name in REAL_TEXT_SETS for r in sets[name]) == sorted(heldout)


def _figures(macro_f1: float, escalation_f1: float) -> dict:
    return {"emotion": {"exact": {"macro_f1": macro_f1}}, "escalation": {"f1": escalation_f1}}


def test_the_validation_suite_puts_every_split_beside_the_baseline():
    def split(macro_f1):
        return {"emotion": {"exact": {"macro_f1": macro_f1, "ece": 0.1, "per_class": {"abusive": {"precision": 0.5,
                "recall": 0.25}}}}, "escalation": {"f1": 0.7}}  # fmt: skip

    report = {
        "sets": {
            "callcenter_dev": {"model": {"by_language": {"zh": _figures(0.8, 0.9)}},
                               "baseline": {"by_language": {"zh": _figures(0.6, 0.7)}}},
            "real_text_zh": {"model": split(0.5), "baseline": split(0.4)},
        },
        "functional": {"zh": {"a": {"meets_target": True}, "b": {"meets_target": False}}},
        "functional_baseline": {"zh": {"a": {"meets_target": False}, "b": {"meets_target": False}}},
    }  # fmt: skip
    suite = validation_suite(report)
    assert suite["model"]["callcenter_dev/zh/emotion_macro_f1"] == 0.8
    assert suite["baseline"]["callcenter_dev/zh/escalation_f1"] == 0.7
    assert suite["model"]["real_text_zh/abusive_recall"] == 0.25
    assert suite["model"]["functional/zh/functionalities_meeting_target"] == 0.5
    assert suite["baseline"]["functional/zh/functionalities_meeting_target"] == 0.0
    assert "real_text_ru/emotion_macro_f1" not in suite["model"]  # absent splits are left out, not zero


def test_a_real_text_set_is_also_scored_per_source_and_the_suite_lists_each():
    """Real customer service (STC-3) and social-media comments (COLD) pooled in one set are also scored apart."""
    labels = ["calm", "abusive", "calm", "frustrated"]
    records = [
        Record(id=f"{source}:{i}", text="t", lang="zh", source=source, tier="train", emotion=label, escalate=False)
        for source in ("stc3_dch", "cold")
        for i, label in enumerate(labels)
    ]
    # right on every STC-3 turn, "calm" for every COLD turn
    emotion = np.zeros((8, 4))
    emotion[np.arange(4), [0, 3, 0, 1]] = 1.0
    emotion[4:, 0] = 1.0
    predictions = evaluate_module.Predictions(emotion, np.zeros(8), np.zeros(8, dtype=bool))
    report = evaluate_module.set_report(records, predictions)
    assert set(report["by_source"]) == {"stc3_dch", "cold"}
    assert report["by_source"]["stc3_dch"]["emotion"]["exact"]["macro_f1"] == pytest.approx(1.0)
    assert report["by_source"]["cold"]["emotion"]["exact"]["macro_f1"] < 0.5
    suite = validation_suite({"sets": {"real_text_zh": {"model": report}}})
    assert suite["model"]["real_text_zh/stc3_dch/emotion_macro_f1"] == pytest.approx(1.0)
    assert "by_source" not in evaluate_module.set_report(records[:4], evaluate_module.Predictions(
        emotion[:4], np.zeros(4), np.zeros(4, dtype=bool)))  # fmt: skip


def test_a_source_claim_of_weight_zero_is_never_trained_on_but_its_annotated_twin_is(monkeypatch):
    """COLD's offensive rows: weight 0 (scored by the report, not learnt); an annotated one trains, weight 1."""
    claims = [
        Record(id=f"cold:{i}", text=f"t{i}", lang="zh", source="cold", tier="train", emotion="abusive", weight=0.0)
        for i in range(6)
    ]
    annotated = Record(
        id="cold:a", text="ta", lang="zh", source="cold", tier="train", emotion="calm", meta={"annotated": "train"}
    )
    safe = [
        Record(id=f"cold:s{i}", text=f"s{i}", lang="zh", source="cold", tier="train", emotion_among=NOT_ABUSIVE)
        for i in range(6)
    ]
    records = [*claims, annotated, *safe]
    monkeypatch.setattr(dataset_module, "load_source", lambda name, data_root=None: list(records))
    data = build_training_data(_config(source_shares={"cold": 1.0}, annotated_share=0.0, max_records_per_source=100))
    trained = {r.id for part in (data.train, data.validation) for rs in part.values() for r in rs}
    assert trained == {"cold:a", *(r.id for r in safe)}
