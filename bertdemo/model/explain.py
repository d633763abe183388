"""Token-level views of one prediction: the tokenization table, Integrated Gradients and
Gradient x Input attributions (captum), WordPiece -> word merging, and attention maps."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

from bertdemo.model import views
from bertdemo.model.classifier import Classifier
from bertdemo.model.packing import attention_for_backward
from bertdemo.validate import number


@dataclass(frozen=True)
class Attribution:
    """Integrated Gradients of one text for one class. The lists are parallel, one per WordPiece."""

    tokens: list[str]
    scores: list[float]  # signed; > 0 pushes towards `target`; normalised to max |score| = 1
    word_ids: list[int | None]
    spans: list[tuple[int, int]]  # character offsets of each token in `text` ((0, 0) for specials)
    text: str
    target: str
    probs: dict[str, float]
    delta: float  # captum's convergence delta: how far the attributions are from summing to the logit gap
    seconds: float
    method: str = "ig"  # "ig" (Integrated Gradients) or "gxi" (Gradient x Input, the instant first view)
    steps: int = 0  # IG's steps


@dataclass(frozen=True)
class AttentionMap:
    tokens: list[str]
    weights: np.ndarray  # (T, T): row = query token, column = key token it attends to
    layer: int  # 1-based
    head: int | None  # 1-based; None = mean over heads


# the columns of the tokenization table (the Predict tab shows them as headers before a first run)
TOKEN_COLUMNS = ("position", "token", "id", "special", "attention_mask", "segment", "word")


def token_table(view: views.TokenView) -> pd.DataFrame:
    """The seed's tokenization view: one row per position, in the columns TOKEN_COLUMNS."""
    columns = (range(len(view.tokens)), view.tokens, view.ids, ["yes" if s else "" for s in view.special],
               view.attention_mask, view.token_type_ids, ["" if w is None else w for w in view.word_ids])
    return pd.DataFrame(dict(zip(TOKEN_COLUMNS, columns)))


@contextlib.contextmanager
def _input_gradients_only(model: torch.nn.Module) -> Iterator[None]:
    """IG needs the gradient with respect to the embedding output, never the weights': switching
    the weights' requires_grad off skips their gradients in backward (about a third of the work).
    Only the serving model is ever explained (training runs on its own copy), under its lock."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


# Integrated Gradients' steps: the attributions' correlation with 50-step fp32 IG is >= 0.999 on
# every one of 30 bundled tweets at 16 steps (0.991 at 12, 0.909 at 8), at about half the time
# (bench/README.md, "Cheaper attributions").
IG_STEPS = 16


def integrated_gradients(clf: Classifier, text: str, target: str | None = None, n_steps: int = IG_STEPS,
                         exact: bool = False) -> Attribution:
    """Attribute the logit of `target` (default: the class the serving path predicts, so the view
    explains the label the Predict tab shows) to each input token with captum's
    LayerIntegratedGradients on the embedding layer, against a baseline of [PAD]s.

    Precision: bf16 autocast where the classifier serves in bf16 (native bf16 hardware), unless
    `exact`: the attributions match fp32 ones almost exactly (correlation, top tokens) while the
    convergence delta (how far they miss summing to the logit gap) grows but stays tiny next to
    the gaps explained, and it runs faster; `exact=True` runs fp32 for exact completeness
    (figures: bench/README.md, "Figures behind design choices"). It runs the fp32 model under
    autocast (gradients cannot flow through the packed serving weights), and on the CPU the
    attention takes SDPA's math kernel, whose bf16 backward is much faster there than the flash
    kernel's."""
    return _attribute(clf, text, target, "ig", n_steps, exact)


def gradient_x_input(clf: Classifier, text: str, target: str | None = None) -> Attribution:
    """Gradient x Input on the embedding output (captum's LayerGradientXActivation): one forward
    and one backward, so an instant first view that Integrated Gradients then replaces. It is a
    local, first-order picture: it can differ from IG where the model saturates."""
    return _attribute(clf, text, target, "gxi", 1, False)


def _attribute(clf: Classifier, text: str, target: str | None, method: str, n_steps: int,
               exact: bool) -> Attribution:
    t0 = time.perf_counter()
    enc = clf.tokenizer(text, truncation=True, max_length=clf.max_length, return_offsets_mapping=True,
                        return_tensors="pt")
    ids = enc["input_ids"].to(clf.device)  # (1, T)
    mask = enc["attention_mask"].to(clf.device)
    # baseline: same length, [CLS] ... [SEP] kept, every other token replaced by [PAD]
    special = torch.tensor(clf.tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True),
                           device=clf.device, dtype=torch.bool)
    baseline = torch.where(special, ids[0], torch.full_like(ids[0], clf.tokenizer.pad_token_id))[None]
    low_precision = clf.amp_dtype is not None and not exact
    served = clf.predict([text])[0]  # the serving path's label and probabilities (int8 or PyTorch)
    target_idx = clf.labels.index(served.label if target is None else target)

    with contextlib.ExitStack() as stack:
        stack.enter_context(clf.exclusive(3 * n_steps * ids.shape[1]))  # a backward costs ~2 forwards
        model = clf.model
        stack.enter_context(_input_gradients_only(model))
        if low_precision:
            stack.enter_context(torch.autocast(clf.device.type, dtype=clf.amp_dtype))
            stack.enter_context(attention_for_backward(clf.device))

        def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return model(input_ids=input_ids, attention_mask=attention_mask).logits.float()  # (B, C)

        if method == "ig":
            lig = LayerIntegratedGradients(forward, model.base_model.embeddings)
            attr, delta = lig.attribute(inputs=ids, baselines=baseline, additional_forward_args=(mask,),
                                        target=target_idx, n_steps=n_steps, internal_batch_size=n_steps,
                                        return_convergence_delta=True)
            delta = float(delta.abs().item())
        else:
            attr = LayerGradientXActivation(forward, model.base_model.embeddings).attribute(
                ids, target=target_idx, additional_forward_args=(mask,))
            delta = float("nan")  # no completeness property to check
    scores = attr.sum(-1)[0].detach().float().cpu().numpy()  # (T,) sum over the hidden dimension
    peak = np.abs(scores).max()
    if peak > 0:
        scores = scores / peak
    return Attribution(
        tokens=clf.tokenizer.convert_ids_to_tokens(ids[0].tolist()), scores=[float(x) for x in scores],
        word_ids=enc.word_ids(), spans=[tuple(map(int, o)) for o in enc["offset_mapping"][0].tolist()],
        text=text, target=clf.labels[target_idx], probs=dict(served.probs), delta=delta,
        seconds=time.perf_counter() - t0, method=method, steps=n_steps if method == "ig" else 0,
    )


def merge_words(a: Attribution) -> tuple[list[str], list[float]]:
    """Sum WordPiece attributions per word; words come from the text itself (original casing)."""
    words: list[str] = []
    scores: list[float] = []
    word_start = 0
    last: int | None = None
    for wid, (start, end), s, tok in zip(a.word_ids, a.spans, a.scores, a.tokens):
        if wid is not None and wid == last:  # a continuation piece (##...) of the same word
            scores[-1] += s
            words[-1] = a.text[word_start:end]
            continue
        if wid is None:
            words.append(tok)  # [CLS], [SEP]
        else:
            word_start = start
            words.append(a.text[start:end])
        scores.append(s)
        last = wid
    peak = max((abs(x) for x in scores), default=0.0)
    return words, [x / peak if peak else 0.0 for x in scores]


def highlighted(a: Attribution, merge: bool = False, show_special: bool = False) -> list[tuple[str, float | None]]:
    """(piece, score) pairs in the format of gr.HighlightedText with numeric scores in [-1, 1]."""
    tokens, scores = merge_words(a) if merge else (a.tokens, a.scores)
    out = []
    for tok, s in zip(tokens, scores):
        if tok in ("[CLS]", "[SEP]", "[PAD]") and not show_special:
            continue
        out.append((tok, round(float(s), 4)))
    return out


def attention_map(clf: Classifier, text: str, layer: int, head: int | None = None) -> AttentionMap:
    """Attention of one layer (1-based) and head (1-based, None = mean over heads)."""
    layer = int(number(layer, "The layer", 1, views.num_layers(clf), whole=True))
    if head is not None:
        head = int(number(head, "The head", 1, views.num_heads(clf), whole=True))
    view, maps = views.attentions(clf, text)  # (L, H, T, T)
    m = maps[layer - 1]
    weights = m.mean(0) if head is None else m[head - 1]
    return AttentionMap(tokens=view.tokens, weights=weights, layer=layer, head=head)
