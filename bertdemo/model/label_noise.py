"""Likely label errors: confident learning (cleanlab) on out-of-sample probabilities of a cheap
second model, so that the Annotate tab's "Suspicious labels" queue needs no pass of the network."""

from __future__ import annotations

import numpy as np

from bertdemo.errors import NotReady

SUSPICIOUS_FOLDS = 5


def find_suspicious(rows: list[tuple[int, str, str | None, list]], labels: tuple[str, ...]) -> list[int]:
    """Ids of likely mislabelled rows, most suspicious first: confident learning
    (cleanlab.find_label_issues) on out-of-sample probabilities. rows: (id, cleaned text, label,
    stored probs of the active version) of labelled examples.

    The stored probabilities are in-sample for most labelled rows (the version was trained on
    them), and confident learning needs out-of-sample ones. So a cheap second model, a
    logistic-loss linear model (SGD) on TF-IDF word 1-2-grams plus the stored probabilities, is
    fitted with 5-fold cross_val_predict: each row's probabilities come from a model that never
    saw its label. The stored scores still carry what the fine-tuned model memorised of the
    training labels, so this under-reports noise the BERT model absorbed."""
    from cleanlab.filter import find_label_issues
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.array([labels.index(r[2]) for r in rows if r[2] in labels])
    rows = [r for r in rows if r[2] in labels]
    counts = np.bincount(y, minlength=len(labels)) if len(y) else np.zeros(len(labels), int)
    if len(rows) < 20 or (counts < SUSPICIOUS_FOLDS).any():
        raise NotReady(f"Confident learning needs at least {SUSPICIOUS_FOLDS} labelled examples of every "
                         f"class; have {dict(zip(labels, counts.tolist()))}.")
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=30_000, sublinear_tf=True,
                            dtype=np.float32).fit_transform([r[1] for r in rows])
    stored = np.array([r[3] if len(r[3]) == len(labels) else [1 / len(labels)] * len(labels) for r in rows])
    features = hstack([tfidf, csr_matrix(stored)]).tocsr()  # (n, vocab + classes)
    folds = StratifiedKFold(n_splits=SUSPICIOUS_FOLDS, shuffle=True, random_state=0)
    # logistic loss so predict_proba is a probability; SGD: much faster than lbfgs here, as accurate
    model = SGDClassifier(loss="log_loss", alpha=1e-5, max_iter=20, tol=None, random_state=0)
    oos = cross_val_predict(model, features, y, cv=folds, method="predict_proba")  # (n, classes)
    order = find_label_issues(y, oos, return_indices_ranked_by="self_confidence")
    return [rows[int(i)][0] for i in order]
