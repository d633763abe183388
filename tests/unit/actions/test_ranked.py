"""The cached score-ranked queues (actions/ranked.py) through Labelling: a cached queue answers
without re-ranking, and is read again when the active version changes, when the version's stored
scores change (a re-scoring adds rows), and, for "Model disagrees", when a label changes; the
counts a person sees stay right."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.actions.ranked import MAX_ENTRIES, RankedQueues
from bertdemo.config import Settings
from bertdemo.db import examples, keysets, versions
from bertdemo.services import Services
from tests.unit.actions.test_annotate import LABELS, seed


@pytest.fixture
def services(tmp_path) -> Services:
    return Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False))


@pytest.fixture
def counted(monkeypatch) -> list[str]:
    """The queues ranked in SQL since the test began: the score queues' reads (keysets.score_queue,
    which the cache calls with the app's labels) and the others' (examples.queue_ids)."""
    calls: list[str] = []

    def spy_on(module, name):
        real = getattr(module, name)

        def spy(s, queue, *args, **kwargs):
            calls.append(queue)
            return real(s, queue, *args, **kwargs)

        monkeypatch.setattr(module, name, spy)

    spy_on(examples, "queue_ids")
    spy_on(keysets, "score_queue")
    return calls


PROBS = [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.34, 0.33, 0.33], [0.1, 0.1, 0.8]]


def test_the_uncertain_queue_is_ranked_once_and_handed_out_from_the_cache(services, counted):
    ids = seed(services, [("a", "negative"), ("b", "positive"), ("c", None), ("d", "neutral")], PROBS)
    acts = AnnotateAdapters.create(services).labelling
    first = acts.next_item("uncertain", "", [], "ann")
    second = acts.next_item("uncertain", "", [], "bob")  # ann holds the first: bob gets the next one
    assert first.id == ids[2] and second.id != first.id
    assert (first.remaining, first.team_remaining) == (4, 4)
    assert (second.remaining, second.team_remaining) == (3, 4)  # ann's held item is not bob's to take
    acts.save_label(first.id, "neutral", first.version, "ann")  # a label does not move an entropy ranking
    third = acts.next_item("uncertain", "", [first.id], "ann")
    assert third.id not in (first.id, second.id) and (third.remaining, third.team_remaining) == (2, 3)
    assert acts.progress("uncertain", seen=[first.id]) == (3, 3)
    assert counted == ["uncertain"]  # ranked in SQL once for all of it


def test_new_scores_of_the_version_or_a_new_active_version_are_read_again(services, counted):
    ids = seed(services, [("a", "negative"), ("b", "positive"), ("c", None), ("d", "neutral")], PROBS)
    acts = AnnotateAdapters.create(services).labelling
    assert acts.queue_ids("uncertain")[0] == ids[2]
    with Session(services.engine) as s, s.begin():  # a re-scoring in progress adds the version's rows
        more = examples.import_examples(s, [examples.NewExample("e", "e")], "dataset", "dataset", LABELS)
        assert more.added == 1
        new_id = max(ids) + 1
        v1 = versions.active_version(s)
        versions.save_scores(s, v1.id, [new_id], np.asarray([[1 / 3, 1 / 3, 1 / 3]]), LABELS)
    assert acts.queue_ids("uncertain")[0] == new_id  # the flattest scores now
    with Session(services.engine) as s, s.begin():  # version 2 ranks the other way round
        v2 = versions.add_version(s, name="v2", path="/nowhere2", base_model="x", is_active=False)
        versions.save_scores(s, v2.id, ids + [new_id], np.asarray([[0.34, 0.33, 0.33]] + [[0.9, 0.05, 0.05]] * 4),
                             LABELS)
        versions.activate_version(s, v2.id)
    assert acts.queue_ids("uncertain")[0] == ids[0]
    assert acts.queue_ids("uncertain")[0] == ids[0]
    assert counted == ["uncertain"] * 3  # once per change, not per call


def test_the_disagree_queue_follows_label_changes(services, counted):
    ids = seed(services, [("a", "negative"), ("b", "positive"), ("c", None), ("d", "neutral")], PROBS)
    acts = AnnotateAdapters.create(services).labelling
    assert acts.queue_ids("disagree") == [ids[3], ids[1]]
    assert acts.queue_ids("disagree") == [ids[3], ids[1]]
    assert counted == ["disagree"]
    item = acts.next_item("disagree", "", [], "ann")
    acts.save_label(item.id, "positive", item.version, "ann")  # now the model agrees with d
    assert acts.queue_ids("disagree") == [ids[1]]
    assert counted == ["disagree", "disagree"]


def test_the_cache_keeps_a_bounded_number_of_queues(services):
    seed(services, [("a", "negative"), ("b", "positive")], PROBS[:2])
    cache = RankedQueues()
    with Session(services.engine) as s:
        vid = versions.active_version(s).id
        for n in range(40):
            cache.get(s, "uncertain", vid, dataset=f"set{n}")
    assert len(cache._entries) == MAX_ENTRIES


def test_the_unlabeled_queue_is_kept_up_to_date_without_reading_it_again(services, counted):
    ids = seed(services, [(f"tweet {i}", None) for i in range(5)])
    acts = AnnotateAdapters.create(services).labelling
    first = acts.next_item("unlabeled", "", [], "ann")
    assert (first.id, first.remaining, first.team_remaining) == (ids[0], 5, 5)
    acts.save_label(first.id, "neutral", first.version, "ann")
    assert acts.queue_ids("unlabeled") == ids[1:]  # the labelled one left, read from the history only
    second = acts.next_item("unlabeled", "", [], "ann")
    assert (second.id, second.remaining, second.team_remaining) == (ids[1], 4, 4)
    assert counted == ["unlabeled"]
    acts.undo(first.id, "ann")  # unlabelled again: back in the queue, in its place
    assert acts.queue_ids("unlabeled") == ids
    with Session(services.engine) as s, s.begin():  # an import adds unlabelled rows without a history row
        examples.import_examples(s, [examples.NewExample("new", "new")], "import", "bob", LABELS)
    assert acts.queue_ids("unlabeled") == ids + [max(ids) + 1]
    assert counted == ["unlabeled"] * 3


def test_with_two_annotations_per_item_unfinished_items_still_come_first(services):
    ids = seed(services, [(f"tweet {i}", None) for i in range(4)])
    adapters = AnnotateAdapters.create(services)
    adapters.work.set_overlap(2, None)  # no accounts: this machine's one person is admin
    acts = adapters.labelling
    item = acts.next_item("unlabeled", "", [], "guest-a")
    acts.save_label(item.id, "positive", item.version, "guest-a")
    assert acts.queue_ids("unlabeled") == [item.id] + [i for i in ids if i != item.id]
    other = acts.next_item("unlabeled", "", [], "guest-b")
    assert other.id == item.id  # the second, independent annotation of the same item


def test_breaking_ties_and_entropy_are_read_from_sql_in_the_strategies_order(services, counted):
    """The stored margin (migration 0009) orders "Breaking ties" in SQL exactly as model/strategies.py
    ranks the same probabilities (ties by id); "Most uncertain" likewise by entropy; the dataset
    filter keeps only its own ids, in the same order."""
    from bertdemo.model import strategies

    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=300)
    probs[10], probs[11] = probs[11], probs[11]  # a tie: the smaller id first
    ids = seed(services, [(f"tweet number {n}", None) for n in range(300)], probs)
    acts = AnnotateAdapters.create(services).labelling
    assert acts.queue_ids("margin") == strategies.rank(ids, probs, "margin")
    assert acts.queue_ids("uncertain") == strategies.rank(ids, probs, "entropy")
    assert counted == ["margin", "uncertain"]
    with Session(services.engine) as s, s.begin():
        s.execute(examples.Example.__table__.update().where(examples.Example.id.in_(ids[::3])).values(dataset="odd"))
    assert acts.queue_ids("margin", dataset="odd") == [i for i in strategies.rank(ids, probs, "margin")
                                                       if i in set(ids[::3])]


def test_a_cached_queue_holds_its_ids_in_arrays_and_counts_like_a_set():
    """IdSet: membership of ints and numpy ints, `small & queue` and `len` without a frozenset of
    every id; Ranked.without drops ids and keeps the order."""
    from bertdemo.actions.ranked import IdSet, Ranked

    ranked = Ranked.of([30, 10, 20, 40])
    assert isinstance(ranked.ids, np.ndarray) and isinstance(ranked.members, IdSet)
    assert 10 in ranked.members and np.int64(40) in ranked.members and 15 not in ranked.members
    assert "x" not in ranked.members and len(ranked.members) == 4
    assert {10, 15, 40} & ranked.members == {10, 40} and ranked.members & {20, 99} == {20}
    assert ranked.members.mask(np.array([40, 41])).tolist() == [True, False]
    assert ranked.without([10, 99]).ids.tolist() == [30, 20, 40]
    assert Ranked.of([]).ids.dtype == np.int64 and len(Ranked.of([]).members) == 0
    # duplicates count once (built by a sort, not np.unique); & with a frozenset, an empty set, numpy ints
    twice = IdSet(np.array([5, 3, 5, 1, 3]))
    assert list(twice) == [1, 3, 5] and len(twice) == 3
    assert frozenset({3, 4}) & twice == {3} and twice & set() == set() and {np.int64(5)} & twice == {5}
    assert set() & IdSet(np.array([], dtype=np.int64)) == set() and {7} & IdSet(np.array([], dtype=np.int64)) == set()
