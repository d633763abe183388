"""Similar examples from the version's vector index file (model/vectors.build_index): used once it
is built, the same neighbours as brute force on the trained version's embeddings, brute force again
while there is no index file, and an example added since the re-scoring still has neighbours."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.db import examples
from bertdemo.model import vectors
from bertdemo.services import Services


@pytest.fixture
def own(tmp_path, trained_services) -> AnnotateAdapters:
    """A copy of the trained data directory to change."""
    data = tmp_path / "runtime"
    shutil.copytree(trained_services.settings.data_dir, data)
    return AnnotateAdapters.create(Services.create(trained_services.settings.with_(data_dir=data)))


def version_folder(acts: AnnotateAdapters):
    registry = acts.similar.services.registry
    return registry.folder(registry.active_version())


def test_similar_examples_come_from_the_index_once_it_is_built(own):
    similar, folder = own.similar, version_folder(own)
    (folder / vectors.INDEX_FILE).unlink(missing_ok=True)
    ex = int(similar.index().ids[7])
    assert similar.loaded().ann is None  # no index file yet: brute force
    brute, brute_text = similar.of_example(ex, 5), similar.of_text("my flight was delayed again", 5)

    assert vectors.build_index(folder) == folder / vectors.INDEX_FILE
    loaded = similar.loaded()  # opened again: the index file is new
    assert loaded.ann is not None and len(loaded.ann) == len(loaded.vectors)
    via_index, via_index_text = similar.of_example(ex, 5), similar.of_text("my flight was delayed again", 5)
    assert set(via_index.ids) == set(brute.ids) and ex not in via_index.ids
    assert set(via_index_text.ids) == set(brute_text.ids)
    got = dict(zip(via_index.ids, via_index.rows["similarity"]))
    assert all(abs(got[i] - s) <= 0.01 for i, s in zip(brute.ids, brute.rows["similarity"]))

    (folder / vectors.INDEX_FILE).unlink()
    assert similar.loaded().ann is None and similar.of_example(ex, 5).ids == brute.ids


def test_an_example_added_since_the_rescoring_has_neighbours_from_the_index(own):
    similar = own.similar
    vectors.build_index(version_folder(own))
    with Session(similar.engine) as s, s.begin():
        examples.import_examples(s, [examples.NewExample("my flight was delayed again and again",
                                                         "My flight was delayed AGAIN and again")],
                                 "import", "ann", similar.services.settings.labels)
    with Session(similar.engine) as s:
        new_id = max(examples.queue_ids(s, "unlabeled", None))
    assert similar.index().vector_of(new_id) is None  # not in the embeddings: one forward pass
    found = similar.of_example(new_id, 5)
    assert similar.loaded().ann is not None and len(found.ids) == 5 and new_id not in found.ids
