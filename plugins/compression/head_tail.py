"""The detection head's tail, found from the graph of any format: the nodes int8 breaks.

A YOLOv8-style head concatenates boxes (0..imgsz pixels) and class scores (0..1) into one
output tensor, so one int8 scale for both rounds every score to zero (naive int8: mAP 0.0),
and its DFL (a softmax over 16 bins, then a fixed convolution) needs float to stay exact.
The rule, the same for every format's quantizer: the DFL (everything downstream of a
softmax, its fixed convolution included) and every non-convolution node downstream of which
no feature convolution is left (reshapes, concatenations, the score sigmoid, box decoding).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence


def head_tail(op_types: Sequence[str], inputs: Sequence[Sequence[int]], *,
              is_conv: Callable[[str], bool], softmax: Collection[str]) -> list[int]:
    """Indices of the head's tail in a graph of ``len(op_types)`` nodes.

    ``inputs[i]``: the indices of the nodes feeding node ``i`` (constants and graph inputs
    may be left out); ``is_conv``: whether an op type is a convolution; ``softmax``: the op
    types that start the DFL. Returns ascending indices; empty for a graph without a
    convolution outside the DFL.
    """
    consumers: dict[int, list[int]] = {}
    for i, feeding in enumerate(inputs):
        for j in feeding:
            consumers.setdefault(j, []).append(i)
    dfl: set[int] = set()
    todo = [i for i, op in enumerate(op_types) if op in softmax]
    while todo:
        i = todo.pop()
        if i not in dfl:
            dfl.add(i)
            todo += consumers.get(i, ())
    convs = {i for i, op in enumerate(op_types) if is_conv(op) and i not in dfl}
    if not convs:
        return []
    before: set[int] = set()  # nodes upstream of a feature convolution
    todo = list(convs)
    while todo:
        for j in inputs[todo.pop()]:
            if j not in before:
                before.add(j)
                todo.append(j)
    return [i for i, op in enumerate(op_types)
            if i in dfl or (not is_conv(op) and i not in before)]
