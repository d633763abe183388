"""The score-ranked queues read in SQL (db/keysets.py) on SQLite and PostgreSQL: each queue's order
is model/strategies.py's over the same probabilities (ties by id), "Model disagrees" joins the
current labels, the dataset filter keeps its own ids, and nothing is capped (the old 200k limit)."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from bertdemo.db import examples, keysets, versions
from bertdemo.db.examples import NewExample
from bertdemo.model import strategies

LABELS = ("negative", "neutral", "positive")


def _seed(engine, n=400):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    probs[7] = probs[5]  # ties: the smaller id first
    rows = [NewExample(f"tweet {i}", f"tweet {i}", LABELS[i % 3] if i % 2 else None, dataset="a" if i % 4 else "b")
            for i in range(n)]
    with Session(engine) as s, s.begin():
        examples.import_examples(s, rows, "dataset", "dataset", LABELS)
        ids = keysets.example_ids(s).tolist()
        vid = versions.add_version(s, name="v1", path="models/v1", base_model="x", is_active=True).id
        other = versions.add_version(s, name="v2", path="models/v2", base_model="x").id
        versions.save_scores(s, vid, ids, probs, LABELS)
        versions.save_scores(s, other, ids, probs[::-1], LABELS)  # another version's scores are never read
    return ids, probs, vid


def test_score_queues_are_read_in_the_strategies_order(engine):
    ids, probs, vid = _seed(engine)
    with Session(engine) as s:
        assert keysets.score_queue(s, "uncertain", vid).tolist() == strategies.rank(ids, probs, "entropy")
        assert keysets.score_queue(s, "margin", vid).tolist() == strategies.rank(ids, probs, "margin")
        in_b = set(keysets.ids_of_dataset(s, "b").tolist())
        assert len(in_b) == 100
        assert keysets.score_queue(s, "margin", vid, "b").tolist() == [
            i for i in strategies.rank(ids, probs, "margin") if i in in_b]
        # disagreements: labelled, predicted otherwise, most confident first (ties by id)
        label = {i: LABELS[n % 3] for n, i in enumerate(ids) if n % 2}
        want = sorted((i for n, i in enumerate(ids) if i in label and LABELS[int(np.argmax(probs[n]))] != label[i]),
                      key=lambda i: (-round(float(probs[ids.index(i)].max()), 12), i))
        assert keysets.score_queue(s, "disagree", vid).tolist() == want
        assert keysets.score_queue(s, "disagree", vid, labels=LABELS).tolist() == want
        assert examples.queue_ids(s, "disagree", vid) == want and examples.queue_ids(s, "margin", vid, limit=3) == \
            strategies.rank(ids, probs, "margin")[:3]


def test_labelled_examples_as_coded_arrays(engine):
    ids, _probs, _vid = _seed(engine, n=40)
    with Session(engine) as s:
        examples.set_labels(s, [(ids[3], "positive", 1, "sarcasm")], "ann", "annotator", (*LABELS, "sarcasm"), "b1")
        got = keysets.labelled(s, LABELS)
        want = {i: lab for i, lab in examples.current_labels(s).items()}
        assert got.ids.tolist() == sorted(want)
        assert got.classes.tolist() == [LABELS.index(want[i]) if want[i] in LABELS else -1 for i in sorted(want)]
        assert -1 in got.classes.tolist()
        of_b = keysets.labelled(s, LABELS, "b")
        assert set(of_b.ids.tolist()) == set(want) & set(keysets.ids_of_dataset(s, "b").tolist())


def test_weight_inputs_are_what_the_orm_reads_give(engine):
    """keysets.weight_inputs (the quick model's refit) = examples.datasets_of + label_confidences:
    the crowd's confidence only while the label is the imported one, None where there is none."""
    metas = [{"label_confidence": 0.7}, {"label_confidence": "0.55"}, {}, {"label_confidence": None},
             {"other": 1}, {"label_confidence": 1}]
    rows = [NewExample(f"w {i}", f"w {i}", LABELS[i % 3], meta=m, dataset="a" if i % 2 else "b")
            for i, m in enumerate(metas)] + [NewExample("unlabelled", "unlabelled")]
    with Session(engine) as s, s.begin():
        examples.import_examples(s, rows, "dataset", "dataset", LABELS)
        ids = keysets.example_ids(s).tolist()
        examples.set_labels(s, [(ids[5], LABELS[2], 1, "negative")], "ann", "annotator", LABELS, "b1")  # relabelled
    with Session(engine) as s:
        wanted = ids[:6][::-1]
        got = keysets.weight_inputs(s, wanted)
        confidence, datasets = examples.label_confidences(s, wanted), examples.datasets_of(s, wanted)
        assert got.confidences == [confidence.get(i) for i in wanted]
        assert got.datasets == [datasets[i] for i in wanted]
        assert got.confidences == [None, None, None, None, 0.55, 0.7]


def test_ids_and_texts_in_bulk(engine):
    ids, _probs, vid = _seed(engine, n=30)
    with Session(engine) as s:
        assert keysets.example_ids(s).tolist() == sorted(ids)
        assert sorted(keysets.scored_ids(s, vid).tolist()) == sorted(ids)
        assert keysets.texts_by_id(s, ids[:2]) == {ids[0]: "tweet 0", ids[1]: "tweet 1"}
        assert keysets.id_array(s, examples.select(examples.Example.id).where(
            examples.Example.id.in_(ids[:3]))).tolist() == ids[:3]
