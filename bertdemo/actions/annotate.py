"""The Annotate tab's adapters, built once per app: AnnotateAdapters holds one object per job
(labelling, import / export, work distribution, notes, retrain every N, the quick model, bulk
labels, similar examples, the corpus map, adjudication, the team's progress, whether more labelling
is worth it), wired to each other
here, so each UI panel is handed the adapters it needs and calls only their public methods; and
the watch that warms the slow rankings when a version serves (actions/warm.py). No Gradio here."""

from __future__ import annotations

from dataclasses import dataclass

from bertdemo.actions.adjudication import Adjudication
from bertdemo.actions.agreement import TeamProgress
from bertdemo.actions.autotrain import AutoRetrain
from bertdemo.actions.bulk import BulkLabels
from bertdemo.actions.corpus_map import CorpusMap
from bertdemo.actions.distribution import WorkDistribution
from bertdemo.actions.labelling import Labelling
from bertdemo.actions.labelling_value import LabellingValue
from bertdemo.actions.notes import Notes
from bertdemo.actions.quick_model import QuickModel
from bertdemo.actions.similar import SimilarExamples
from bertdemo.actions.suspicious import SuspiciousLabels
from bertdemo.actions.transfer import ImportExport
from bertdemo.actions.warm import VersionWatch
from bertdemo.services import Services


@dataclass(frozen=True)
class AnnotateAdapters:
    labelling: Labelling  # queues, next item, save, skip, undo, item, history, table
    transfer: ImportExport  # CSV import (with a preview) and export
    work: WorkDistribution  # annotations per item, leases
    notes: Notes  # guidelines, comments
    autotrain: AutoRetrain  # retrain every N labels
    bulk: BulkLabels  # preview, apply and undo of a bulk label
    similar: SimilarExamples  # neighbours of an example or a typed text
    map: CorpusMap  # the 2-D map, region selection, a person's map-selection queue
    adjudication: Adjudication  # disagreements and their final labels
    progress: TeamProgress  # counts per annotator and Cohen's kappa
    quick: QuickModel  # refit every N labels; ranks the model queues until the next version
    value: LabellingValue  # stopping signals, learning curve, annotation time, suggestion-bias audit
    watch: VersionWatch  # warms the suspicious labels (and the quick model's count) when a version serves
    labels: tuple[str, ...]
    datasets: tuple[str, ...]  # the dataset filter's choices: "all", the bundled datasets, "import"
    max_upload_mb: float

    @classmethod
    def create(cls, services: Services) -> AnnotateAdapters:
        """The adapters on `services`. Every path that saves labels (one save, a bulk label, an
        adjudication) is given the one hook (retrain every N, refit the quick model every N), so none
        of them can skip the count. The watch is started by the UI (ui/annotate.build), not here."""
        notes, work, autotrain = Notes(services), WorkDistribution(services), AutoRetrain(services)
        quick, suspicious = QuickModel(services), SuspiciousLabels(services)

        def after_save() -> None:
            autotrain.after_save()
            quick.after_save()

        similar = SimilarExamples(services)
        corpus = CorpusMap(services, similar)
        labelling = Labelling(services, work, notes, corpus.selection, after_save, quick, suspicious)
        settings = services.settings
        return cls(
            labelling=labelling, transfer=ImportExport(services, notes), work=work, notes=notes,
            autotrain=autotrain, bulk=BulkLabels(services, after_save), similar=similar, map=corpus,
            adjudication=Adjudication(services, labelling.item, after_save),
            progress=TeamProgress(services, work, lambda: labelling.queue_ids("unlabeled")),
            quick=quick, value=LabellingValue(services, work),
            watch=VersionWatch(services, [suspicious.warm, quick.on_version, labelling.warm_vectors]),
            labels=tuple(settings.labels), datasets=("all", *settings.datasets, "import"),
            max_upload_mb=settings.max_upload_mb)
