"""The functional suite: the shipped files are well formed, and the report scores each functionality."""

from __future__ import annotations

from tonewatch.model.types import Prediction
from tonewatch.training.functional import ABUSIVE_TARGET, FUNCTIONAL_DIR, functional_report, read_suite


def test_the_suite_has_at_least_15_functionalities_of_20_cases_per_language():
    cases = read_suite()
    for lang in ("zh", "ru"):
        counts: dict[str, int] = {}
        for case in cases:
            if case["lang"] == lang:
                counts[case["functionality"]] = counts.get(case["functionality"], 0) + 1
        assert len(counts) >= 15, lang
        assert min(counts.values()) >= 20, (lang, counts)
    assert len({case["id"] for case in cases}) == len(cases)
    for case in cases:
        last = [turn for turn in case["turns"] if turn["speaker"] == "customer"][-1]
        assert last.get("emotion") and isinstance(last.get("escalate"), bool), case["id"]
    assert sorted(path.name for path in FUNCTIONAL_DIR.glob("*.jsonl")) == ["ru.jsonl", "zh.jsonl"]


class KeywordClassifier:
    """Calls a turn abusive when it contains 'idiot' (a stand-in model with a known behaviour)."""

    def __init__(self):
        self.seen = []

    def classify(self, items):
        self.seen += items
        predictions = []
        for item in items:
            abusive = "idiot" in item.text
            label = "abusive" if abusive else "calm"
            scores = {name: float(name == label) for name in ("calm", "frustrated", "angry", "abusive")}
            predictions.append(Prediction(label, scores, abusive, float(abusive)))
        return predictions


def _case(number, functionality, text, emotion, escalate, earlier=()):
    turns = [{"speaker": "agent", "text": "Hello"}]
    for earlier_text in earlier:
        turns += [
            {"speaker": "customer", "text": earlier_text, "emotion": "angry", "escalate": False},
            {"speaker": "agent", "text": "Sorry"},
        ]
    turns.append({"speaker": "customer", "text": text, "emotion": emotion, "escalate": escalate})
    return {"id": f"c{number}", "lang": "ru", "functionality": functionality, "turns": turns}


def test_each_functionality_is_scored_on_its_last_customer_turn_in_context():
    cases = [
        _case(1, "insult_agent", "you idiot", "abusive", True),
        _case(2, "insult_agent", "you moron", "abusive", True),
        _case(3, "negated_abuse", "I am not calling you an idiot", "frustrated", False),
        _case(4, "negated_abuse", "fine, thanks", "calm", False, earlier=["you idiot"]),
    ]
    model = KeywordClassifier()
    report = functional_report(model, cases)["ru"]
    assert [item.text for item in model.seen] == [
        "you idiot",
        "you moron",
        "I am not calling you an idiot",
        "fine, thanks",
    ]
    assert model.seen[3].context[1] == ("customer", "you idiot")  # earlier turns are context, not cases
    insult, negated = report["insult_agent"], report["negated_abuse"]
    assert (insult["kind"], insult["cases"], insult["called_abusive"]) == ("abusive", 2, 0.5)
    assert insult["meets_target"] is (ABUSIVE_TARGET <= 0.5)
    assert (negated["kind"], negated["called_abusive"], negated["meets_target"]) == ("not abusive", 0.5, False)
    assert negated["emotion_accuracy"] == 0.5 and negated["escalation_accuracy"] == 0.5
