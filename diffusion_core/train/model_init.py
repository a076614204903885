"""Starting points for training: from a config, a masked LM, or a bare encoder.

``vocabulary transfer`` moves a pretrained model onto a new tokenizer: each new
token's input embedding becomes the mean of the old model's embeddings of the
pieces the old tokenizer splits it into (lower-cased when the old tokenizer is
uncased), so a cased byte-level vocabulary starts from what an uncased
WordPiece encoder already knows instead of from noise.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM

log = logging.getLogger(__name__)

SMALL_CONFIG = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                    max_position_embeddings=512)


def from_scratch(tokenizer, **overrides) -> BertForMaskedLM:
    cfg = BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **{**SMALL_CONFIG, **overrides})
    return BertForMaskedLM(cfg)


def _vocab_transfer(new_tok, old_tok, old_emb: torch.Tensor, new_emb: torch.Tensor) -> int:
    """Fill ``new_emb`` rows from ``old_emb`` by piece-averaging; returns how many tokens fell back to unk."""
    lowercase = bool(getattr(old_tok, "do_lower_case", False)) or old_tok("A", add_special_tokens=False).input_ids == \
        old_tok("a", add_special_tokens=False).input_ids
    fallback = 0
    old_vocab = old_tok.get_vocab()
    if old_tok.unk_token_id is not None:
        unk_emb = old_emb[old_tok.unk_token_id]
    else:  # e.g. a byte-level BPE without an unk token
        unk_emb = old_emb.mean(0)
    special = {t: getattr(old_tok, f"{n}_token", None) for t, n in
               [(new_tok.mask_token, "mask"), (new_tok.pad_token, "pad"), (new_tok.unk_token, "unk"),
                (new_tok.cls_token, "cls"), (new_tok.sep_token, "sep")]}
    for new_id in range(len(new_tok)):
        piece = new_tok.convert_ids_to_tokens(new_id)
        if piece in special and special[piece] is not None:
            new_emb[new_id] = old_emb[old_tok.convert_tokens_to_ids(special[piece])]
            continue
        raw = new_tok.decode([new_id], clean_up_tokenization_spaces=False)
        old_id = old_vocab.get(piece) if piece is not None else None
        if old_id is not None and old_id < len(old_emb) and \
                old_tok.decode([old_id], clean_up_tokenization_spaces=False) == raw:
            new_emb[new_id] = old_emb[old_id]  # the same piece meaning the same text: keep what it learned
            continue
        text = raw.strip()
        text = text.lower() if lowercase else text
        old_ids = [i for i in old_tok(text, add_special_tokens=False).input_ids if i != old_tok.unk_token_id] if text else []
        if old_ids:
            new_emb[new_id] = old_emb[old_ids].mean(0)
        else:  # whitespace runs, control bytes, <null>: start near the unk embedding
            new_emb[new_id] = unk_emb + 0.02 * torch.randn_like(new_emb[new_id])
            fallback += 1
    return fallback


def from_pretrained(path: str | Path, tokenizer=None) -> BertForMaskedLM | torch.nn.Module:
    """A masked LM from ``path`` (with a fresh head if the directory holds an encoder only),
    moved onto ``tokenizer`` by vocabulary transfer when one is given."""
    path = str(path)
    cfg = AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    old_tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    archs = cfg.architectures or []
    has_head = any(a.endswith("ForMaskedLM") for a in archs)
    if has_head:
        model = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True, trust_remote_code=False,
                                                     local_files_only=True)
    else:  # encoder only: build the MaskedLM class of the same family and copy the encoder in
        encoder = AutoModel.from_pretrained(path, use_safetensors=True, trust_remote_code=False,
                                            local_files_only=True)
        model = AutoModelForMaskedLM.from_config(cfg)
        base = getattr(model, model.base_model_prefix)
        missing, unexpected = base.load_state_dict(encoder.state_dict(), strict=False)
        log.info("encoder copied into a new masked-LM head (missing %s, unexpected %s)", missing, unexpected)
    if tokenizer is None:
        return model
    old_emb = model.get_input_embeddings().weight.data.clone()  # (V_old, H)
    new_emb = torch.empty(len(tokenizer), old_emb.shape[1])      # (V_new, H)
    fallback = _vocab_transfer(tokenizer, old_tok, old_emb, new_emb)
    model.resize_token_embeddings(len(tokenizer))
    model.get_input_embeddings().weight.data.copy_(new_emb)
    model.tie_weights()
    model.config.pad_token_id = tokenizer.pad_token_id
    log.info("vocabulary transfer: %d of %d tokens fell back to unk", fallback, len(tokenizer))
    return model
