"""Write tiny network pickles in NVIDIA's format (stylegan2-ada-pytorch) without NVIDIA's code.

The format (see shared/notes/stylegan2-format.md): a pickled dict whose networks are calls to the
global ``torch_utils.persistence._reconstruct_persistent_obj(meta)``; ``meta`` holds the class
name, the module's source text and its ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
``_init_kwargs`` with ``dnnlib.util.EasyDict`` values, numpy-scalar gains, ...). Tensors are
pickled by torch itself (``_rebuild_parameter`` / ``_rebuild_tensor_v2`` over
``torch.storage._load_from_bytes`` blobs), as in the real files.

Neither ``torch_utils`` nor ``dnnlib`` exist here: :class:`Global` stands for ``module.name``
and :class:`Writer` (the pure-Python pickler) writes it as a GLOBAL / STACK_GLOBAL opcode.
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


def dumps(obj: Any, protocol: int = 4) -> bytes:
    buf = io.BytesIO()
    Writer(buf, protocol=protocol).dump(obj)
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
        """The names NVIDIA's ``state_dict()`` would give: parameters, buffers, then children."""
        out = {prefix + k: v for k, v in self.params.items()}
        out.update({prefix + k: v for k, v in self.buffers.items()})
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


def write(path: Path, obj: Any, protocol: int = 4) -> Path:
    path.write_bytes(dumps(obj, protocol))
    return path
