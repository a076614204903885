"""The model's tokenizer through the ``tokenizers`` library alone.

The engine needs only a small part of a transformers tokenizer: encode
without special tokens, decode, and the ids of the special tokens.
``tokenizer.json`` holds the vocabulary and pipeline and
``tokenizer_config.json`` (or ``special_tokens_map.json``) names the special
tokens, so reading those two files avoids importing transformers at start-up.
Directories without them are loaded by transformers instead (see loading.py).
"""
from __future__ import annotations

import json
import types
from pathlib import Path

ROLES = ("mask", "pad", "cls", "sep", "bos", "eos", "unk")


class MissingTokenizerFiles(FileNotFoundError):
    """The directory needs transformers' AutoTokenizer."""


def _token_name(value) -> str | None:
    if isinstance(value, dict):  # older configs store AddedToken dicts
        value = value.get("content")
    return value if isinstance(value, str) else None


class FastTokenizer:
    """Encode/decode with a ``tokenizers.Tokenizer`` and expose ``<role>_token_id`` like transformers does."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer
        files = [path / "tokenizer_config.json", path / "special_tokens_map.json"]
        if not (path / "tokenizer.json").is_file() or not any(f.is_file() for f in files):
            raise MissingTokenizerFiles(f"{path} has no tokenizer.json with a tokenizer_config.json")
        self._path = path
        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        names: dict = {}
        for f in reversed(files):
            if f.is_file():
                names.update(json.loads(f.read_text(encoding="utf-8")))
        for role in ROLES:
            name = _token_name(names.get(f"{role}_token"))
            setattr(self, f"{role}_token", name)
            setattr(self, f"{role}_token_id", self._tok.token_to_id(name) if name else None)

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def backend_tokenizer(self):
        return self._tok

    def __call__(self, text: str | list[str], add_special_tokens: bool = True):
        if isinstance(text, list):
            encoded = self._tok.encode_batch(text, add_special_tokens=add_special_tokens)
            return types.SimpleNamespace(input_ids=[e.ids for e in encoded])
        return types.SimpleNamespace(input_ids=self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self._tok.id_to_token(i) for i in ids]

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def save_pretrained(self, path: str) -> None:  # a training checkpoint names its tokenizer by copying it
        import shutil
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(self._path / f, Path(path) / f)

    def decode(self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool = False) -> str:
        # Diffill's tokenizers are byte-level and never clean up spaces; a WordPiece directory loads via
        # transformers, whose decode honours clean_up_tokenization_spaces.
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        found = self._tok.token_to_id(token)
        return self.unk_token_id if found is None else found
