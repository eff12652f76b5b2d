"""The case id is the report's key (users' baselines and history files key on it): its
format, written out here by hand, must not change; the parts are read from the record."""

from __future__ import annotations

from edgebench.comparability import match_key, pairing_key
from edgebench.identity import CaseKey
from edgebench.records import Case, CaseResult, RunSettings, Status
from edgebench.reports.tradeoffs import baseline_id


def _case(pipeline: tuple[str, ...] = (), threads: int | None = None,
          options: dict[str, object] | None = None, variant: str | None = None) -> Case:
    settings = RunSettings(threads=threads, backend_options={"ncnn": options or {}})
    key = CaseKey.of(Case(id="", model="yolo@0123abcd", backend="ncnn", device="ssh://pi",
                          settings=settings, pipeline=pipeline), variant)
    return Case(id=key.id, model="yolo@0123abcd", backend="ncnn", device="ssh://pi",
                settings=settings, pipeline=pipeline)


def test_id_format() -> None:
    assert _case().id == "yolo@0123abcd|fp32|ncnn|ssh://pi|tauto"
    assert _case(variant="fp16").id == "yolo@0123abcd|fp16|ncnn|ssh://pi|tauto"
    assert _case(("prune-0.3", "quantize-int8"), threads=4,
                 options={"vulkan": "off", "fp16_storage": True}).id == (
        "yolo@0123abcd|prune-0.3+quantize-int8|ncnn|ssh://pi|t4|"
        "fp16_storage=True,vulkan=off")


def test_keys_derived_from_the_fields() -> None:
    variant = _case(("quantize-int8",), threads=2)
    assert baseline_id(variant) == "yolo@0123abcd|fp32|ncnn|ssh://pi|t2"
    result = CaseResult(case=_case(variant="fp16"), status=Status.OK)
    assert match_key(result) == "yolo|fp32|ncnn|ssh://pi|tauto"  # hash and precision out
    assert pairing_key(result).model == "yolo"
