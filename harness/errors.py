"""Errors a user can cause. The CLI prints their message as one sentence and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad flag, missing file, runtime not installed).

    The message is one sentence that names the problem and, where there is one, the fix.
    """

    exit_code = 2


class PluginError(UserError):
    """A plugin is broken, duplicated or unknown."""


class CaseError(Exception):
    """One case could not be measured; recorded as ``failed`` and the run goes on."""


class CaseSkipped(Exception):
    """One case cannot run here (runtime missing on the device, format unsupported)."""


class ModelDataMismatch(UserError):
    """The model and the evaluation dataset disagree (e.g. on the number of classes)."""
