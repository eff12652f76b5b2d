"""Checking one option of a backend (``--backend-option``) or of a compression step
(``--compress prune:ratio=0.3``) against the plugin's declared defaults and choices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import UserError

_TRUE_WORDS = ("1", "true", "on", "yes")
_BOOL_WORDS = (*_TRUE_WORDS, "0", "false", "off", "no")


def _article(word: str) -> str:
    """``"an"`` before a vowel sound (``an int``), else ``"a"`` (``a bool``, ``a str``)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def checked_option(owner: str, key: str, value: Any, defaults: Mapping[str, Any],
                   choices: Mapping[str, tuple[Any, ...]]) -> Any:
    """``value`` for option ``key`` of ``owner`` (a backend or a compression step), typed
    like its default (``"on"``/``1`` for a bool, ``3`` for a float are taken) and checked
    against ``choices``; raises :class:`edgebench.errors.UserError` naming the key."""
    if key not in defaults:
        if not defaults:
            raise UserError(f"{owner} takes no options; got {key!r}.")
        raise UserError(f"{owner} has no option {key!r}; its options are "
                        f"{', '.join(sorted(defaults))}.")
    kind = type(defaults[key])
    if kind is bool and isinstance(value, str) and value.lower() in _BOOL_WORDS:
        value = value.lower() in _TRUE_WORDS
    elif kind is bool and value in (0, 1) and not isinstance(value, bool):
        value = bool(value)
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif kind is str and isinstance(value, (int, float)):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        kind_name = f"{_article(kind.__name__)} {kind.__name__}"
        raise UserError(f"{owner} option {key!r} must be {kind_name}, got {value!r}.")
    if key in choices and value not in choices[key]:
        raise UserError(f"{owner} option {key!r} must be one of "
                        f"{', '.join(map(str, choices[key]))}; got {value!r}.")
    return value
