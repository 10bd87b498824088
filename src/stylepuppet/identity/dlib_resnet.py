"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a torch module.

The network behind ``dlib.face_recognition_model_v1``: a 150² RGB face chip in, a 128-D descriptor out
(same person when two descriptors are nearer than 0.6). Built from what :mod:`.dlib_format` reads, with
dlib's own semantics for each layer (from ``dlib/dnn/layers.h`` and ``dlib/cuda/cpu_dlib.cpp``):

* input: ``(pixel − channel mean) / 256`` on 0–255 RGB values, means stored in the file;
* ``con``: cross-correlation with the stored padding (0 for stride 2, so 150 → 72 as in torch);
* ``affine``: per-channel ``γ·x + β`` (batch norm folded at training's end);
* ``max_pool``/``avg_pool``: windows clipped to the image (padding ignored); window 0 = the whole map;
* ``add_prev``: a sum over the larger shape, the smaller tensor padded with zeros (the shortcut of a
  down-sampling block has half the channels of its body: dlib adds them to the first channels only);
* ``fc``: ``x · W`` without bias; the loss layer (``loss_metric``) outputs it unchanged — dlib's
  descriptor is not L2-normalised (norms 1.33–1.62 measured on ten real faces), so neither is this one.

Tag and skip wrappers carry no numbers in the file (not even which of the two they are), so the residual
wiring is read the way dlib's ``residual`` and ``residual_down`` templates
(``tools/python/src/face_recognition.cpp``) lay it out, input side first: ``tag1 body add_prev1`` is
``x + body(x)``; ``tag1 body tag2 skip1 shortcut add_prev2`` is ``body(x) + shortcut(x)`` (the
average-pooled shortcut of a down-sampling block). Any other arrangement is refused.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylepuppet import weights
from stylepuppet.errors import WeightsError
from stylepuppet.face.detect import dlib_models_dir
from stylepuppet.identity.dlib_format import DlibNetwork, Layer, read_dlib_network

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: The registry entry of this network (:mod:`stylepuppet.weights`).
REGISTRY_NAME = "dlib-face-recognition-resnet-v1"


class InputRGB(nn.Module):
    """dlib's ``input_rgb_image_sized``: RGB in [0, 1] → ``(255·x − mean) / 256``."""

    def __init__(self, means: tuple[float, float, float], size: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("means", torch.tensor(means, dtype=torch.float32).view(1, 3, 1, 1))
        self.size = size

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != self.size:
            raise ValueError(f"face chips must be [N, 3, {self.size[0]}, {self.size[1]}], got {tuple(images.shape)}")
        return (images * 255 - self.means.to(images.dtype)) / 256


class Affine(nn.Module):
    """Per-channel scale and shift (dlib's ``affine`` in convolution mode)."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("gamma", torch.from_numpy(gamma.copy()).view(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(beta.copy()).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma + self.beta


class GlobalAvgPool(nn.Module):
    """dlib's ``avg_pool_everything``: the mean of each channel, kept as a 1×1 map."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class Residual(nn.Module):
    """``body(x) + shortcut(x)`` (identity shortcut when ``shortcut`` is empty), summed as dlib's ``add_prev``
    sums: over the larger shape, with zeros where one tensor has no channel or pixel."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        return add_padded(self.body(x), self.shortcut(x))


def add_padded(a: Tensor, b: Tensor) -> Tensor:
    """``a + b`` over [N, max C, max H, max W], each padded with zeros at the end of every axis."""
    shape = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:])]

    def grow(t: Tensor) -> Tensor:
        pad = [0, shape[2] - t.shape[3], 0, shape[1] - t.shape[2], 0, shape[0] - t.shape[1]]
        return F.pad(t, pad) if any(pad) else t

    return grow(a) + grow(b)


def _layer_module(layer: Layer) -> nn.Module:
    a, t = layer.attrs, layer.tensors
    if layer.kind == "con":
        out_ch, in_ch, kh, kw = t["weight"].shape
        conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride=(a["stride_y"], a["stride_x"]),
                         padding=(a["padding_y"], a["padding_x"]), bias="bias" in t)
        conv.weight.data.copy_(torch.from_numpy(t["weight"]))
        if "bias" in t:
            conv.bias.data.copy_(torch.from_numpy(t["bias"]))
        return conv
    if layer.kind == "affine":
        if not a["conv_mode"]:
            raise WeightsError("an affine layer in fully-connected mode is not supported by this port")
        return Affine(t["gamma"], t["beta"])
    if layer.kind == "relu":
        return nn.ReLU()
    if layer.kind in ("max_pool", "avg_pool"):
        if a["rows"] == 0 and a["cols"] == 0 and layer.kind == "avg_pool":
            return GlobalAvgPool()
        if a["rows"] == 0 or a["cols"] == 0:
            raise WeightsError(f"a {layer.kind} over a whole axis ({a['rows']}x{a['cols']}) is not supported")
        window, stride = (a["rows"], a["cols"]), (a["stride_y"], a["stride_x"])
        padding = (a["padding_y"], a["padding_x"])
        if layer.kind == "max_pool":
            return nn.MaxPool2d(window, stride, padding)
        return nn.AvgPool2d(window, stride, padding, count_include_pad=False)
    if layer.kind == "fc":
        out_f, in_f = t["weight"].shape
        fc = nn.Linear(in_f, out_f, bias="bias" in t)
        fc.weight.data.copy_(torch.from_numpy(t["weight"]))
        if "bias" in t:
            fc.bias.data.copy_(torch.from_numpy(t["bias"]))
        return nn.Sequential(nn.Flatten(), fc)
    raise WeightsError(f"a {layer.kind!r} layer ({layer.tag}) cannot stand here")


def _sequence(layers: tuple[Layer, ...]) -> nn.Sequential:
    """Torch modules for a run of layers, residual blocks recognised as the module docstring says."""
    modules: list[nn.Module] = []
    i = 0
    while i < len(layers):
        if layers[i].kind != "wrapper":
            modules.append(_layer_module(layers[i]))
            i += 1
            continue
        end = next((j for j in range(i + 1, len(layers)) if layers[j].kind == "add_prev"), None)
        if end is None:
            raise WeightsError(f"a tag wrapper at layer {i} is never added back (no add_prev after it)")
        inner = layers[i + 1:end]
        marks = [k for k, layer in enumerate(inner) if layer.kind == "wrapper"]
        if marks and (len(marks) != 2 or marks[1] != marks[0] + 1):
            raise WeightsError(f"the residual block at layer {i} is wired in a way this port does not know")
        body, shortcut = (inner[:marks[0]], inner[marks[1] + 1:]) if marks else (inner, ())
        modules.append(Residual(_sequence(body), _sequence(shortcut)))
        i = end + 1
    return nn.Sequential(*modules)


class DlibResNet(nn.Module):
    """dlib's 128-D face descriptor network: chips [N, 3, 150, 150] RGB in [0, 1] → descriptors [N, 128].

    Parameters are buffers or frozen: this is a fixed measuring instrument, differentiable in its input.
    """

    def __init__(self, net: DlibNetwork) -> None:
        super().__init__()
        if net.loss.kind != "loss_metric":
            raise WeightsError(f"a face-descriptor network ends in a metric loss, this one in {net.loss.tag}")
        a = net.input.attrs
        self.chip_size = int(a["rows"])
        self.input = InputRGB((a["avg_red"], a["avg_green"], a["avg_blue"]), (int(a["rows"]), int(a["cols"])))
        self.trunk = _sequence(net.layers)
        self.distance_threshold = float(net.loss.attrs["distance_threshold"])
        self.requires_grad_(False)

    def forward(self, chips: Tensor) -> Tensor:
        return self.trunk(self.input(chips)).flatten(1)


#: Channels of the untrained stand-in's convolution, per ``untrained_size``.
UNTRAINED_WIDTH = {"tiny": 8, "full": 32}


def untrained_dlib_resnet(size: str = "tiny") -> DlibResNet:
    """A randomly initialised stand-in (torch's global RNG: seed it) with the real network's interface — 150²
    chips in, 128-D descriptors out — but not its architecture: one strided convolution, global pooling and the
    fully connected layer. The real file comes with face-recognition-models, a dependency, so this only stands
    in (``--untrained``) when that was removed."""
    width = UNTRAINED_WIDTH[size]
    weight = (torch.randn(width, 3, 7, 7) / 7 / 3).numpy()
    stride = {"stride_y": 4, "stride_x": 4, "padding_y": 0, "padding_x": 0}
    layers = (Layer("con", "con_4", stride, {"weight": weight, "bias": np.zeros(width, np.float32)}),
              Layer("relu", "relu_"),
              Layer("avg_pool", "avg_pool_2", {"rows": 0, "cols": 0, "stride_y": 1, "stride_x": 1,
                                                "padding_y": 0, "padding_x": 0}),
              Layer("fc", "fc_2", {}, {"weight": (torch.randn(128, width) / width ** 0.5).numpy()}))
    means = {"avg_red": 122.8, "avg_green": 117.0, "avg_blue": 104.0, "rows": 150, "cols": 150}
    net = DlibNetwork(Layer("loss_metric", "loss_metric_2", {"margin": 0.04, "distance_threshold": 0.6}),
                      Layer("input_rgb_image_sized", "input_rgb_image_sized", means), layers)
    return DlibResNet(net).eval()


def shipped_model_path() -> Path:
    """The descriptor network shipped with face-recognition-models."""
    path = dlib_models_dir() / MODEL_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing; reinstall it with "
                           "`pip install --force-reinstall face-recognition-models`")
    return path


def resolve_model(source: str | Path | None = None) -> Path:
    """The network file: the installed copy for None or the registry name (downloaded only if
    face-recognition-models is missing), else a file path, registry name or URL as weights.resolve takes it."""
    if source is None or str(source) == REGISTRY_NAME:
        if importlib.util.find_spec("face_recognition_models") is not None:
            return shipped_model_path()
        source = REGISTRY_NAME
    return weights.resolve(source, kind="identity")


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """dlib's face-recognition ResNet from a ``.dat`` file, registry name or URL (default: the copy in
    face-recognition-models), in eval mode; the file is only read, never executed."""
    path = resolve_model(path)
    net = read_dlib_network(path)
    try:
        module = DlibResNet(net)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    return module.eval()
