"""Errors a user can cause. The CLI prints their message as one sentence and exits 2.

Messages are often built from parts that end in their own punctuation (``"...; did you mean
'backends'?"`` + ``"."``, an exception's ``"... failed."`` + ``"."``): every error here
passes its message through :func:`sentence`, which keeps one closing mark."""

from __future__ import annotations

import re

_DOUBLED = re.compile(r"(?<![.?!])([.?!])\.(?=\s|$)")
"""A closing mark followed by a period that ends a sentence (a space or the end after it),
added by a join; not an ellipsis."""


def sentence(text: str) -> str:
    """``text`` with each doubled closing mark (``?.``, ``!.``, ``..``) made single, where
    the period was added after a part that already ended its sentence."""
    return _DOUBLED.sub(r"\1", text)


class _Sentence(Exception):
    """An exception whose message (first argument, a str) is tidied by :func:`sentence`."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (sentence(args[0]), *args[1:])
        super().__init__(*args)


class UserError(_Sentence):
    """A problem the user can fix (bad flag, missing file, runtime not installed).

    The message is one sentence that names the problem and, where there is one, the fix.
    """

    exit_code = 2


class PluginError(UserError):
    """A plugin is broken, duplicated or unknown."""


class CaseError(_Sentence):
    """One case could not be measured; recorded as ``failed`` and the run goes on."""


class CaseSkipped(_Sentence):
    """One case cannot run here (runtime missing on the device, format unsupported)."""


class ModelDataMismatch(UserError):
    """The model and the evaluation dataset disagree (e.g. on the number of classes)."""
