"""Write tiny network pickles in NVIDIA's format (stylegan2-ada-pytorch, stylegan3) without NVIDIA's code.

The format (see shared/notes/stylegan2-format.md): a pickled dict whose networks are calls to the
global ``torch_utils.persistence._reconstruct_persistent_obj(meta)``; ``meta`` holds the class
name, the module's source text and its ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
``_init_kwargs`` with ``dnnlib.util.EasyDict`` values, numpy-scalar gains, ...). Tensors are
pickled by torch itself (``_rebuild_parameter`` / ``_rebuild_tensor_v2`` over
``torch.storage._load_from_bytes`` blobs), as in the real files. StyleGAN3 modules
(:func:`sg3_generator`) also pickle numpy arrays and scalars (sizes, sampling rates, cut-offs).

Neither ``torch_utils`` nor ``dnnlib`` exist here: :class:`Global` stands for ``module.name``
and :class:`Writer` (the pure-Python pickler) writes it as a GLOBAL / STACK_GLOBAL opcode. Numpy
objects are written under the module names of numpy 1.x (``numpy.core``, as in all NVIDIA
releases) or numpy 2.x (``numpy._core``).
"""

from __future__ import annotations

import copyreg
import io
import math
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal
import scipy.special
import torch


class Global:
    """A reference to ``module.name`` that pickles as that global, whether or not it can be imported."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle's save_reduce wants a callable
        raise TypeError("a Global only exists to be pickled")


RECONSTRUCT = Global("torch_utils.persistence", "_reconstruct_persistent_obj")
EASYDICT = Global("dnnlib.util", "EasyDict")


class EasyDict(dict):
    """Pickles as ``dnnlib.util.EasyDict`` (NEWOBJ + SETITEMS, like the real class)."""


class Call:
    """Pickles as ``func(*args)``: a REDUCE of any global (used to craft malicious pickles)."""

    def __init__(self, func: Global, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args)

    def __call__(self, *args: Any) -> Any:  # a Call may itself be the callable of another Call
        raise TypeError("a Call only exists to be pickled")


class Writer(pickle._Pickler):  # the pure-Python pickler lets us write globals that cannot be imported
    dispatch = pickle._Pickler.dispatch.copy()
    numpy_core = "numpy.core"

    def reducer_override(self, obj: Any) -> Any:
        """Numpy arrays, scalars and dtypes as numpy pickles them, under ``numpy_core``'s module name."""
        if isinstance(obj, np.ndarray) and self.proto >= 5 and obj.flags.c_contiguous:
            return (Global(f"{self.numpy_core}.numeric", "_frombuffer"),
                    (bytearray(obj.tobytes()), obj.dtype, obj.shape, "C"))
        if isinstance(obj, np.ndarray):
            return (Global(f"{self.numpy_core}.multiarray", "_reconstruct"), (Global("numpy", "ndarray"), (0,), b"b"),
                    (1, obj.shape, obj.dtype, False, obj.tobytes()))
        if isinstance(obj, np.generic):
            return (Global(f"{self.numpy_core}.multiarray", "scalar"), (obj.dtype, obj.tobytes()))
        if isinstance(obj, np.dtype):
            _, args, state = obj.__reduce__()
            return (Global("numpy", "dtype"), args, state)
        return NotImplemented

    def save_fake_global(self, obj: Global) -> None:
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def save_easydict(self, obj: EasyDict) -> None:
        self.save_reduce(copyreg.__newobj__, (EASYDICT,), dictitems=iter(obj.items()), obj=None)

    dispatch[Global] = save_fake_global
    dispatch[EasyDict] = save_easydict


def dumps(obj: Any, protocol: int = 4, numpy_core: str = "numpy.core") -> bytes:
    buf = io.BytesIO()
    writer = Writer(buf, protocol=protocol)
    writer.numpy_core = numpy_core
    writer.dump(obj)
    return buf.getvalue()


MODULE_SRC = '"""training/networks.py stand-in: never executed by a safe reader."""\n'


@dataclass
class Module:
    """One persistent network module: becomes ``_reconstruct_persistent_obj(meta)`` when pickled."""

    class_name: str
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    children: dict[str, Module] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    init_args: tuple[Any, ...] = ()
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    module_src: str = MODULE_SRC

    def state(self) -> dict[str, Any]:
        hooks = ("_backward_pre_hooks", "_backward_hooks", "_forward_hooks", "_forward_hooks_with_kwargs",
                 "_forward_hooks_always_called", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
                 "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                 "_load_state_dict_post_hooks")
        state: dict[str, Any] = {"training": False,
                                 "_parameters": {k: torch.nn.Parameter(v, requires_grad=False)
                                                 for k, v in self.params.items()},
                                 "_buffers": dict(self.buffers), "_non_persistent_buffers_set": set(),
                                 "_is_full_backward_hook": None}
        state.update({h: OrderedDict() for h in hooks})
        state["_modules"] = dict(self.children)
        state.update(self.attrs)
        state["_init_args"] = self.init_args
        state["_init_kwargs"] = self.init_kwargs
        return state

    def __reduce__(self) -> tuple[Any, ...]:
        meta = {"type": "class", "version": 6, "module_src": self.module_src, "class_name": self.class_name,
                "state": self.state()}
        return (RECONSTRUCT, (meta,))

    def flat_state(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The names NVIDIA's ``state_dict()`` would give: parameters, buffers (not None ones), then children."""
        out = {prefix + k: v for k, v in self.params.items()}
        out.update({prefix + k: v for k, v in self.buffers.items() if v is not None})
        for name, child in self.children.items():
            out.update(child.flat_state(f"{prefix}{name}."))
        return out

    def walk(self) -> list[Module]:
        return [self] + [m for c in self.children.values() for m in c.walk()]


@dataclass
class Config:
    """A tiny StyleGAN2 config; ``layout`` "ada" nests synthesis_kwargs, "sg3" passes them top-level."""

    resolution: int = 16
    z_dim: int = 8
    w_dim: int = 8
    c_dim: int = 0
    img_channels: int = 3
    num_layers: int = 2
    channel_base: int = 128
    channel_max: int = 16
    conv_clamp: float | None = None
    noise_strength: float = 0.3
    layout: str = "ada"
    tf_kwargs: bool = False  # the full kwargs set of pickles converted from TensorFlow

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)


def _fir() -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return f / f.sum()


def _fc(gen: torch.Generator, fan_in: int, fan_out: int, lr: float, bias_init: float, activation: str,
        bias_scale: float = 0.2) -> Module:
    return Module("FullyConnectedLayer",
                  params={"weight": torch.randn(fan_out, fan_in, generator=gen) / lr,
                          "bias": bias_init + bias_scale * torch.randn(fan_out, generator=gen)},
                  attrs={"activation": activation, "weight_gain": np.float64(lr / np.sqrt(fan_in)),
                         "bias_gain": lr},
                  init_args=(fan_in, fan_out),
                  init_kwargs={"activation": activation, "lr_multiplier": lr, "bias_init": bias_init})


def _layer(gen: torch.Generator, cfg: Config, cin: int, cout: int, res: int, up: int, layer_clamp: float | None
           ) -> Module:
    noise = {"noise_const": torch.randn(res, res, generator=gen)}
    return Module("SynthesisLayer",
                  params={"weight": torch.randn(cout, cin, 3, 3, generator=gen),
                          "noise_strength": torch.tensor(cfg.noise_strength),
                          "bias": 0.2 * torch.randn(cout, generator=gen)},
                  buffers={"resample_filter": _fir(), **noise},
                  children={"affine": _fc(gen, cfg.w_dim, cin, 1, 1, "linear")},
                  attrs={"resolution": res, "up": up, "use_noise": True, "activation": "lrelu",
                         "conv_clamp": layer_clamp, "padding": 1, "act_gain": np.float64(np.sqrt(2))},
                  init_args=(cin, cout),
                  init_kwargs={"w_dim": cfg.w_dim, "resolution": res, "up": up, "resample_filter": [1, 3, 3, 1],
                               "conv_clamp": layer_clamp, "channels_last": False})


def _torgb(gen: torch.Generator, cfg: Config, cin: int, layer_clamp: float | None) -> Module:
    return Module("ToRGBLayer",
                  params={"weight": torch.randn(cfg.img_channels, cin, 1, 1, generator=gen),
                          "bias": 0.2 * torch.randn(cfg.img_channels, generator=gen)},
                  children={"affine": _fc(gen, cfg.w_dim, cin, 1, 1, "linear")},
                  attrs={"conv_clamp": layer_clamp, "weight_gain": np.float64(1 / np.sqrt(cin))},
                  init_args=(cin, cfg.img_channels),
                  init_kwargs={"w_dim": cfg.w_dim, "conv_clamp": layer_clamp, "channels_last": False})


def _kwargs(cfg: Config) -> dict[str, Any]:
    mapping = EasyDict(num_layers=cfg.num_layers)
    synthesis = EasyDict(channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_fp16_res=4)
    if cfg.layout == "ada" or cfg.conv_clamp != 256:
        synthesis["conv_clamp"] = cfg.conv_clamp
    if cfg.tf_kwargs:
        mapping.update(embed_features=None, layer_features=None, activation="lrelu", lr_multiplier=0.01,
                       w_avg_beta=0.995)
        synthesis.update(num_fp16_res=0, architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True,
                         activation="lrelu")
    kwargs: dict[str, Any] = {"z_dim": cfg.z_dim, "w_dim": cfg.w_dim, "mapping_kwargs": mapping}
    if cfg.layout == "ada":
        kwargs["synthesis_kwargs"] = synthesis
    else:  # stylegan3 repository: Generator(..., mapping_kwargs, **synthesis_kwargs); its default clamp is 256
        kwargs.update(synthesis, fused_modconv_default="inference_only")
    kwargs.update(c_dim=cfg.c_dim, img_resolution=cfg.resolution, img_channels=cfg.img_channels)
    return kwargs


def generator(cfg: Config, seed: int = 0) -> Module:
    """A random-weight Generator module tree with NVIDIA's names, shapes and attributes."""
    gen = torch.Generator().manual_seed(seed)
    layer_clamp = cfg.conv_clamp
    blocks: dict[str, Module] = {}
    resolutions = [2 ** i for i in range(2, int(math.log2(cfg.resolution)) + 1)]
    for res in resolutions:
        cout = cfg.channels(res)
        children: dict[str, Module] = {}
        params: dict[str, torch.Tensor] = {}
        if res == 4:
            params["const"] = torch.randn(cout, 4, 4, generator=gen)
        else:
            children["conv0"] = _layer(gen, cfg, cfg.channels(res // 2), cout, res, 2, layer_clamp)
        children["conv1"] = _layer(gen, cfg, cout, cout, res, 1, layer_clamp)
        children["torgb"] = _torgb(gen, cfg, cout, layer_clamp)
        blocks[f"b{res}"] = Module("SynthesisBlock", params=params, buffers={"resample_filter": _fir()},
                                   children=children,
                                   attrs={"in_channels": 0 if res == 4 else cfg.channels(res // 2), "w_dim": cfg.w_dim,
                                          "resolution": res, "img_channels": cfg.img_channels,
                                          "is_last": res == cfg.resolution, "architecture": "skip",
                                          "use_fp16": False, "channels_last": False,
                                          "num_conv": 1 if res == 4 else 2, "num_torgb": 1},
                                   init_args=(0 if res == 4 else cfg.channels(res // 2), cout))
    num_ws = 2 * len(resolutions)
    synthesis = Module("SynthesisNetwork", children=blocks,
                       attrs={"w_dim": cfg.w_dim, "img_resolution": cfg.resolution,
                              "img_resolution_log2": int(math.log2(cfg.resolution)),
                              "img_channels": cfg.img_channels, "block_resolutions": resolutions, "num_ws": num_ws})
    fcs: dict[str, Module] = {}
    if cfg.c_dim > 0:
        fcs["embed"] = _fc(gen, cfg.c_dim, cfg.w_dim, 1, 0, "linear")
    for i in range(cfg.num_layers):
        fan_in = cfg.z_dim + (cfg.w_dim if cfg.c_dim else 0) if i == 0 else cfg.w_dim
        fcs[f"fc{i}"] = _fc(gen, fan_in, cfg.w_dim, 0.01, 0, "lrelu", bias_scale=20.0)
    mapping = Module("MappingNetwork", buffers={"w_avg": torch.randn(cfg.w_dim, generator=gen)}, children=fcs,
                     attrs={"z_dim": cfg.z_dim, "c_dim": cfg.c_dim, "w_dim": cfg.w_dim, "num_ws": num_ws,
                            "num_layers": cfg.num_layers, "w_avg_beta": 0.995})
    return Module("Generator", children={"synthesis": synthesis, "mapping": mapping},
                  attrs={"z_dim": cfg.z_dim, "c_dim": cfg.c_dim, "w_dim": cfg.w_dim,
                         "img_resolution": cfg.resolution, "img_channels": cfg.img_channels, "num_ws": num_ws},
                  init_kwargs=_kwargs(cfg))


def discriminator() -> Module:
    """A token Discriminator (real snapshots hold one; readers must skip it)."""
    conv = Module("Conv2dLayer", params={"weight": torch.randn(4, 3, 1, 1), "bias": torch.zeros(4)},
                  buffers={"resample_filter": _fir()},
                  attrs={"activation": "lrelu", "up": 1, "down": 1, "conv_clamp": 256, "padding": 0,
                         "weight_gain": np.float64(1 / np.sqrt(3)), "act_gain": np.float64(np.sqrt(2))},
                  init_args=(3, 4, 1))
    return Module("Discriminator", children={"b4": Module("DiscriminatorBlock", children={"fromrgb": conv})},
                  init_kwargs={"c_dim": 0, "img_resolution": 4, "img_channels": 3,
                               "block_kwargs": EasyDict(), "mapping_kwargs": EasyDict(),
                               "epilogue_kwargs": EasyDict(mbstd_group_size=4)})


def snapshot(cfg: Config, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """What NVIDIA's training loop pickles: training_set_kwargs, G, D, G_ema, augment_pipe."""
    snap: dict[str, Any] = {
        "training_set_kwargs": EasyDict(class_name="training.dataset.ImageFolderDataset", path="ffhq.zip",
                                        use_labels=False, max_size=70000, xflip=True, resolution=cfg.resolution),
        "G": generator(cfg, seed + 1), "D": discriminator(), "G_ema": generator(cfg, seed), "augment_pipe": None}
    snap.update(overrides)
    return snap


def write(path: Path, obj: Any, protocol: int = 4, numpy_core: str = "numpy.core") -> Path:
    path.write_bytes(dumps(obj, protocol, numpy_core))
    return path


# ---------------------------------------------------------------------------------------------- StyleGAN3

SG3_MODULE_SRC = '"""training/networks_stylegan3.py stand-in: never executed by a safe reader."""\n'


@dataclass
class SG3Config:
    """A tiny StyleGAN3 config as the stylegan3 repository's train.py sets it (``config`` "t" or "r")."""

    resolution: int = 16
    config: str = "t"
    z_dim: int = 8
    w_dim: int = 8
    c_dim: int = 0
    img_channels: int = 3
    channel_base: int = 256  # before R doubles it
    channel_max: int = 16
    num_layers: int | None = None  # None: NVIDIA's default 14, not written into the kwargs
    conv_clamp: float | None = 256
    magnitude_ema_beta: float = 0.5 ** (32 / 20000)
    transform: torch.Tensor | None = None  # the input's user transform buffer (identity when None)

    def kwargs(self) -> dict[str, Any]:
        """Generator ``_init_kwargs`` in the order train.py and the training loop build them."""
        kwargs: dict[str, Any] = {"z_dim": self.z_dim, "w_dim": self.w_dim,
                                  "mapping_kwargs": EasyDict(num_layers=2),
                                  "channel_base": self.channel_base, "channel_max": self.channel_max,
                                  "magnitude_ema_beta": self.magnitude_ema_beta}
        if self.config == "r":
            kwargs.update(conv_kernel=1, channel_base=2 * self.channel_base, channel_max=2 * self.channel_max,
                          use_radial_filters=True)
        if self.num_layers is not None:
            kwargs["num_layers"] = self.num_layers
        if self.conv_clamp != 256:
            kwargs.update(num_fp16_res=0, conv_clamp=self.conv_clamp)
        kwargs.update(c_dim=self.c_dim, img_resolution=self.resolution, img_channels=self.img_channels)
        return kwargs


def sg3_schedule(cfg: SG3Config) -> dict[str, np.ndarray]:
    """The per-layer cut-offs, sampling rates, half-widths, sizes and channels (numpy float64 arrays).

    The paper's schedule: cut-off f_c and minimum stop-band f_t geometric from (2, 2^2.1) at the
    first layer to (R/2, R/2 * 2^0.3) at layer N - 2 (then constant); sampling rate s the smallest
    power of two >= 2 f_t, at most R; half-width max(f_t, s/2) - f_c; size s + 2 * 10 except the last two
    (R); channels min(base / 2 / f_c, max), rounded, the last one the image channels.
    """
    n = 14 if cfg.num_layers is None else cfg.num_layers
    base = cfg.channel_base * (2 if cfg.config == "r" else 1)
    cmax = cfg.channel_max * (2 if cfg.config == "r" else 1)
    t = np.minimum(np.arange(n + 1) / (n - 2), 1)
    fc = 2 * (cfg.resolution / 2 / 2) ** t
    ft = 2 ** 2.1 * (cfg.resolution / 2 * 2 ** 0.3 / 2 ** 2.1) ** t
    s = np.exp2(np.ceil(np.log2(np.minimum(ft * 2, cfg.resolution))))
    sizes = s + 20
    sizes[-2:] = cfg.resolution
    channels = np.rint(np.minimum(base / 2 / fc, cmax))
    channels[-1] = cfg.img_channels
    return {"cutoffs": fc, "rates": s, "half_widths": np.maximum(ft, s / 2) - fc, "sizes": sizes,
            "channels": channels}


def sg3_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool) -> torch.Tensor | None:
    """NVIDIA's designed low-pass filter: scipy's Kaiser firwin, or a jinc under a separable Kaiser window."""
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs),
                               dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    w = np.kaiser(numtaps, scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2))))
    f = f * np.outer(w, w)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def _sg3_fc(gen: torch.Generator, fan_in: int, fan_out: int, lr: float, bias: torch.Tensor, act: str,
            **init_kwargs: Any) -> Module:
    return Module("FullyConnectedLayer",
                  params={"weight": torch.randn(fan_out, fan_in, generator=gen) / lr, "bias": bias},
                  attrs={"in_features": fan_in, "out_features": fan_out, "activation": act,
                         "weight_gain": np.float64(lr / np.sqrt(fan_in)), "bias_gain": lr},
                  init_args=(fan_in, fan_out), init_kwargs=init_kwargs, module_src=SG3_MODULE_SRC)


def _sg3_layer(gen: torch.Generator, cfg: SG3Config, sch: dict[str, np.ndarray], idx: int) -> Module:
    n = len(sch["cutoffs"]) - 1
    prev = max(idx - 1, 0)
    is_torgb, critical = idx == n, idx >= n - 2
    cin, cout = int(sch["channels"][prev]), int(sch["channels"][idx])
    in_size, out_size = int(sch["sizes"][prev]), int(sch["sizes"][idx])
    in_rate, out_rate = int(sch["rates"][prev]), int(sch["rates"][idx])
    tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else 2)
    kernel = 1 if is_torgb or cfg.config == "r" else 3
    up, down = tmp_rate // in_rate, tmp_rate // out_rate
    up_taps = 6 * up if up > 1 and not is_torgb else 1
    down_taps = 6 * down if down > 1 and not is_torgb else 1
    radial = cfg.config == "r" and not critical
    pad_total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
    pad_lo = (pad_total + up) // 2
    fc, hw = sch["cutoffs"], sch["half_widths"]
    kwargs = {"w_dim": cfg.w_dim, "is_torgb": is_torgb, "is_critically_sampled": critical,
              "use_fp16": np.bool_(in_rate * 16 > cfg.resolution), "in_channels": cin, "out_channels": cout,
              "in_size": in_size, "out_size": out_size, "in_sampling_rate": in_rate, "out_sampling_rate": out_rate,
              "in_cutoff": fc[prev], "out_cutoff": fc[idx], "in_half_width": hw[prev], "out_half_width": hw[idx]}
    layer_kwargs = {k: v for k, v in cfg.kwargs().items() if k in ("conv_kernel", "use_radial_filters", "conv_clamp")}
    kwargs.update(layer_kwargs, magnitude_ema_beta=cfg.magnitude_ema_beta)
    attrs = {**kwargs, "in_size": np.broadcast_to(np.asarray(in_size), [2]),
             "out_size": np.broadcast_to(np.asarray(out_size), [2]), "tmp_sampling_rate": tmp_rate,
             "conv_kernel": kernel, "conv_clamp": cfg.conv_clamp, "up_factor": up, "up_taps": up_taps,
             "down_factor": down, "down_taps": down_taps, "down_radial": radial,
             "padding": [pad_lo, pad_total - pad_lo, pad_lo, pad_total - pad_lo]}
    return Module("SynthesisLayer",
                  params={"weight": torch.randn(cout, cin, kernel, kernel, generator=gen),
                          "bias": 0.2 * torch.randn(cout, generator=gen)},
                  buffers={"magnitude_ema": 0.5 + 2 * torch.rand([], generator=gen),
                           "up_filter": sg3_filter(up_taps, fc[prev], hw[prev] * 2, tmp_rate, False),
                           "down_filter": sg3_filter(down_taps, fc[idx], hw[idx] * 2, tmp_rate, radial)},
                  children={"affine": _sg3_fc(gen, cfg.w_dim, cin, 1, 1 + 0.2 * torch.randn(cin, generator=gen),
                                              "linear", bias_init=1)},
                  attrs=attrs, init_kwargs=kwargs, module_src=SG3_MODULE_SRC)


def sg3_generator(cfg: SG3Config, seed: int = 0) -> Module:
    """A random-weight StyleGAN3 Generator module tree with NVIDIA's names, shapes, attributes and numpy types."""
    gen = torch.Generator().manual_seed(seed)
    sch = sg3_schedule(cfg)
    n = len(sch["cutoffs"]) - 1
    num_ws = n + 2
    c0, size0, rate0, bw0 = int(sch["channels"][0]), int(sch["sizes"][0]), sch["rates"][0], sch["cutoffs"][0]
    freqs = torch.randn(c0, 2, generator=gen)
    radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
    freqs = freqs / (radii * radii.square().exp().pow(0.25)) * float(bw0)
    affine_bias = torch.tensor([1.0, 0.0, 0.0, 0.0]) + 0.1 * torch.randn(4, generator=gen)
    affine = _sg3_fc(gen, cfg.w_dim, 4, 1, affine_bias, "linear", weight_init=0, bias_init=[1, 0, 0, 0])
    affine.params["weight"] = 0.3 * affine.params["weight"]  # a w-dependent rotation and translation
    synthesis_input = Module(
        "SynthesisInput", params={"weight": torch.randn(c0, c0, generator=gen)},
        buffers={"transform": torch.eye(3) if cfg.transform is None else cfg.transform.to(torch.float32),
                 "freqs": freqs, "phases": torch.rand(c0, generator=gen) - 0.5},
        children={"affine": affine},
        attrs={"w_dim": cfg.w_dim, "channels": c0, "size": np.broadcast_to(np.asarray(size0), [2]),
               "sampling_rate": rate0, "bandwidth": bw0},
        init_kwargs={"w_dim": cfg.w_dim, "channels": c0, "size": size0, "sampling_rate": rate0, "bandwidth": bw0},
        module_src=SG3_MODULE_SRC)
    layers = {}
    for idx in range(n + 1):
        layer = _sg3_layer(gen, cfg, sch, idx)
        layers[f"L{idx}_{int(sch['sizes'][idx])}_{int(sch['channels'][idx])}"] = layer
    top = cfg.kwargs()
    synthesis_kwargs = {k: v for k, v in top.items() if k not in ("z_dim", "c_dim", "mapping_kwargs")}
    synthesis = Module("SynthesisNetwork", children={"input": synthesis_input, **layers},
                       attrs={"w_dim": cfg.w_dim, "num_ws": num_ws, "img_resolution": cfg.resolution,
                              "img_channels": cfg.img_channels, "num_layers": n, "num_critical": 2,
                              "margin_size": 10, "output_scale": 0.25, "num_fp16_res": top.get("num_fp16_res", 4),
                              "layer_names": list(layers)},
                       init_kwargs=synthesis_kwargs, module_src=SG3_MODULE_SRC)
    fcs: dict[str, Module] = {}
    if cfg.c_dim > 0:
        fcs["embed"] = _sg3_fc(gen, cfg.c_dim, cfg.w_dim, 1, 0.2 * torch.randn(cfg.w_dim, generator=gen), "linear")
    for i in range(2):
        fan_in = cfg.z_dim + (cfg.w_dim if cfg.c_dim else 0) if i == 0 else cfg.w_dim
        fcs[f"fc{i}"] = _sg3_fc(gen, fan_in, cfg.w_dim, 0.01, 20.0 * torch.randn(cfg.w_dim, generator=gen), "lrelu",
                                activation="lrelu", lr_multiplier=0.01)
    mapping = Module("MappingNetwork", buffers={"w_avg": torch.randn(cfg.w_dim, generator=gen)}, children=fcs,
                     attrs={"z_dim": cfg.z_dim, "c_dim": cfg.c_dim, "w_dim": cfg.w_dim, "num_ws": num_ws,
                            "num_layers": 2, "w_avg_beta": 0.998, **({} if cfg.c_dim else {"embed": None})},
                     init_kwargs={"z_dim": cfg.z_dim, "c_dim": cfg.c_dim, "w_dim": cfg.w_dim, "num_ws": num_ws,
                                  **dict(top["mapping_kwargs"])},
                     module_src=SG3_MODULE_SRC)
    return Module("Generator", children={"synthesis": synthesis, "mapping": mapping},
                  attrs={"z_dim": cfg.z_dim, "c_dim": cfg.c_dim, "w_dim": cfg.w_dim,
                         "img_resolution": cfg.resolution, "img_channels": cfg.img_channels, "num_ws": num_ws},
                  init_kwargs=top, module_src=SG3_MODULE_SRC)


def sg3_snapshot(cfg: SG3Config, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """A stylegan3 training snapshot: G and G_ema StyleGAN3, D the StyleGAN2 discriminator of that repository."""
    snap: dict[str, Any] = {
        "G": sg3_generator(cfg, seed + 1), "D": discriminator(), "G_ema": sg3_generator(cfg, seed),
        "augment_pipe": None,
        "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "path": "ffhqu.zip",
                                "use_labels": False, "max_size": 70000, "xflip": True,
                                "resolution": cfg.resolution, "random_seed": 0}}
    snap.update(overrides)
    return snap
