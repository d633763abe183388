"""ui/common.guarded: the one place that turns errors into gr.Error. A UserError shows its message
(HTML in it shown as text); anything else is a bug: logged with its traceback and shown as an
internal error, never its text as if it were the person's mistake."""

from __future__ import annotations

import logging

import gradio as gr
import pytest

from bertdemo.errors import BadInput, Conflict, Forbidden, NotFound
from bertdemo.ui.common import guarded, uploaded


@pytest.mark.parametrize("error", [BadInput, NotFound, Conflict, Forbidden])
def test_user_errors_show_their_message(error):
    @guarded
    def action():
        raise error("Choose <b>one</b> of the labels.")

    with pytest.raises(gr.Error) as exc:
        action()
    assert exc.value.message == "Choose &lt;b&gt;one&lt;/b&gt; of the labels."


@pytest.mark.parametrize("bug", [ValueError("could not convert string to float: 'x'"), KeyError("label"),
                                 RuntimeError("CUDA error")])
def test_anything_else_is_an_internal_error_and_is_logged(bug, caplog):
    @guarded
    def action():
        raise bug

    with caplog.at_level(logging.ERROR, logger="bertdemo.ui.common"), pytest.raises(gr.Error) as exc:
        action()
    assert exc.value.message == f"Internal error ({type(bug).__name__}); the details are in the server log."
    assert str(bug) not in exc.value.message
    assert any(r.exc_info and r.exc_info[1] is bug for r in caplog.records)  # with its traceback


def test_a_missing_upload_asks_for_a_file():
    assert uploaded("/tmp/x.csv") == "/tmp/x.csv"
    with pytest.raises(gr.Error, match="Choose a CSV file first"):
        guarded(lambda: uploaded(None))()
