"""Errors of the services a user can cause: refused sign-in, missing right, edit conflict."""

from __future__ import annotations

from celltrial.errors import CelltrialError, DataError


class SignInRefused(CelltrialError):
    """Wrong user name or password, an inactive account, or a locked one (one message for all)."""


class AccountError(CelltrialError):
    """An account cannot be created or changed as asked (name taken, weak password, bad role)."""


class NotPermitted(CelltrialError):
    """The signed-in user's role does not allow this."""


class SignatureRefused(NotPermitted):
    """An electronic signature was refused (password not confirmed, or a role that may not sign)."""


class NotFound(CelltrialError):
    """No such subject, record or lot in this study."""


class EditConflict(CelltrialError):
    """The record changed since the user read it; the edit was not saved."""


class AlreadyExists(EditConflict):
    """A record with this key is in the study already (a subject code enrolled): the state of
    the study, not the entry, is what refuses it (409, like a changed record)."""


class BedsideCheckFailed(DataError):
    """The lot, vial or label checked at the bedside does not fit this subject and study."""
