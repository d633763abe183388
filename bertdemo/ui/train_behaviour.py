"""The behaviour tests panel (Train tab) and the "make a test from a text" form it shares with
Annotate: the stored tests with their last failure rate, must pass on and off, delete, a test made
from a text (kind, expected label, perturbations; Preview shows the perturbed texts; Save), and
the suite run on a version with its results per test and serving path and the failing cases.
Handlers are module-level functions wired with `bind`; the work is in actions/behaviour.py."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from bertdemo.actions.behaviour import (
    FAILURE_COLUMNS,
    KIND_NAMES,
    PREVIEW_COLUMNS,
    RESULT_COLUMNS,
    TEST_COLUMNS,
    BehaviourActions,
    Draft,
    SuiteRun,
)
from bertdemo.training.behaviour import INV_PERTURBATIONS, MFT
from bertdemo.ui.binding import bind
from bertdemo.ui.common import ADMIN_ONLY, guarded, user_of

NO_LABEL = "(the predicted label)"  # the expected-label choice that leaves it to the model (DIR)


def table(rows: object, columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(list(rows or ()), columns=list(columns))


def _draft(text: str, kind: str, expected: str | None, perturbations: list[str] | None, name: str,
           description: str) -> Draft:
    return Draft(text, kind, None if expected in (None, "", NO_LABEL) else expected, tuple(perturbations or ()),
                 name or "", description or "")


# ------------------------------------------------------------------------- handlers
@guarded
def show_tests(actions: BehaviourActions) -> pd.DataFrame:
    """The stored tests (TEST_COLUMNS)."""
    return table(actions.table(), TEST_COLUMNS)


def pick_test(rows: pd.DataFrame, evt: gr.SelectData) -> tuple:
    """The clicked test's name and its must-pass mark (both left as they are on a bad click)."""
    try:
        row = rows.iloc[evt.index[0]]
        return row["name"], row["must pass"] == "yes"
    except (AttributeError, IndexError, KeyError, TypeError):
        return gr.update(), gr.update()


@guarded
def set_must_pass(actions: BehaviourActions, name: str, must_pass: bool, request: gr.Request) -> tuple:
    """Mark the test must pass or not (admins only); the message and the table."""
    message = actions.set_must_pass(name, must_pass, user_of(request))
    return message, table(actions.table(), TEST_COLUMNS)


@guarded
def delete_test(actions: BehaviourActions, name: str, request: gr.Request) -> tuple:
    """Delete the test and its results (admins only); the message, the table and an empty choice."""
    message = actions.delete(name, user_of(request))
    return message, table(actions.table(), TEST_COLUMNS), ""


@guarded
def preview_test(actions: BehaviourActions, text: str, kind: str, expected: str | None,
                 perturbations: list[str] | None, name: str, description: str) -> tuple:
    """The texts the test would check (PREVIEW_COLUMNS) and one line about it."""
    p = actions.preview(_draft(text, kind, expected, perturbations, name, description))
    return table(p.rows(), PREVIEW_COLUMNS), p.sentence()


@guarded
def save_test(actions: BehaviourActions, request: gr.Request, **form: object) -> tuple:
    """Save the test of the form (admins only): `form` holds text, kind, expected, perturbations,
    name, description (as preview_test), must_pass and source (example or flip). The message and
    the table."""
    draft = _draft(*(form[k] for k in ("text", "kind", "expected", "perturbations", "name", "description")))
    message = actions.save(draft, form["must_pass"], str(form["source"]), user_of(request))
    return message, table(actions.table(), TEST_COLUMNS)


def kind_changed(kind: str) -> tuple:
    """Show the perturbations for INV only; the expected label is required for MFT only."""
    label = "Expected label (required)" if kind == MFT else "Label whose probability must fall (DIR; optional)"
    return gr.update(visible=kind == "INV"), gr.update(visible=kind != "INV", label=label)


def prefill(text: str) -> str:
    """The form's text from the example on screen (Annotate)."""
    return text or ""


def from_text(text: str) -> tuple:
    """A text handed over from the review (a clicked flip): the form's text, its source, the form opened."""
    return text or "", "flip", gr.update(open=True)


@dataclass(frozen=True)
class RunShown:
    """What the run area shows of one SuiteRun: a sentence, the results and the failing cases."""
    sentence: str
    results: pd.DataFrame
    failures: pd.DataFrame

    @classmethod
    def of(cls, r: SuiteRun) -> RunShown:
        return cls(r.sentence(), table(r.rows(), RESULT_COLUMNS), table(r.failure_rows(), FAILURE_COLUMNS))

    def outputs(self) -> tuple:
        return self.sentence, self.results, self.failures


@guarded
def run_suite(actions: BehaviourActions, version: str, request: gr.Request) -> tuple:
    """Run the stored suite on `version` on each serving path it may use (admins only): RunShown's
    outputs and the tests table (its last failure rates)."""
    return *RunShown.of(actions.run(version, user_of(request))).outputs(), table(actions.table(), TEST_COLUMNS)


@guarded
def stored_results(actions: BehaviourActions, version: str) -> tuple:
    """The results last stored for `version` (no model runs): RunShown's outputs."""
    return RunShown.of(actions.last_run(version)).outputs()


@guarded
def first_fill(actions: BehaviourActions) -> tuple:
    """The tests table, and the one-shot timer that asked for it stopped."""
    return table(actions.table(), TEST_COLUMNS), gr.Timer(active=False)


def version_choices(actions: BehaviourActions) -> dict:
    return gr.update(choices=actions.version_names())


# ------------------------------------------------------------------------- panels
@dataclass(frozen=True)
class MakerView:
    """The "make a test from a text" form's components (in the Train tab and in Annotate)."""
    box: gr.Accordion
    text: gr.Textbox
    kind: gr.Dropdown
    expected: gr.Dropdown
    perturbations: gr.CheckboxGroup
    name: gr.Textbox
    description: gr.Textbox
    must_pass: gr.Checkbox
    preview: gr.Button
    save: gr.Button
    shown: gr.Dataframe
    message: gr.Markdown
    source: gr.State


def maker(labels: tuple[str, ...], prefix: str, source: str, title: str = "Make a behaviour test from a text"
          ) -> MakerView:
    """The form, in an accordion (closed); element ids start with `prefix`."""
    with gr.Accordion(title, open=False, elem_id=f"{prefix}-maker") as box:
        text = gr.Textbox(label="Text", lines=2, elem_id=f"{prefix}-text")
        with gr.Row():
            kind = gr.Dropdown([(v, k) for k, v in KIND_NAMES.items()], value=MFT, label="Kind of test",
                               elem_id=f"{prefix}-kind")
            expected = gr.Dropdown([*labels, NO_LABEL], value=None, label="Expected label (required)",
                                   elem_id=f"{prefix}-expected")
        perturbations = gr.CheckboxGroup(list(INV_PERTURBATIONS), value=list(INV_PERTURBATIONS), visible=False,
                                         label="Perturbations (each must keep the label)",
                                         elem_id=f"{prefix}-perturbations")
        with gr.Row():
            name = gr.Textbox(label="Name (unique)", elem_id=f"{prefix}-name")
            description = gr.Textbox(label="Description (optional)", elem_id=f"{prefix}-description")
        must_pass = gr.Checkbox(False, label="Must pass (a version failing it does not serve by itself)",
                                elem_id=f"{prefix}-must-pass", elem_classes=ADMIN_ONLY)
        with gr.Row():
            preview = gr.Button("Preview", elem_id=f"{prefix}-preview")
            save = gr.Button("Save the test", variant="primary", elem_id=f"{prefix}-save", elem_classes=ADMIN_ONLY)
        shown = gr.Dataframe(table((), PREVIEW_COLUMNS), interactive=False, wrap=True, elem_id=f"{prefix}-shown")
        message = gr.Markdown(elem_id=f"{prefix}-message")
    return MakerView(box, text, kind, expected, perturbations, name, description, must_pass, preview, save, shown,
                     message, gr.State(source))


def wire_maker(view: MakerView, actions: BehaviourActions, tests: gr.Dataframe | None = None) -> None:
    """Preview and Save of the form; Save also redraws `tests` (the Train tab's table) when given."""
    private = {"api_visibility": "private"}
    form = {"text": view.text, "kind": view.kind, "expected": view.expected, "perturbations": view.perturbations,
            "name": view.name, "description": view.description}
    view.kind.change(kind_changed, [view.kind], [view.perturbations, view.expected], **private)
    view.preview.click(bind(preview_test, actions), list(form.values()), [view.shown, view.message], **private)
    saved = [view.message, tests] if tests is not None else [view.message, gr.State()]
    view.save.click(bind(save_test, actions), inputs_kwargs=form | {"must_pass": view.must_pass,
                                                                    "source": view.source},
                    outputs=saved, **private)


def build(actions: BehaviourActions, names: list[str], flip_text: gr.Textbox | None = None) -> None:
    """The panel; `flip_text`: the review's text box (a clicked flip), handed to the form by a button.
    The table is filled once a page is shown (a one-shot timer: a callable value would be an endpoint)."""
    private = {"api_visibility": "private"}
    gr.Markdown("### Behaviour tests\nCheckList-style tests every version runs: *minimum functionality* (a text "
                "must get a label), *invariance* (an @user, a link, a typo ... must not change the label), "
                "*directional* (adding a negation must lower the label's probability). A failing **must pass** "
                "test keeps a version from serving by itself. Click a row to choose a test.")
    tests = gr.Dataframe(table((), TEST_COLUMNS), interactive=False, wrap=True, max_height=360,
                         elem_id="behaviour-tests", column_widths=["20%", "6%", "38%", "6%", "7%", "8%", "15%"])
    with gr.Row():
        chosen = gr.Textbox(label="Chosen test", interactive=False, elem_id="behaviour-chosen", scale=2)
        must = gr.Checkbox(False, label="Must pass", elem_id="behaviour-must", elem_classes=ADMIN_ONLY, scale=1)
        mark = gr.Button("Set must pass", elem_id="behaviour-mark", elem_classes=ADMIN_ONLY, scale=1)
        delete = gr.Button("Delete", variant="stop", elem_id="behaviour-delete", elem_classes=ADMIN_ONLY, scale=1)
        refresh = gr.Button("Refresh", elem_id="behaviour-refresh", scale=1)
    message = gr.Markdown(elem_id="behaviour-table-message")  # the form has its own (behaviour-message)
    if flip_text is not None:
        use_flip = gr.Button("Make a behaviour test from the review's text (a clicked flip)",
                             elem_id="behaviour-from-flip")
    form = maker(actions.labels, "behaviour", "example")
    with gr.Row():
        version = gr.Dropdown(names, value=names[0] if names else None, label="Version", allow_custom_value=True,
                              elem_id="behaviour-version", scale=2)
        run = gr.Button("Run the suite on this version", elem_id="behaviour-run", elem_classes=ADMIN_ONLY, scale=1)
        show = gr.Button("Show its stored results", elem_id="behaviour-show", scale=1)
    ran = [gr.Markdown(elem_id="behaviour-run-message"),
           gr.Dataframe(table((), RESULT_COLUMNS), interactive=False, wrap=True, max_height=360,
                        elem_id="behaviour-results"),
           gr.Dataframe(table((), FAILURE_COLUMNS), interactive=False, wrap=True, max_height=360,
                        elem_id="behaviour-failures")]
    wire_maker(form, actions, tests)
    once = gr.Timer(0.5)
    once.tick(bind(first_fill, actions), None, [tests, once], **private)
    refresh.click(bind(show_tests, actions), None, [tests], **private)
    tests.select(pick_test, [tests], [chosen, must], **private)
    mark.click(bind(set_must_pass, actions), [chosen, must], [message, tests], **private)
    delete.click(bind(delete_test, actions), [chosen], [message, tests, chosen], **private)
    if flip_text is not None:
        use_flip.click(from_text, [flip_text], [form.text, form.source, form.box], **private)
    version.focus(bind(version_choices, actions), None, [version], **private)
    run.click(bind(run_suite, actions), [version], [*ran, tests], **private)
    show.click(bind(stored_results, actions), [version], ran, **private)
