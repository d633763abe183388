"""Inspection views of a Classifier: what the model sees of a text and what it computes inside.

The tokenization of one text (`tokenize` -> TokenView), every layer's hidden states (for one
text or many), the attention maps of every layer and head, and the encoder's shape. These are
read-only looks into the serving model, for the Predict and Embeddings tabs; the serving path
itself (predict, embed, precision, int8) is model/classifier.py. They run fp32 without
autocast (similarities and attention weights need the precision) and through
`Classifier.exclusive`, so they never overlap a prediction on the shared cores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bertdemo.errors import BadInput
from bertdemo.model.classifier import Classifier, length_sorted_batches


@dataclass(frozen=True)
class TokenView:
    """One text as the model sees it. The lists are parallel: one entry per position."""

    tokens: list[str]
    ids: list[int]
    attention_mask: list[int]  # 1 = attended, 0 = [PAD]
    special: list[bool]  # [CLS], [SEP], [PAD]
    word_ids: list[int | None]  # which word of the text each WordPiece came from
    token_type_ids: list[int]
    truncated: bool  # the text had more tokens than max_length (or than the padded length)
    length: int  # tokens of the whole text with [CLS] and [SEP], before any truncation

    @property
    def real_tokens(self) -> int:
        """Positions the model attends to (the rest is [PAD])."""
        return sum(self.attention_mask)


@dataclass(frozen=True)
class HiddenStates:
    """Per-layer vectors of one text: layer 0 is the embedding output."""

    view: TokenView
    states: np.ndarray  # (num_layers + 1, T, hidden), float32


def num_layers(clf: Classifier) -> int:
    """Encoder layers (hidden-state layers are 0..num_layers, 0 = the embedding output)."""
    return int(clf.model.config.num_hidden_layers)


def num_heads(clf: Classifier) -> int:
    return int(clf.model.config.num_attention_heads)


def tokenize(clf: Classifier, text: str, pad_to: int | None = None) -> TokenView:
    """The tokenization of one text: WordPieces, ids, specials, mask (and [PAD] if pad_to)."""
    if pad_to is not None and not 2 <= pad_to <= 512:
        raise BadInput(f"The padded length must be a whole number from 2 to 512, got {pad_to}.")
    limit = pad_to or clf.max_length
    enc = clf.tokenizer(text, truncation=True, max_length=limit, padding="max_length" if pad_to else False,
                        return_special_tokens_mask=True, return_token_type_ids=True)
    # the untruncated count, to say whether (and how much) was cut
    full = len(clf.tokenizer(text, truncation=False)["input_ids"])
    ids = enc["input_ids"]
    return TokenView(
        tokens=clf.tokenizer.convert_ids_to_tokens(ids), ids=list(ids),
        attention_mask=list(enc["attention_mask"]),
        special=[bool(s) for s in enc["special_tokens_mask"]],
        word_ids=list(enc.word_ids()), token_type_ids=list(enc["token_type_ids"]),
        truncated=full > limit, length=full,
    )


def hidden_states(clf: Classifier, text: str) -> HiddenStates:
    """Every layer's vectors for one text, fp32 (no autocast: similarities need precision)."""
    view = tokenize(clf, text)
    ids = torch.tensor([view.ids], device=clf.device)
    mask = torch.tensor([view.attention_mask], device=clf.device)
    with clf.exclusive(ids.numel()), torch.inference_mode():
        out = clf.model.base_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    # tuple of (1, T, H) -> (L+1, T, H)
    states = torch.stack([h[0] for h in out.hidden_states]).float().cpu().numpy()
    return HiddenStates(view=view, states=states)


def hidden_states_batch(clf: Classifier, texts: Sequence[str], batch_size: int = 32) -> list[HiddenStates]:
    """hidden_states() for many texts at once, in the order of `texts`.

    Length-sorted batches padded to their longest text; each result is cut back to its own
    tokens, so it equals hidden_states(text) up to float rounding (padding is masked). fp32."""
    if not texts:
        return []
    views = [tokenize(clf, t) for t in texts]
    out: list[HiddenStates | None] = [None] * len(texts)
    for idx, batch in length_sorted_batches(clf.tokenizer, texts, clf.max_length, batch_size):
        batch = {k: v.to(clf.device) for k, v in batch.items()}
        # the lock per batch, as predictions take it: a prediction waits for one batch, not all
        with clf.exclusive(batch["input_ids"].numel()), torch.inference_mode():
            hidden = clf.model.base_model(**batch, output_hidden_states=True).hidden_states
        stacked = torch.stack(hidden, dim=1).float().cpu().numpy()  # (B, L+1, T, H)
        for row, i in enumerate(idx):
            n = len(views[i].ids)  # padding is on the right: the first n positions are real
            out[i] = HiddenStates(view=views[i], states=np.ascontiguousarray(stacked[row, :, :n]))
    return out  # type: ignore[return-value]


def attentions(clf: Classifier, text: str) -> tuple[TokenView, np.ndarray]:
    """Attention probabilities (num_layers, num_heads, T, T), fp32.

    The fast SDPA kernels do not return attention weights, so they are recomputed from each
    layer's input: softmax(Q K^T / sqrt(d_head) + mask), exactly what eager attention does.
    """
    hs = hidden_states(clf, text)
    layers = _attention_modules(clf)
    n_heads = num_heads(clf)
    maps = []
    with clf.exclusive(len(hs.view.ids)), torch.inference_mode():
        for i, attn in enumerate(layers):
            h = torch.from_numpy(hs.states[i]).to(clf.device)[None]  # (1, T, H)
            d = h.shape[-1] // n_heads
            q = attn.query(h).view(1, -1, n_heads, d).transpose(1, 2)  # (1, nh, T, hs)
            k = attn.key(h).view(1, -1, n_heads, d).transpose(1, 2)
            scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (1, nh, T, T)
            maps.append(scores.softmax(-1)[0].float().cpu().numpy())
    return hs.view, np.stack(maps)


def _attention_modules(clf: Classifier) -> list:
    try:
        return [layer.attention.self for layer in clf.model.base_model.encoder.layer]
    except AttributeError as exc:
        raise NotImplementedError(
            f"attention maps need a BERT-style encoder (layer.attention.self.query/key); "
            f"{type(clf.model).__name__} has another layout"
        ) from exc
