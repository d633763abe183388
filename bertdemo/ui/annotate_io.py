"""The Annotate tab's Import / export view: a CSV previewed (what would be added and skipped), then
imported (admins), and every example exported. Layout, wiring and its handlers (TransferHandlers,
whose import_csv and export_csv are also the /import_csv and /export_csv endpoints); the work is
in actions.transfer.ImportExport."""

from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import pandas as pd

from bertdemo.actions.transfer import PREVIEW_ROWS, ImportExport
from bertdemo.ui.common import ADMIN_ONLY, api_file, guarded, uploaded, user_of, warn

ADD_COLUMNS = ["row", "text", "label"]
SKIP_COLUMNS = ["row", "text", "reason"]


class Preview(NamedTuple):
    """What an import would do (the outputs, in order)."""

    summary: str
    add: pd.DataFrame  # ADD_COLUMNS
    skipped: pd.DataFrame  # SKIP_COLUMNS


class TransferHandlers:
    def __init__(self, transfer: ImportExport) -> None:
        self.transfer = transfer

    @guarded
    def preview(self, path: str | None) -> Preview:
        p = self.transfer.preview_import(uploaded(path))
        warn(p.warnings)
        return Preview(p.summary(), p.add[ADD_COLUMNS], p.skipped)

    @guarded
    def import_csv(self, csv_file: str | None, request: gr.Request) -> str:
        """Import a CSV (a text column, an optional label column); duplicates, unknown labels and
        unusable texts are skipped; returns a summary. Admins only."""
        done = self.transfer.import_csv(uploaded(csv_file), user_of(request))
        warn(done.preview.warnings)
        return done.summary()

    @guarded
    def export_csv(self, request: gr.Request) -> str:
        """Every example with its current label, annotator, time and number of changes, as CSV."""
        return self.transfer.export_csv(user_of(request))


def build(transfer: ImportExport, labels: tuple[str, ...]) -> None:
    """The view, in the current gr.Tab, wired."""
    gr.Markdown(f"Import a CSV with a `text` column and an optional `label` column "
                f"({', '.join(labels)}; empty = unlabelled), {transfer.limits()}. "
                "**Preview** shows what would be added and skipped (duplicates by cleaned text, unknown "
                f"labels, unusable texts; the tables list the first {PREVIEW_ROWS:,} of each); **Import** adds "
                "them (admins only), all or nothing: a malformed row anywhere in the file imports nothing "
                "and names its line. Export writes every example with its current label, annotator and "
                "number of changes.")
    upload = api_file(label="CSV to import", file_types=[".csv"], elem_id="annot-upload")
    with gr.Row():
        preview_btn = gr.Button("Preview", elem_id="annot-preview")
        import_btn = gr.Button("Import", variant="primary", elem_id="annot-import", elem_classes=ADMIN_ONLY)
    import_summary = gr.Markdown(elem_id="annot-import-summary")
    with gr.Row():
        to_add = gr.Dataframe(headers=ADD_COLUMNS, label="Will be added", interactive=False, max_height=300)
        to_skip = gr.Dataframe(headers=SKIP_COLUMNS, label="Will be skipped", interactive=False, max_height=300)
    export_btn = gr.Button("Export all labels (CSV)", elem_id="annot-export")
    export_file = gr.File(label="Export", elem_id="annot-export-file")

    handlers = TransferHandlers(transfer)
    preview_btn.click(handlers.preview, [upload], [import_summary, to_add, to_skip], api_visibility="private")
    import_btn.click(handlers.import_csv, [upload], [import_summary], api_name="import_csv")
    export_btn.click(handlers.export_csv, None, [export_file], api_name="export_csv")
