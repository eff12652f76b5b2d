"""When two measurements of a case compare: which cases are the same cell across reports
(:func:`match_key`), and what changed between them (setup fingerprint, input size,
evaluation set). The gate (:mod:`edgebench.compare`) flags or refuses on these."""

from __future__ import annotations

from .identity import CaseKey
from .records import Accuracy, CaseResult


def match_key(result: CaseResult) -> str:
    """The case id without the model's content hash (a changed model file still compares),
    and ``fp32`` as the variant of every uncompressed case: the key of a case across
    reports, in baselines and history files (its format never changes)."""
    return pairing_key(result).id


def pairing_key(result: CaseResult) -> CaseKey:
    """:func:`match_key` as a record (its fields: model stem, variant, backend, device,
    threads, options)."""
    key = CaseKey.of(result.case)
    return key.replace(model=key.model.split("@")[0])


def fingerprint_changes(base: CaseResult, cur: CaseResult, *, same_model: bool = True
                        ) -> tuple[str, ...]:
    """What differs between the two cases' setups; ``same_model=False``: the model is meant
    to differ (side by side), so that is not a change."""
    changes = []
    if same_model and base.case.model != cur.case.model:
        changes.append(f"model {base.case.model} -> {cur.case.model}")
    if base.device and cur.device:
        for field in ("arch", "cpu_model", "cores", "governor", "os"):
            a, b = getattr(base.device, field), getattr(cur.device, field)
            if a != b:
                changes.append(f"{field} {a} -> {b}")
    if base.runtime and cur.runtime and base.runtime.version != cur.runtime.version:
        changes.append(f"{cur.runtime.name} {base.runtime.version} -> {cur.runtime.version}")
    if base.case.settings != cur.case.settings:
        changes.append("run settings differ")
    before = base.artifact.precision if base.artifact is not None else None
    after = cur.artifact.precision if cur.artifact is not None else None
    if before and after and before != after:
        changes.append(f"precision {before} -> {after}")
    return tuple(changes)


def _hw(hw: tuple[int, int] | None) -> str:
    return f"{hw[0]}x{hw[1]}" if hw is not None else "?"


def input_size_change(base: CaseResult, cur: CaseResult) -> str | None:
    """Why two cases do not compare when they ran at different input sizes (H x W): the
    latency and the mAP both change with the input size by design. ``None``: same size
    (or a side's size unknown)."""
    before, after = base.input_hw(), cur.input_hw()
    if before is None or after is None or before == after:
        return None
    return (f"input size {_hw(before)} -> {_hw(after)} (H x W): latency and mAP both change "
            "with the input size, so the two do not compare")


def evaluation_changes(base: Accuracy, cur: Accuracy) -> tuple[str, ...]:
    """What differs between the two evaluation sets, each a phrase; empty: the same set.

    The set's identity is its content fingerprint when both reports have one, else its name
    (a path) and the images left out; the image count and conf / iou always count.
    """
    changes = []
    if base.dataset_fingerprint is not None and cur.dataset_fingerprint is not None:
        if base.dataset_fingerprint != cur.dataset_fingerprint:
            changes.append(f"dataset {base.dataset} -> {cur.dataset} (content "
                           f"{base.dataset_fingerprint[:8]} -> {cur.dataset_fingerprint[:8]})"
                           if base.dataset != cur.dataset else
                           f"dataset content {base.dataset_fingerprint[:8]} -> "
                           f"{cur.dataset_fingerprint[:8]}")
    elif base.dataset != cur.dataset:
        changes.append(f"dataset {base.dataset} -> {cur.dataset}")
    if base.images != cur.images:
        changes.append(f"images evaluated {base.images} -> {cur.images}")
    if set(base.left_out) != set(cur.left_out):
        changes.append(f"images left out {len(base.left_out)} -> {len(cur.left_out)}"
                       if len(base.left_out) != len(cur.left_out) else
                       "other images left out")
    if base.conf != cur.conf:
        changes.append(f"conf {base.conf:g} -> {cur.conf:g}")
    if base.iou != cur.iou:
        changes.append(f"iou {base.iou:g} -> {cur.iou:g}")
    return tuple(changes)
