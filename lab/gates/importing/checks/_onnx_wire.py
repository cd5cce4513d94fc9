"""How deep an ONNX model's subgraphs nest, read from the protobuf wire format without
parsing the model (red team 15, case 27).

Why: protobuf's parsers stop at 100 nested message levels (the Python, upb and C++
runtimes differ in how they fail), and ONNX tools walk subgraphs recursively (onnx's
shape inference and checker have overflowed the stack on deeply nested If/Loop bodies).
A model nested past the parser's limit is refused as "not a valid ONNX model"; this walk
names the real defect, and bounds the depth of models the parser does accept.

The walk follows only the fields that lead to a subgraph (ONNX's ``onnx.proto``, field
numbers of IR version 10): ModelProto.graph (7), .functions (25), .training_info (20);
TrainingInfoProto.initialization (1), .algorithm (2); GraphProto.node (1);
FunctionProto.node (7); NodeProto.attribute (5); AttributeProto.g (6), .graphs (11).
Every other field is skipped by its length, so tensors cost nothing. It keeps its own
stack (no recursion) and reads each byte at most once.
"""

from __future__ import annotations

__all__ = ["subgraph_depth"]

_MODEL, _GRAPH, _FUNCTION, _TRAINING, _NODE, _ATTRIBUTE = range(6)
# message kind -> {field number: (child kind, whether entering it is a subgraph level)}
_CHILDREN = {
    _MODEL: {7: (_GRAPH, False), 25: (_FUNCTION, False), 20: (_TRAINING, False)},
    _TRAINING: {1: (_GRAPH, True), 2: (_GRAPH, True)},
    _GRAPH: {1: (_NODE, False)},
    _FUNCTION: {7: (_NODE, False)},
    _NODE: {5: (_ATTRIBUTE, False)},
    _ATTRIBUTE: {6: (_GRAPH, True), 11: (_GRAPH, True)},
}


def _varint(data, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def subgraph_depth(data, stop: int | None = None) -> int | None:
    """The deepest nesting of subgraphs in a serialised ModelProto (``data``: bytes or
    a memoryview/mmap; 0 for a model whose nodes hold no graph attribute, 1 for an If
    in the main graph, ...). Stops early once the depth passes ``stop``. None when the
    bytes are not a well-formed protobuf along the walked fields (the parser says why)."""
    best = 0
    stack = [(0, len(data), _MODEL, 0)]  # (position, end, kind, depth)
    try:
        while stack:
            pos, end, kind, depth = stack.pop()
            children = _CHILDREN[kind]
            while pos < end:
                key, pos = _varint(data, pos, end)
                field, wire = key >> 3, key & 7
                if wire == 0:
                    _, pos = _varint(data, pos, end)
                elif wire == 1:
                    pos += 8
                elif wire == 5:
                    pos += 4
                elif wire == 2:
                    n, pos = _varint(data, pos, end)
                    if pos + n > end:
                        return None
                    child = children.get(field)
                    if child is not None:
                        level = depth + (1 if child[1] else 0)
                        best = max(best, level)
                        if stop is not None and best > stop:
                            return best
                        stack.append((pos, pos + n, child[0], level))
                    pos += n
                else:  # groups (3, 4) are not in ONNX's schema; 6 and 7 are invalid
                    return None
                if pos > end:
                    return None
    except ValueError:
        return None
    return best
