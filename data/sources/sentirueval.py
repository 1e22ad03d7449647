"""SentiRuEval-2015: Russian tweets about banks and telecom operators, entity sentiment, as evidence for calm.

Origin: ``searayeah/russian-sentiment-emotion-datasets`` at commit
``b43a50a589e6664837f994ef72d0f75c4bd6fbcd`` (SentiRuEval-2015 subtask 2,
which that repo took from the organisers' Google Drive; Loukachevitch &
Rubtsova, Dialogue 2015/2016). License: **unclear** (no license file or terms
anywhere). Tier: ``eval``: evaluation and research runs only, never the shipped
model's training data. Language: ru.

Raw rows: ``raw/2015/SentiRuEval-2015-banks/train.xml`` and
``raw/2015/SentiRuEval-2015-telecoms/train.xml``, phpMyAdmin XML dumps: one
``<table>`` element per tweet with ``<column name=...>`` children ``id``,
``twitid``, ``date``, ``text`` and one column per company (banks: sberbank,
vtb, gazprom, alfabank, bankmoskvy, raiffeisen, uralsib, rshb; telecoms:
beeline, mts, megafon, tele2, rostelecom, komstar, skylink) holding the
sentiment toward that company: ``1`` positive, ``0`` neutral, ``-1`` negative,
``NULL`` not mentioned, and undocumented ``+-`` (both) and ``--`` (spam or
irrelevant mentions, by their rows). The test etalons of 2015 and 2016 are
withheld on purpose; the 2016 train files are absent (too large).

Mapping onto ``shared/LABELS.md``: the labels are a tweet's sentiment *toward
a company*, not the writer's affect, so they map only where that settles it.

==========================  ====================  ==============================================
company sentiment           target                why
==========================  ====================  ==============================================
only ``1`` and ``0``        ``emotion="calm"``    news, ads, questions, praise: neutral or positive
any ``-1``                  (missing)             ranges over all four labels: sanctions news
                                                  ("США ввели санкции против ВТБ", calm words),
                                                  plain problem reports (calm), complaints
                                                  (frustrated, angry) and insults at staff
                                                  ("@sberbank ... УРОДЫ ... ДЕБИЛЫ", abusive)
any ``+-`` or ``--``        (missing)             mixed, or spam the companies are irrelevant to
no company mentioned        (missing)
==========================  ====================  ==============================================

- A tweet's evidence is the union over the companies it mentions, so one
  negative or irrelevant company makes it missing.
- The source's sentiment is kept in ``meta``: ``meta["sentiment"]`` is the
  tweet-level aggregate of SOURCE.md (``negative`` if some ``-1`` and no
  ``1``, ``positive`` the other way round, ``mixed`` for both or ``+-``,
  ``neutral`` for only ``0``, ``irrelevant`` for ``--``, ``none`` for no
  company) and ``meta["companies"]`` the raw values, e.g.
  ``sberbank=-1;vtb=0``. An evaluation can report, outside LABELS.md, how
  often a model calls the complaint tweets non-calm.
- Weights: 1.0 for every record. Within the source nothing separates calm
  records by how much they resemble customer speech (ads and news are calm
  either way); that tweets are not customer speech is what the ``eval`` tier
  and a source-level weight in the mix are for.
- ``escalate`` is always missing. Complaint tweets sometimes threaten to
  switch operator, but finding those would take a keyword guess.
- Texts are kept as they are, including doubly escaped HTML entities of the
  dumps (``&amp;laquo;МегаФон&amp;raquo;``, about 200 tweets).
- Record ids: ``sentirueval:<banks|telecoms>:<split>:<id column>``. Identical
  texts within a file become one record (none occur in these files);
  ``conversation_id`` is a digest of the text, so the 4 tweets found in both
  files land in the same split.

What it cannot express: any negative label (frustrated, angry, abusive),
escalation, context (replies are not linked), customer speech addressed to an
agent.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from tonewatch.data.records import Record
from tonewatch.data.sources.base import Source, group_rows_by_text, load_split_files, require_file, text_group_id
from tonewatch.data.sources.evidence import evidence_fields
from tonewatch.labels import EMOTION_LABELS

logger = logging.getLogger(__name__)

NAME = "sentirueval"
TIER = "eval"
SPLIT_FILES: dict[tuple[str, str], str] = {
    ("train", "banks"): "raw/2015/SentiRuEval-2015-banks/train.xml",
    ("train", "telecoms"): "raw/2015/SentiRuEval-2015-telecoms/train.xml",
}
"""``(split, domain)`` of the files present (the test etalons are withheld)."""

TWEET_COLUMNS: tuple[str, ...] = ("id", "twitid", "date", "text")
"""Columns that are not a company; every other column holds a company sentiment."""

NOT_MENTIONED = "NULL"

VALUE_EVIDENCE: dict[str, tuple[str, ...]] = {
    "1": ("calm",),
    "0": ("calm",),
    "-1": EMOTION_LABELS,
    "+-": EMOTION_LABELS,
    "--": EMOTION_LABELS,
}
"""Our labels one company sentiment allows; all of :data:`EMOTION_LABELS` means "says nothing"."""


def company_values(row: dict[str, str]) -> dict[str, str]:
    """The sentiment values of the companies a parsed row mentions."""
    values = {
        column: (value or "").strip()
        for column, value in row.items()
        if column not in TWEET_COLUMNS and (value or "").strip() != NOT_MENTIONED
    }
    unknown = {column: value for column, value in values.items() if value not in VALUE_EVIDENCE}
    if unknown:
        raise ValueError(f"sentirueval row {row.get('id')!r}: unknown sentiment values {unknown}")
    return values


def tweet_sentiment(values: dict[str, str]) -> str:
    """SOURCE.md's tweet-level aggregate of the company sentiments."""
    found = set(values.values())
    if not found:
        return "none"
    if "--" in found:
        return "irrelevant"
    if "+-" in found or {"1", "-1"} <= found:
        return "mixed"
    if "-1" in found:
        return "negative"
    if "1" in found:
        return "positive"
    return "neutral"


def tweet_evidence(values: dict[str, str]) -> tuple[str, ...]:
    """Our labels a tweet allows: the union over its companies (all labels when none is mentioned)."""
    if not values:
        return EMOTION_LABELS
    sets = [VALUE_EVIDENCE[value] for value in values.values()]
    return tuple(label for label in EMOTION_LABELS if any(label in allowed for allowed in sets))


def map_rows(rows: list[dict[str, str]], split: str, domain: str) -> list[Record]:
    """Records of the parsed rows of one file; duplicate texts keep their first row, empty texts are skipped."""
    groups = group_rows_by_text(rows, "text", f"sentirueval {domain} {split}")
    records = []
    for text, positions in groups.items():
        row = rows[positions[0]]
        values = company_values(row)
        records.append(
            Record(
                id=f"{NAME}:{domain}:{split}:{(row.get('id') or '').strip()}",
                text=text,
                lang="ru",
                source=NAME,
                tier=TIER,
                conversation_id=text_group_id(NAME, text),
                origin_split=split,
                meta={
                    "domain": domain,
                    "sentiment": tweet_sentiment(values),
                    "companies": ";".join(f"{column}={value}" for column, value in values.items()),
                    "twitid": (row.get("twitid") or "").strip(),
                },
                **evidence_fields(tweet_evidence(values)),
            )
        )
    duplicates = sum(len(positions) - 1 for positions in groups.values())
    if duplicates:
        logger.info("sentirueval %s %s: merged %d duplicate texts", domain, split, duplicates)
    return records


def read_dump_rows(path: Path) -> list[dict[str, str]]:
    """The tweet rows of a phpMyAdmin XML dump: one dict of column name -> text per ``<table>`` element."""
    root = ElementTree.parse(require_file(path)).getroot()
    database = root.find("database")
    if database is None:
        raise ValueError(f"{path}: no <database> element; expected a phpMyAdmin XML dump")
    return [
        {column.get("name", ""): column.text or "" for column in table.findall("column")}
        for table in database.findall("table")
    ]


def load(folder: Path) -> list[Record]:
    """All records of ``folder`` (``<data root>/sentirueval``): 2015 banks train, then 2015 telecoms train."""
    return load_split_files(folder, SPLIT_FILES, map_rows, read_dump_rows)


SOURCE = Source(
    name=NAME,
    langs=("ru",),
    license="unclear",
    tier=TIER,
    origin="searayeah/russian-sentiment-emotion-datasets@b43a50a589e6664837f994ef72d0f75c4bd6fbcd",
    summary="Russian tweets about banks/telecoms (2015 train): only neutral/positive toward every company -> calm, "
    "the rest missing (sentiment kept in meta)",
    load=load,
)
