"""Training text: read files, folders, globs and JSONL, and cache them as token ids.

The cache is one flat array of token ids (documents separated by the
tokenizer's eos token) in ``.npy`` format, loaded memory-mapped; it is keyed by
the tokenizer and the source list so a changed input is re-tokenized.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".tex", ".org", ".adoc", ".html", ".js", ".ts", ".lua", ".c", ".h",
                 ".rs", ".go", ".java", ".sh", ".toml", ".yaml", ".yml", ".json", ".css", ".cfg", ".ini", ""}


def _expand(source: str) -> list[Path]:
    p = Path(os.path.expanduser(source))
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES
                      and not any(part.startswith(".") for part in f.relative_to(p).parts))
    if p.is_file():
        return [p]
    matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(source), recursive=True) if Path(m).is_file())
    if not matches:
        raise FileNotFoundError(f"no training text found at {source!r} (not a file, folder or matching glob)")
    return matches


def iter_texts(sources: list[str]) -> Iterator[str]:
    """Yield documents: each text file whole, each JSONL line's ``text`` field."""
    for source in sources:
        for f in _expand(source):
            if f.suffix == ".jsonl":
                with open(f, encoding="utf-8") as fh:
                    for line in fh:
                        if line.strip():
                            yield json.loads(line)["text"]
                continue
            try:
                yield f.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # binary or unreadable: not training text


def token_cache(sources: list[str], tokenizer, cache_dir: str | Path) -> np.ndarray:
    """Token ids of all ``sources`` as one memory-mapped array (built once per sources+tokenizer)."""
    files = [(str(f), f.stat().st_mtime_ns, f.stat().st_size) for s in sorted(sources) for f in _expand(s)]
    vocab = hashlib.sha1(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
    key = hashlib.sha1(json.dumps([sorted(sources), vocab, files]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"tokens-{key}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        dtype = np.uint16 if len(tokenizer) < 65536 else np.uint32
        chunks, batch = [], []
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id

        def flush():
            if not batch:
                return
            for ids in tokenizer(batch, add_special_tokens=False).input_ids:
                chunks.append(np.asarray(ids + [eos], dtype=dtype))
            batch.clear()
        for text in iter_texts(sources):
            batch.append(text)
            if len(batch) >= 64:
                flush()
        flush()
        if not chunks:
            raise ValueError(f"the training sources {sources} hold no text")
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")  # one per process: DDP ranks build it at once
        np.save(tmp, np.concatenate(chunks))
        tmp.replace(path)
    return np.load(path, mmap_mode="r")
