"""UserError and its kinds: the one family of exceptions whose message is meant for the person.

Library code raises these with a message that says what was expected and what came; only
`bertdemo.ui.common.guarded` turns them into `gr.Error`. Any other exception is a bug: the UI
logs it with its traceback and shows "Internal error", never its text as if it were the
person's mistake.

    UserError
      BadInput      a value an action does not take (ValueError too, as setfit's arguments raise)
      NotFound      no example / version / user with that id or name
      Conflict      the row changed since the caller read it (optimistic concurrency)
      Forbidden     not signed in, or the role does not allow the action
      Busy          a training run is already in progress
      NotReady      what the action needs is not there yet (no active model, too few labels)
"""

from __future__ import annotations


class UserError(Exception):
    """A request the app refuses for a reason the person can act on; str(exc) says which."""


class BadInput(UserError, ValueError):
    """A value that is not what the action takes."""


class NotFound(UserError, LookupError):
    """No example, version or user with that id or name."""


class Conflict(UserError):
    """The row changed since the caller read it; reload and decide again."""


class Forbidden(UserError, PermissionError):
    """Not signed in, or the role does not allow the action."""


class Busy(UserError):
    """The resource is in use (a training run is already in progress)."""


class NotReady(UserError):
    """What the action needs does not exist yet (no active model version, too few labels)."""
