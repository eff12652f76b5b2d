"""A case's identity as a record: the fields its report key is made of.

The report keys every case by the string :attr:`CaseKey.id`
(``model|variant|backend|device|tN[|key=value,...]``); users' baselines and history files
key on it, so its format never changes. Code that needs a part of the identity (the
variant, the model without its hash) reads :class:`CaseKey`'s fields, never the string.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .records import Case

UNCOMPRESSED = "fp32"
"""The variant field of an uncompressed case whose precision is not known."""


def options_label(options: Mapping[str, Any] | None) -> str:
    """Backend options as the id shows them: ``key=value`` sorted by key, comma-separated
    (``""`` for none)."""
    return ",".join(f"{k}={v}" for k, v in sorted((options or {}).items()))


@dataclass(frozen=True)
class CaseKey:
    """What makes a case one cell of the matrix.

    ``model``: the model label (``stem@sha8``, see :func:`edgebench.planning.model_label`);
    ``variant``: the compression pipeline's step labels joined by ``+``, or for an
    uncompressed model its precision read from the graph (``fp32`` when unknown);
    ``threads``: the run's thread count (``None``: the runtime's default, ``tauto``);
    ``options``: the run's options of this backend as :func:`options_label` writes them.
    """

    model: str
    variant: str
    backend: str
    device: str
    threads: int | None
    options: str = ""

    @classmethod
    def of(cls, case: Case, precision: str | None = None) -> CaseKey:
        """The identity of ``case`` from its fields; ``precision`` names an uncompressed
        case's variant (default ``fp32``, as the gate matches cases across reports)."""
        return cls(model=case.model,
                   variant="+".join(case.pipeline) or precision or UNCOMPRESSED,
                   backend=case.backend, device=case.device, threads=case.settings.threads,
                   options=options_label(case.settings.backend_options.get(case.backend)))

    @property
    def id(self) -> str:
        """The report's key: ``model|variant|backend|device|tN``, plus ``|key=value,...``
        when the run set options of the backend (two option variants of one backend are
        two cases)."""
        parts = [self.model, self.variant, self.backend, self.device,
                 f"t{self.threads or 'auto'}"]
        if self.options:
            parts.append(self.options)
        return "|".join(parts)

    def replace(self, **changes: Any) -> CaseKey:
        """A copy with ``changes`` (field name -> value)."""
        return dataclasses.replace(self, **changes)
