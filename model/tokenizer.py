"""The tokenizer of an ONNX export, loaded with the ``tokenizers`` library alone.

An export keeps the model's ``tokenizer.json`` and ``tokenizer_config.json``
(what transformers' ``save_pretrained`` writes). The classifier needs three
things of a tokenizer: the token ids of texts without special tokens
(``tokenizer(texts, add_special_tokens=False)["input_ids"]``), and the ids of
its ``<s>``, ``</s>`` and ``<pad>`` tokens. :class:`ExportTokenizer` gives
exactly those from ``tokenizers.Tokenizer.from_file``, so that the ONNX path
imports neither transformers nor torch (about 300 MB of a labelling process's
memory, and seconds of its start). The ids are the same as transformers'
wrapper of the same file gives: without truncation or padding, the wrapper
calls the same Rust tokenizer (``tests/model/test_tokenizer.py``; checked on
every callcenter_dev turn with its context, docs/benchmarks.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tonewatch.model.types import ModelDirectoryError

TOKENIZER_NAME = "tokenizer.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
SPECIAL_TOKENS = {"bos": "<s>", "eos": "</s>", "pad": "<pad>"}
"""XLM-R's special tokens, used where ``tokenizer_config.json`` does not name them."""


class ExportTokenizer:
    """``tokenizers.Tokenizer`` behind the interface the classifier uses of transformers' tokenizer."""

    def __init__(self, tokenizer, bos_token_id: int, eos_token_id: int, pad_token_id: int):
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos_token_id, eos_token_id, pad_token_id

    @classmethod
    def from_directory(cls, directory: str | Path) -> ExportTokenizer:
        """The tokenizer saved in ``directory`` (``tokenizer.json``, special tokens from ``tokenizer_config.json``)."""
        from tokenizers import Tokenizer

        directory = Path(directory)
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_NAME))
        config_path = directory / TOKENIZER_CONFIG_NAME
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        ids = {}
        for role, default in SPECIAL_TOKENS.items():
            token = config.get(f"{role}_token") or default
            if isinstance(token, dict):  # an AddedToken as transformers serialises it
                token = token.get("content", default)
            token_id = tokenizer.token_to_id(token)
            if token_id is None:
                raise ModelDirectoryError(f"{directory / TOKENIZER_NAME} has no {role} token {token!r}")
            ids[role] = token_id
        return cls(tokenizer, ids["bos"], ids["eos"], ids["pad"])

    def __call__(self, text: str | Sequence[str], add_special_tokens: bool = True) -> dict[str, list]:
        """``{"input_ids": ids}`` of one text, or a list of ids per text of a list (the batch API: the texts are
        encoded in parallel, outside the GIL)."""
        if isinstance(text, str):
            return {"input_ids": self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids}
        encodings = self.tokenizer.encode_batch(list(text), add_special_tokens=add_special_tokens)
        return {"input_ids": [encoding.ids for encoding in encodings]}
