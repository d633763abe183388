"""The admin sign-in of a shared link without accounts: a guest types the admin password
(BERTDEMO_ADMIN_PASSWORD) to become admin of this link (auth.guest_admin_sign_in), or signs out.
Shown only on a shared link without accounts; layout and wiring, the rules are in auth.py."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from sqlalchemy.engine import Engine

from bertdemo import auth
from bertdemo.errors import BadInput
from bertdemo.ui.binding import bind
from bertdemo.ui.common import guarded, guest_key

EXPLAIN = ("This link is shared: everyone who opens it labels as a guest (an annotator). Importing, bulk "
           "labels, settings, training and switching the model need the admin password.")
NO_PASSWORD = ("This link is shared and no admin password is set (BERTDEMO_ADMIN_PASSWORD), so nobody "
               "can import, label in bulk, change settings, train or switch the model here.")


@dataclass(frozen=True)
class Signed:
    """What a sign-in or sign-out answers: the message and whether admin controls show."""

    message: str
    admin: bool

    def outputs(self, n: int) -> list:
        return [self.message, gr.update(value="")] + [gr.update(visible=self.admin)] * n


def _key(request: gr.Request | None) -> str:
    key = guest_key(request)
    if key is None:
        raise BadInput("This browser has no guest identity (cookies are off?); reload the page.")
    return key


@guarded
def sign_in(engine: Engine, password: str, request: gr.Request) -> Signed:
    """Admin of this shared link until sign-out (or for auth.ADMIN_SESSION), with the right password."""
    name = auth.guest_admin_sign_in(engine, _key(request), password or "")
    return Signed(f"Signed in as admin (`{name}`); your changes are recorded under that name.", True)


@guarded
def sign_out(request: gr.Request) -> Signed:
    name = auth.guest_admin_sign_out(_key(request))
    return Signed(f"Signed out: you are guest `{name}`, an annotator.", False)


def sign_in_shown(engine: Engine, n: int, password: str, request: gr.Request) -> list:
    """The page after a sign-in: message, the password box emptied, the n admin-only parts shown."""
    return sign_in(engine, password, request).outputs(n)


def sign_out_shown(n: int, request: gr.Request) -> list:
    return sign_out(request).outputs(n)


def admin_sign_in(engine: Engine, password: str, request: gr.Request) -> str:
    """API: make this session (gradio_client Client) admin of the shared link with the admin password
    (BERTDEMO_ADMIN_PASSWORD). Returns a confirmation naming the admin; wrong passwords are limited."""
    return sign_in(engine, password, request).message


@dataclass(frozen=True)
class Panel:
    """The sign-in accordion's inputs and outputs, wired once the page's admin-only parts are known."""

    password: gr.Textbox
    go: gr.Button
    out: gr.Button
    message: gr.Markdown

    def wire(self, engine: Engine, admin_only: list) -> None:
        n, outputs = len(admin_only), [self.message, self.password, *admin_only]
        gr.on([self.go.click, self.password.submit], bind(sign_in_shown, engine, n), [self.password], outputs,
              api_visibility="private")
        self.out.click(bind(sign_out_shown, n), None, outputs, api_visibility="private")
        gr.api(bind(admin_sign_in, engine), api_name="admin_sign_in")


def panel(engine: Engine) -> Panel | None:
    """The sign-in accordion, on a shared link without accounts (None elsewhere, or when no admin
    password is set: then it only says so)."""
    if auth.has_users(engine) or not auth.guests_of(engine).shared:
        return None
    with gr.Accordion("Admin sign-in (shared link)", open=False, elem_id="admin-signin"):
        if auth.guests_of(engine).password_hash is None:
            gr.Markdown(NO_PASSWORD)
            return None
        gr.Markdown(EXPLAIN)
        with gr.Row():
            password = gr.Textbox(label="Admin password", type="password", elem_id="admin-password", scale=3)
            go = gr.Button("Sign in as admin", elem_id="admin-signin-button", scale=1)
            out = gr.Button("Sign out of admin", elem_id="admin-signout-button", scale=1)
        message = gr.Markdown(elem_id="admin-signin-message")
    return Panel(password, go, out, message)
