"""Test helper: serialise a :class:`~stylepuppet.landmarks.tflite_graph.Graph` to a real ``.tflite``.

Lets tests craft tiny models that the LiteRT interpreter runs (the reference) and that our reader
parses back, e.g. to check SAME padding or an unknown operator end to end.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import tflite

from stylepuppet.landmarks.tflite_graph import Graph

_PADDING = {"SAME": tflite.Padding.SAME, "VALID": tflite.Padding.VALID}
_TYPES = {"FLOAT32": tflite.TensorType.FLOAT32, "FLOAT16": tflite.TensorType.FLOAT16,
          "INT32": tflite.TensorType.INT32, "INT64": tflite.TensorType.INT64, "INT8": tflite.TensorType.INT8}


def _int_vector(b: flatbuffers.Builder, values: list[int]) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=np.int32))


def _options(b: flatbuffers.Builder, kind: str, o: dict) -> tuple[int, int]:
    """(BuiltinOptions type, table offset) of one operator; (0, 0) for none."""
    act = getattr(tflite.ActivationFunctionType, o.get("activation", "NONE"))
    if kind == "CONV_2D":
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddPadding(b, _PADDING[o["padding"]])
        tflite.Conv2DOptionsAddStrideH(b, o["stride"][0])
        tflite.Conv2DOptionsAddStrideW(b, o["stride"][1])
        tflite.Conv2DOptionsAddDilationHFactor(b, o.get("dilation", (1, 1))[0])
        tflite.Conv2DOptionsAddDilationWFactor(b, o.get("dilation", (1, 1))[1])
        tflite.Conv2DOptionsAddFusedActivationFunction(b, act)
        return tflite.BuiltinOptions.Conv2DOptions, tflite.Conv2DOptionsEnd(b)
    if kind == "DEPTHWISE_CONV_2D":
        tflite.DepthwiseConv2DOptionsStart(b)
        tflite.DepthwiseConv2DOptionsAddPadding(b, _PADDING[o["padding"]])
        tflite.DepthwiseConv2DOptionsAddStrideH(b, o["stride"][0])
        tflite.DepthwiseConv2DOptionsAddStrideW(b, o["stride"][1])
        tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, o.get("depth_multiplier", 1))
        tflite.DepthwiseConv2DOptionsAddDilationHFactor(b, o.get("dilation", (1, 1))[0])
        tflite.DepthwiseConv2DOptionsAddDilationWFactor(b, o.get("dilation", (1, 1))[1])
        tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(b, act)
        return tflite.BuiltinOptions.DepthwiseConv2DOptions, tflite.DepthwiseConv2DOptionsEnd(b)
    if kind == "MAX_POOL_2D":
        tflite.Pool2DOptionsStart(b)
        tflite.Pool2DOptionsAddPadding(b, _PADDING[o["padding"]])
        tflite.Pool2DOptionsAddStrideH(b, o["stride"][0])
        tflite.Pool2DOptionsAddStrideW(b, o["stride"][1])
        tflite.Pool2DOptionsAddFilterHeight(b, o["filter"][0])
        tflite.Pool2DOptionsAddFilterWidth(b, o["filter"][1])
        tflite.Pool2DOptionsAddFusedActivationFunction(b, act)
        return tflite.BuiltinOptions.Pool2DOptions, tflite.Pool2DOptionsEnd(b)
    if kind == "ADD":
        tflite.AddOptionsStart(b)
        tflite.AddOptionsAddFusedActivationFunction(b, act)
        return tflite.BuiltinOptions.AddOptions, tflite.AddOptionsEnd(b)
    if kind == "RESHAPE" and "new_shape" in o:
        shape = _int_vector(b, list(o["new_shape"]))
        tflite.ReshapeOptionsStart(b)
        tflite.ReshapeOptionsAddNewShape(b, shape)
        return tflite.BuiltinOptions.ReshapeOptions, tflite.ReshapeOptionsEnd(b)
    return 0, 0


def write_tflite(graph: Graph) -> bytes:
    """The flatbuffer of ``graph`` (one subgraph); op kinds ``CUSTOM:<code>`` become custom ops."""
    b = flatbuffers.Builder(1024)
    kinds = sorted({op.kind for op in graph.ops})
    codes = []
    for kind in kinds:
        custom = b.CreateString(kind.split(":", 1)[1]) if kind.startswith("CUSTOM:") else None
        number = tflite.BuiltinOperator.CUSTOM if custom is not None else getattr(tflite.BuiltinOperator, kind)
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(number, 127))
        tflite.OperatorCodeAddBuiltinCode(b, number)
        tflite.OperatorCodeAddVersion(b, 1)
        if custom is not None:
            tflite.OperatorCodeAddCustomCode(b, custom)
        codes.append(tflite.OperatorCodeEnd(b))

    buffers = []
    tflite.BufferStart(b)
    buffers.append(tflite.BufferEnd(b))  # buffer 0: the empty sentinel
    tensors = []
    for index, spec in enumerate(graph.tensors):
        buffer_index = 0
        if index in graph.constants:
            data = b.CreateNumpyVector(np.frombuffer(np.ascontiguousarray(graph.constants[index]).tobytes(), np.uint8))
            tflite.BufferStart(b)
            tflite.BufferAddData(b, data)
            buffers.append(tflite.BufferEnd(b))
            buffer_index = len(buffers) - 1
        name = b.CreateString(spec.name)
        shape = _int_vector(b, list(spec.shape))
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, _TYPES[spec.dtype])
        tflite.TensorAddBuffer(b, buffer_index)
        tflite.TensorAddName(b, name)
        tensors.append(tflite.TensorEnd(b))

    operators = []
    for op in graph.ops:
        inputs = _int_vector(b, list(op.inputs))
        outputs = _int_vector(b, list(op.outputs))
        options_type, options = _options(b, op.kind, dict(op.options))
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, kinds.index(op.kind))
        tflite.OperatorAddInputs(b, inputs)
        tflite.OperatorAddOutputs(b, outputs)
        if options_type:
            tflite.OperatorAddBuiltinOptionsType(b, options_type)
            tflite.OperatorAddBuiltinOptions(b, options)
        operators.append(tflite.OperatorEnd(b))

    def table_vector(start, items: list[int]) -> int:
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    tensor_vec = table_vector(tflite.SubGraphStartTensorsVector, tensors)
    op_vec = table_vector(tflite.SubGraphStartOperatorsVector, operators)
    in_vec = _int_vector(b, list(graph.inputs))
    out_vec = _int_vector(b, list(graph.outputs))
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vec)
    tflite.SubGraphAddInputs(b, in_vec)
    tflite.SubGraphAddOutputs(b, out_vec)
    tflite.SubGraphAddOperators(b, op_vec)
    subgraph = tflite.SubGraphEnd(b)

    code_vec = table_vector(tflite.ModelStartOperatorCodesVector, codes)
    subgraph_vec = table_vector(tflite.ModelStartSubgraphsVector, [subgraph])
    buffer_vec = table_vector(tflite.ModelStartBuffersVector, buffers)
    description = b.CreateString(graph.description or "crafted by stylepuppet tests")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, code_vec)
    tflite.ModelAddSubgraphs(b, subgraph_vec)
    tflite.ModelAddDescription(b, description)
    tflite.ModelAddBuffers(b, buffer_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
