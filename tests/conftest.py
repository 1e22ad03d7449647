"""Shared fixtures: the real data root (tests marked ``datasets``), the offline cache, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ROOT_ENV = "TONEWATCH_DATA"


def pytest_collection_modifyitems(config, items) -> None:
    """A test that uses the real datasets must say so with ``@pytest.mark.datasets``: an unmarked one is a
    collection error, so no dataset test can skip unnoticed in CI (which sets $TONEWATCH_DATA)."""
    unmarked = [
        item.nodeid
        for item in items
        if "data_root" in getattr(item, "fixturenames", ()) and item.get_closest_marker("datasets") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use the data_root fixture without @pytest.mark.datasets: " + ", ".join(unmarked)
        )


@pytest.fixture(scope="session", autouse=True)
def offline_cache(tmp_path_factory) -> Path:
    """Every test runs offline, with the base encoder cache in a session temporary directory, and builds the ONNX
    recipe ``int8`` unless it asks for another: ``auto`` keeps whichever graph ran fastest while it was measured,
    which on a busy machine may differ from one run to the next (tests of ``auto`` ask for it)."""
    import os

    cache = tmp_path_factory.mktemp("tonewatch-cache")
    saved = {name: os.environ.get(name) for name in ("TONEWATCH_CACHE", "HF_HUB_OFFLINE", "TONEWATCH_RECIPE")}
    os.environ["TONEWATCH_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TONEWATCH_RECIPE"] = "int8"
    yield cache
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root, ``$TONEWATCH_DATA``. Unset (a fresh clone): the test skips. Set to a folder that does
    not exist: the test fails, since a misconfigured CI must not pass by skipping."""
    configured = os.environ.get(DATA_ROOT_ENV, "")
    if not configured:
        pytest.skip(f"third-party datasets not configured: set ${DATA_ROOT_ENV} to the data root to run this test")
    root = Path(configured).expanduser()
    if not root.is_dir():
        pytest.fail(f"${DATA_ROOT_ENV} is {configured}, which is not a folder", pytrace=False)
    return root.resolve()


TINY_CHARACTERS = (
    "abcdefghijklmnopqrstuvwxyz0123456789!?.,:;'\"-()|"
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
    "你好我们的是了不在有这个人们要请问为什么又怎么电话网络钱退款客服经理投诉谢谢猪滚傻"
)


def build_tiny_base(directory: Path) -> Path:
    """A tiny random BERT (2 layers, hidden 32) with an XLM-R-style unigram tokenizer, saved like a real base."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = [(token, 0.0) for token in specials] + [("▁", -2.0)]
    pieces += [(character, -3.0) for character in TINY_CHARACTERS] + [("▁" + c, -2.5) for c in TINY_CHARACTERS[:26]]
    pieces.append(("<mask>", 0.0))
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = XLMRobertaTokenizerFast(tokenizer_object=tokenizer, model_max_length=128)
    config = BertConfig(
        vocab_size=len(pieces), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, type_vocab_size=2, pad_token_id=1,
    )  # fmt: skip
    import torch

    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(directory))
    fast.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    return build_tiny_base(tmp_path_factory.mktemp("tiny-base"))


def tiny_train_config(base_dir: Path, output_dir: Path, **overrides):
    from tonewatch.training.config import TrainConfig

    settings = {
        "output_dir": str(output_dir),
        "base_model": str(base_dir),
        "source_shares": {"callcenter_train": 1.0},
        "num_hidden_layers": 2,
        "max_length": 48,
        "max_turn_tokens": 24,
        "max_context_turns": 2,
        "lora_r": 4,
        "lora_alpha": 8.0,
        "batch_size": 8,
        "max_steps": 3,
        "eval_every": 2,
        "checkpoint_every": 2,
        "log_every": 1,
        "warmup_steps": 1,
        "evaluate": False,
        "threads": 1,
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def build_tiny_model_dir(base_dir: Path, output: Path, **overrides) -> Path:
    """A tonewatch model directory around the tiny base: random LoRA factors and heads, real save format."""
    import torch
    from transformers import AutoTokenizer

    from tonewatch.model.directory import save_pretrained
    from tonewatch.model.modeling import build_network
    from tonewatch.training.train import _encoder_config, add_lora, model_config_for, trainable_state

    config = tiny_train_config(base_dir, output, **overrides)
    torch.manual_seed(1)
    network = add_lora(
        build_network(model_config_for(config, _encoder_config(str(base_dir), config)), str(base_dir)),
        config,
    )
    with torch.no_grad():  # LoRA B starts at zero; make the factors matter so merging is tested
        for name, parameter in network.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    save_pretrained(
        output,
        trainable_state(network),
        model_config_for(config, network.encoder.config),
        AutoTokenizer.from_pretrained(str(base_dir)),
    )
    return output


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_base_dir, tmp_path_factory) -> Path:
    """A tiny random model (random LoRA factors and heads around the tiny base)."""
    return build_tiny_model_dir(tiny_base_dir, tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_signal_model_dir(tiny_base_dir, tmp_path_factory) -> Path:
    """A tiny random model with a signal head (``signals = true``): predicts every turn signal."""
    return build_tiny_model_dir(tiny_base_dir, tmp_path_factory.mktemp("tiny-signal-model"), signals=True)


@pytest.fixture(scope="session")
def make_tiny_config():
    """``make_tiny_config(base_dir, output_dir, **overrides)``: a TrainConfig for a few steps of a tiny model."""
    return tiny_train_config
