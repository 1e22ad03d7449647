"""Overlays: exact labels joined onto third-party records by id, the held-out split, annotator agreement."""

from __future__ import annotations

import json

import pytest

from tonewatch.data.overlays import (
    OverlayError,
    agreement,
    annotation_split,
    apply_overlay,
    double_annotated,
    read_overlay,
)
from tonewatch.data.records import Record, Turn


def _records() -> list[Record]:
    return [
        Record(
            id="src:1:0", text="宽带又断了", lang="zh", source="src", tier="train",
            emotion_among=("calm", "frustrated"), conversation_id="src:1", weight=0.5,
        ),
        Record(
            id="src:1:2", text="你们这帮骗子", lang="zh", source="src", tier="train",
            context=(Turn("customer", "宽带又断了"), Turn("agent", "抱歉")), conversation_id="src:1",
        ),
        Record(id="src:2", text="Спасибо, всё понятно", lang="ru", source="src", tier="train", emotion="calm"),
    ]  # fmt: skip


def _write(tmp_path, lines) -> object:
    path = tmp_path / "src.jsonl"
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return path


def test_annotated_records_get_exact_labels_and_the_rest_stay(tmp_path):
    overlay = read_overlay(
        _write(
            tmp_path,
            [
                {"id": "src:1:0", "emotion": "frustrated", "escalate": False, "by": ["a1"]},
                {"id": "src:1:2", "emotion": "abusive", "escalate": True, "by": ["a1"]},
            ],
        )
    )
    first, second, third = apply_overlay(_records(), overlay, "src")
    assert (first.emotion, first.emotion_among, first.escalate, first.weight) == ("frustrated", (), False, 1.0)
    assert (second.emotion, second.escalate) == ("abusive", True)
    assert first.meta["annotated"] == second.meta["annotated"] == annotation_split("src:1")
    assert third == _records()[2] and "annotated" not in third.meta


def test_an_overlay_naming_a_missing_record_is_refused(tmp_path):
    overlay = read_overlay(_write(tmp_path, [{"id": "src:9", "emotion": "calm", "escalate": False}]))
    with pytest.raises(OverlayError, match="1 annotated ids are not records of src"):
        apply_overlay(_records(), overlay, "src")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"id": "src:1:0", "emotion": "furious", "escalate": False}, "emotion must be one of"),
        ({"id": "src:1:0", "emotion": "calm", "escalate": "no"}, "escalate must be true or false"),
        ({"emotion": "calm", "escalate": False}, "string id"),
        (
            {"id": "x", "emotion": "calm", "escalate": False, "labels": [{"emotion": "cross", "escalate": True}]},
            r"labels\[0\]: emotion",
        ),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path, [{"id": "ok", "emotion": "calm", "escalate": False}, line])
    with pytest.raises(OverlayError, match=message) as error:
        read_overlay(path)
    assert f"{path}:2" in str(error.value)


def test_a_record_annotated_twice_in_one_file_is_refused(tmp_path):
    line = {"id": "src:2", "emotion": "calm", "escalate": False}
    with pytest.raises(OverlayError, match="annotated twice"):
        read_overlay(_write(tmp_path, [line, line]))


def test_the_heldout_split_is_by_conversation_and_about_a_fifth():
    splits = [annotation_split(f"conversation-{index}") for index in range(5000)]
    assert 0.18 < splits.count("heldout") / len(splits) < 0.22
    assert annotation_split("conversation-7") == annotation_split("conversation-7")


def test_agreement_counts_each_boundary():
    def pair(a, b, escalate_a=False, escalate_b=False):
        return {"emotion": a, "escalate": escalate_a}, {"emotion": b, "escalate": escalate_b}

    pairs = [
        pair("calm", "calm"),
        pair("calm", "frustrated"),
        pair("angry", "abusive", True, True),
        pair("abusive", "abusive", True, True),
        pair("frustrated", "frustrated", False, True),
        pair("angry", "angry", True, True),
    ]
    report = agreement(pairs)
    assert report["turns"] == 6
    assert report["emotion_exact_agreement"] == pytest.approx(4 / 6)
    # calm | frustrated+: yes/no pairs (F,F) (F,T) (T,T) (T,T) (T,T) (T,T): po 5/6, pe 1/6*2/6 + 5/6*4/6
    assert report["boundaries"]["calm | frustrated+"] == pytest.approx((5 / 6 - 22 / 36) / (1 - 22 / 36))
    assert report["boundaries"]["frustrated- | angry+"] == pytest.approx(1.0)
    assert report["escalate_kappa"] == pytest.approx((5 / 6 - (3 / 6 * 4 / 6 + 3 / 6 * 2 / 6)) / (1 - 0.5))
    # macro-F1: calm 2/3, frustrated 2/3, angry 2/3, abusive 2/3
    assert report["emotion_macro_f1"] == pytest.approx(2 / 3)


def test_identical_annotations_agree_fully_and_one_label_only_has_no_kappa():
    same = [({"emotion": "calm", "escalate": False}, {"emotion": "calm", "escalate": False})] * 3
    report = agreement(same)
    assert report["emotion_exact_agreement"] == 1.0 and report["emotion_kappa"] is None
    assert report["emotion_macro_f1"] == 1.0 and report["escalate_f1"] is None  # nobody escalated: undefined


def test_double_annotated_reads_both_labels(tmp_path):
    overlay = read_overlay(
        _write(
            tmp_path,
            [
                {"id": "a", "emotion": "calm", "escalate": False},
                {
                    "id": "b", "emotion": "angry", "escalate": True, "adjudicated": True,
                    "labels": [
                        {"by": "a1", "emotion": "frustrated", "escalate": True},
                        {"by": "b1", "emotion": "angry", "escalate": True},
                    ],
                },
            ],
        )
    )  # fmt: skip
    assert double_annotated(overlay) == [
        ({"by": "a1", "emotion": "frustrated", "escalate": True}, {"by": "b1", "emotion": "angry", "escalate": True})
    ]
