from __future__ import annotations

from tonewatch.data.records import NOT_ABUSIVE, Record
from tonewatch.data.stats import format_table, source_stats


def record(i: int, lang: str, **labels) -> Record:
    return Record(id=f"r{i}", text="文本", lang=lang, source="s", tier="train", **labels)


def test_counts_per_language_label_and_escalation():
    records = [
        record(1, "zh", emotion="calm", escalate=False),
        record(2, "zh", emotion="abusive", escalate=True),
        record(3, "zh", emotion_among=NOT_ABUSIVE),
        record(4, "ru", emotion="calm"),
    ]
    rows = source_stats("s", "train", records)
    by_lang = {row.lang: row for row in rows}
    assert by_lang["zh"].records == 3 and by_lang["ru"].records == 1
    assert by_lang["zh"].emotion == {"calm": 1, "abusive": 1, "calm|frustrated|angry": 1}
    assert (by_lang["zh"].escalate_yes, by_lang["zh"].escalate_no, by_lang["zh"].escalate_missing) == (1, 1, 1)
    assert by_lang["ru"].escalate_missing == 1

    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == [
        "source", "tier", "lang", "records", "calm", "frustrated", "angry", "abusive", "c|f|a", "-",
        "esc:yes", "esc:no", "esc:-",
    ]  # fmt: skip
    total = next(line for line in lines if line.startswith("total")).split()
    assert total[1:] == ["4", "2", "0", "0", "1", "1", "0", "1", "1", "2"]
