"""Safe weight readers: NVIDIA pickles written here in NVIDIA's format, malicious pickles, rosinality, our format."""

from __future__ import annotations

import argparse
import io
import json
import math
import pickle
import sys
import warnings

import nvidia_pickle as nvp
import pytest
import stylegan2_reference as ref
import torch
import torch.nn.functional as F
from nvidia_pickle import Call, Global
from safetensors import safe_open
from safetensors.torch import save_file

from stylepuppet import safe_pickle
from stylepuppet.errors import UnsafePickleError, WeightsError
from stylepuppet.generators.checkpoints import FORMAT, NETWORK_PICKLE, save_generator
from stylepuppet.generators.loader import convert_generator, identify, load_generator_file
from stylepuppet.generators.stylegan2 import Generator


def safe_unpickle(data: bytes, source: str = "pickle"):
    return safe_pickle.load(data, NETWORK_PICKLE, source=source)


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return bool((a - b).abs().max() <= rel * b.abs().max())


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and 0 < len(message) < 400
    return message


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "something from a pickle was executed"


# ---------------------------------------------------------------------------------------------- NVIDIA pickles


@pytest.mark.parametrize(("resolution", "c_dim", "clamp"), [(4, 0, None), (8, 3, None), (16, 0, 256.0), (32, 0, 0.8)])
def test_nvidia_pickle_loads_and_equals_the_formulas(tmp_path, resolution, c_dim, clamp):
    cfg = nvp.Config(resolution=resolution, c_dim=c_dim, conv_clamp=clamp)
    snap = nvp.snapshot(cfg)
    path = nvp.write(tmp_path / "network-snapshot.pkl", snap)
    G = load_generator_file(path)
    state = snap["G_ema"].flat_state()
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert list(G.state_dict()) == list(state) and all(torch.equal(G.state_dict()[k], v) for k, v in state.items())
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.num_ws) == (8, c_dim, 8, resolution, ref.num_ws(resolution))
    torch.manual_seed(0)
    z, c = torch.randn(2, 8), torch.eye(max(c_dim, 1))[:2, :c_dim]
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=2)
        assert close(ws, ref.mapping(state, z, c, cfg.num_layers, G.num_ws, 0.7, 2))
        wplus = ws + 0.5 * torch.randn_like(ws)
        assert close(G.synthesis(wplus), ref.synthesis(state, wplus, resolution, clamp))


def test_which_picks_g_or_g_ema(tmp_path):
    snap = nvp.snapshot(nvp.Config(resolution=8))
    path = nvp.write(tmp_path / "snap.pkl", snap)
    G_ema, G = load_generator_file(path), load_generator_file(path, which="G")
    assert torch.equal(G.synthesis.b8.conv0.weight, snap["G"].flat_state()["synthesis.b8.conv0.weight"])
    assert not torch.equal(G.synthesis.b8.conv0.weight, G_ema.synthesis.b8.conv0.weight)
    no_g = nvp.write(tmp_path / "ema-only.pkl", {"G_ema": snap["G_ema"]})
    with pytest.raises(WeightsError, match="has no 'G' network") as excinfo:
        load_generator_file(no_g, which="G")
    assert "it holds: G_ema" in one_line_error(excinfo)


@pytest.mark.parametrize("protocol", [3, 4, 5])
@pytest.mark.parametrize("layout", ["ada", "sg3"])
def test_pickle_protocols_and_both_repositories_layouts(tmp_path, protocol, layout):
    """The stylegan3 repository passes synthesis kwargs top-level and clamps at 256 by default."""
    cfg = nvp.Config(resolution=8, layout=layout, conv_clamp=256 if layout == "sg3" else None,
                     tf_kwargs=protocol == 3)
    snap = nvp.snapshot(cfg)
    G = load_generator_file(nvp.write(tmp_path / "net.pkl", snap, protocol=protocol))
    assert G.synthesis.b8.conv1.conv_clamp == cfg.conv_clamp
    ws = torch.randn(1, G.num_ws, 8) * 30
    with torch.no_grad():
        assert close(G.synthesis(ws), ref.synthesis(snap["G_ema"].flat_state(), ws, 8, cfg.conv_clamp))


def test_full_tensorflow_converted_kwargs_are_honoured(tmp_path):
    snap = nvp.snapshot(nvp.Config(resolution=8, tf_kwargs=True))
    G = load_generator_file(nvp.write(tmp_path / "tf.pkl", snap))
    assert G.init_kwargs["mapping_kwargs"]["lr_multiplier"] == 0.01
    assert G.init_kwargs["synthesis_kwargs"]["architecture"] == "skip"
    G_mod = snap["G_ema"]
    G_mod.init_kwargs["synthesis_kwargs"]["architecture"] = "resnet"
    with pytest.raises(WeightsError, match="only the 'skip' synthesis architecture") as excinfo:
        load_generator_file(nvp.write(tmp_path / "resnet.pkl", {"G_ema": G_mod}))
    one_line_error(excinfo)


def test_layer_attributes_must_agree_with_the_config(tmp_path):
    snap = nvp.snapshot(nvp.Config(resolution=8))
    snap["G_ema"].children["mapping"].children["fc1"].attrs["activation"] = "relu"
    with pytest.raises(WeightsError, match=r"mapping\.fc1\.activation is 'relu'"):
        load_generator_file(nvp.write(tmp_path / "odd.pkl", snap))


def test_module_source_in_the_pickle_is_never_run(tmp_path, marker):
    cfg = nvp.Config(resolution=8)
    snap = nvp.snapshot(cfg)
    evil_src = f"open({str(marker)!r}, 'w').write('ran')\nimport os\nos.system('touch {marker}')\n"
    for module in snap["G_ema"].walk() + snap["G"].walk():
        module.module_src = evil_src
    G = load_generator_file(nvp.write(tmp_path / "net.pkl", snap))
    assert G.img_resolution == 8
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


def test_wrong_kinds_of_files(tmp_path):
    cfg = nvp.Config(resolution=8)
    cases = {
        "d-only.pkl": (nvp.dumps({"D": nvp.discriminator()}), "has no 'G_ema' network"),
        "dict.pkl": (pickle.dumps({"weights": [1, 2, 3]}), "has no 'G_ema' network"),
        "list.pkl": (pickle.dumps([1, 2, 3]), "holds a list, not NVIDIA networks"),
        "d-as-g.pkl": (nvp.dumps({"G_ema": nvp.discriminator()}), "is a Discriminator, not a Generator"),
        "other-gan.pkl": (nvp.dumps({"G_ema": nvp.Module("Generator", children={"synthesis": nvp.Module(
            "SynthesisNetwork", children={"input": nvp.Module("ConstantInput"),
                                          "L0_36_512": nvp.Module("SynthesisLayer")})})}),
                          "neither a StyleGAN2 nor a StyleGAN3 generator .*input, L0_36_512"),
        "text.txt": (b"hello, I am not weights\n", "is not a generator weights file"),
    }
    wrong_shapes = nvp.generator(cfg)
    wrong_shapes.init_kwargs["synthesis_kwargs"]["channel_max"] = 8
    cases["shapes.pkl"] = (nvp.dumps({"G_ema": wrong_shapes}), r"synthesis\.b4\.const has shape \[16, 4, 4\]")
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(WeightsError, match=message) as excinfo:
            load_generator_file(path)
        one_line_error(excinfo)
    zip_file = tmp_path / "other.pt"
    torch.save({"model": {"conv.weight": torch.zeros(2)}}, zip_file)
    with pytest.raises(WeightsError, match="torch file but holds no generator stylepuppet reads .*it holds: model"):
        load_generator_file(zip_file)
    with pytest.raises(WeightsError, match="does not exist"):
        load_generator_file(tmp_path / "missing.pkl")
    with pytest.raises(WeightsError, match="is not a file"):
        load_generator_file(tmp_path)


def test_damaged_files_give_one_line_errors(tmp_path):
    cfg = nvp.Config(resolution=8)
    good = nvp.dumps(nvp.snapshot(cfg))
    G = load_generator_file(nvp.write(tmp_path / "good.pkl", nvp.snapshot(cfg)))
    save_generator(G, tmp_path / "good.safetensors")
    ours = (tmp_path / "good.safetensors").read_bytes()
    torch.save({"g_ema": {"style.1.weight": torch.zeros(4, 4)}}, tmp_path / "rosi.pt")
    rosi = (tmp_path / "rosi.pt").read_bytes()
    gen = torch.Generator().manual_seed(0)
    damaged = {
        "empty.pkl": b"",
        "random.pkl": torch.randint(0, 256, (4096,), generator=gen, dtype=torch.uint8).numpy().tobytes(),
        "header-only.pkl": good[:2],
        "pickle-random.pkl": b"\x80\x04" + torch.randint(0, 256, (512,), generator=gen, dtype=torch.uint8)
        .numpy().tobytes(),
        "ours-truncated.safetensors": ours[: len(ours) // 2],
        "ours-bad-header.safetensors": ours[:8] + b"{" + b"\xff" * 40 + ours[49:],
        "rosi-truncated.pt": rosi[: len(rosi) // 2],
    }
    for fraction in (0.01, 0.3, 0.6, 0.999):
        damaged[f"truncated-{fraction}.pkl"] = good[: int(len(good) * fraction)]
    for name, data in damaged.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(WeightsError) as excinfo:
            load_generator_file(path)
        one_line_error(excinfo)
    # bytes overwritten anywhere: a one-line WeightsError, or (inside raw tensor data, which only a
    # checksum can catch) a successful load; never another exception
    refused = 0
    for offset in range(2, len(good), len(good) // 20):
        path = tmp_path / "corrupt.pkl"
        path.write_bytes(good[:offset] + b"\x00\xff\x13\x37\x8a" * 4 + good[offset + 20:])
        try:
            load_generator_file(path)
        except WeightsError as exc:
            assert "\n" not in str(exc), offset
            refused += 1
    assert refused >= 5
    with pytest.raises(WeightsError, match="is empty"):
        load_generator_file(tmp_path / "empty.pkl")
    with pytest.raises(WeightsError, match="not a readable network pickle .*truncated or corrupted"):
        load_generator_file(tmp_path / "truncated-0.6.pkl")


# ---------------------------------------------------------------------------------------------- malicious pickles


def evil_cases(marker) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, the global our error must name); each would touch ``marker`` if unpickled."""
    cmd = f"touch {marker}"
    py = f"open({str(marker)!r}, 'w').close()"
    os_system = Call(Global("os", "system"), cmd)
    cfg = nvp.Config(resolution=4)

    nested_in_state = nvp.generator(cfg)
    nested_in_state.children["synthesis"].children["b4"].children["conv1"].buffers["noise_const"] = os_system
    nested_in_kwargs = nvp.generator(cfg)
    nested_in_kwargs.init_kwargs["mapping_kwargs"] = Call(Global("builtins", "exec"), py)
    storage_from_system = Call(Global("torch._utils", "_rebuild_tensor_v2"), os_system, 0, (4, 4), (4, 1), False,
                               {})
    hooked = Call(Global("torch._utils", "_rebuild_tensor_v2"),
                  Call(Global("torch.storage", "_load_from_bytes"), storage_blob()), 0, (2,), (1,), False,
                  {"hook": Global("builtins", "print")})
    get_system = Call(Global("builtins", "getattr"), Call(Global("builtins", "__import__"), "os"), "system")
    proto2 = b"\x80\x02"  # a PROTO header in front of hand-written protocol-0 opcodes
    return {
        "os.system": (proto2 + f"cos\nsystem\n(S'{cmd}'\ntR.".encode(), "os.system"),
        "posix.system": (proto2 + f"cposix\nsystem\n(S'{cmd}'\ntR.".encode(), "posix.system"),
        "eval": (nvp.dumps(Call(Global("builtins", "eval"), py)), "builtins.eval"),
        "exec": (nvp.dumps(Call(Global("builtins", "exec"), py)), "builtins.exec"),
        "getattr(__import__)": (nvp.dumps(Call(get_system, cmd)), "builtins.getattr"),
        "subprocess.Popen": (nvp.dumps(Call(Global("subprocess", "Popen"), ["touch", str(marker)])),
                             "subprocess.Popen"),
        "stack-global os.system": (nvp.dumps(os_system, protocol=4), "os.system"),
        "INST opcode": (proto2 + f"(S'{cmd}'\nios\nsystem\n.".encode(), "os.system"),
        "OBJ opcode": (proto2 + f"(cos\nsystem\nS'{cmd}'\no.".encode(), "os.system"),
        "in a module state": (nvp.dumps({"G_ema": nested_in_state}), "os.system"),
        "in init kwargs": (nvp.dumps({"G_ema": nested_in_kwargs}), "builtins.exec"),
        "as a tensor storage": (nvp.dumps({"G_ema": storage_from_system}), "os.system"),
        "callable in tensor hooks": (nvp.dumps({"G_ema": hooked}), "builtins.print"),
        "torch.load inside": (nvp.dumps(Call(Global("torch.serialization", "load"), str(marker))),
                              "torch.serialization.load"),
        "torch module class": (nvp.dumps(Call(Global("torch.nn.modules.linear", "Linear"), 2, 2)),
                               "torch.nn.modules.linear.Linear"),
        "legacy storage class": (nvp.dumps(Call(Global("torch", "FloatStorage"), 4)), "torch.FloatStorage"),
        "NVIDIA's source loader": (nvp.dumps(Call(Global("torch_utils.persistence", "_src_to_module"), py)),
                                   "torch_utils.persistence._src_to_module"),
        "dnnlib call_func_by_name": (nvp.dumps(Call(Global("dnnlib.util", "call_func_by_name"), "builtins.exec", py)),
                                     "dnnlib.util.call_func_by_name"),
        "copyreg reconstructor": (nvp.dumps(Call(Global("copyreg", "_reconstructor"), Global("os", "system"),
                                                 Global("builtins", "object"), None)), "copyreg._reconstructor"),
        "nested pickle.loads": (nvp.dumps(Call(Global("pickle", "loads"), f"cos\nsystem\n(S'{cmd}'\ntR.".encode())),
                                "pickle.loads"),
        "evil storage blob": (nvp.dumps({"G_ema": Call(Global("torch.storage", "_load_from_bytes"),
                                                       b"\x80\x02" + f"cposix\nsystem\n(S'{cmd}'\ntR.".encode())}),
                              "posix.system"),
    }


def storage_blob() -> bytes:
    """A storage as NVIDIA pickles hold it: a legacy ``torch.save`` of the storage."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation
        torch.save(torch.zeros(2)._typed_storage(), buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def test_malicious_pickles_are_refused_and_run_nothing(tmp_path, marker):
    cases = evil_cases(marker)
    assert len(cases) >= 10
    for name, (data, refused) in cases.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        with pytest.raises(UnsafePickleError) as excinfo:
            load_generator_file(path)
        message = one_line_error(excinfo)
        assert refused in message and "refused" in message and str(path) in message, (name, message)
        assert not marker.exists(), name
        with pytest.raises(UnsafePickleError, match=refused):
            safe_unpickle(data)
    headerless = tmp_path / "protocol0.pkl"
    headerless.write_bytes(cases["os.system"][0][2:])
    with pytest.raises(WeightsError, match="is not a generator weights file"):
        load_generator_file(headerless)
    with pytest.raises(UnsafePickleError, match="os.system"):
        safe_unpickle(headerless.read_bytes())


def test_malformed_but_allowed_globals_are_rejected(tmp_path, marker):
    """Globals on the allow-list called with hostile arguments: errors, never effects."""
    cases = {
        "hooks with an allowed callable": nvp.dumps({"G_ema": Call(
            Global("torch._utils", "_rebuild_tensor_v2"), Call(Global("torch.storage", "_load_from_bytes"),
                                                               storage_blob()),
            0, (2,), (1,), False, {"hook": Global("torch._utils", "_rebuild_parameter")})}),
        "object numpy dtype": nvp.dumps({"G_ema": Call(Global("numpy._core.multiarray", "scalar"),
                                                       Call(Global("numpy", "dtype"), "O8"), b"12345678")}),
        "tensor past its storage": nvp.dumps({"G_ema": Call(
            Global("torch._utils", "_rebuild_tensor_v2"), Call(Global("torch.storage", "_load_from_bytes"),
                                                               storage_blob()), 0, (100,), (1,), False, {})}),
        "storage of a string": nvp.dumps(Call(Global("torch._utils", "_rebuild_tensor_v2"), "storage", 0, (1,), (1,))),
        "persistent meta not a dict": nvp.dumps({"G_ema": Call(Global("torch_utils.persistence",
                                                                      "_reconstruct_persistent_obj"), "code")}),
        "persistent id": b"\x80\x02U\x03abcQ.",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        with pytest.raises(WeightsError) as excinfo:
            load_generator_file(path)
        one_line_error(excinfo)
    assert set(NETWORK_PICKLE.names) >= {("torch_utils.persistence", "_reconstruct_persistent_obj"),
                                    ("dnnlib.util", "EasyDict"), ("torch.storage", "_load_from_bytes")}


def test_the_crafted_payloads_are_live(tmp_path):
    """The same bytes do run with plain pickle: the refusals above are what protects us."""
    marker = tmp_path / "live"
    cases = evil_cases(marker)
    for name in ("eval", "exec", "os.system", "OBJ opcode"):
        pickle.loads(cases[name][0])
        assert marker.exists(), name
        marker.unlink()


def test_safe_unpickle_returns_inert_stand_ins():
    snap = nvp.snapshot(nvp.Config(resolution=4))
    top = safe_unpickle(nvp.dumps(snap), source="snap")
    assert top["G_ema"].class_name == "Generator" and top["D"].class_name == "Discriminator"
    assert top["G_ema"].meta["module_src"] == nvp.MODULE_SRC
    assert top["training_set_kwargs"]["resolution"] == 4 and type(top["training_set_kwargs"]).__name__ == "EasyDict"
    assert top["G_ema"].state["_init_kwargs"]["mapping_kwargs"] == {"num_layers": 2}


# ---------------------------------------------------------------------------------------------- rosinality


def rosinality_state(size: int = 16, dim: int = 8, n_mlp: int = 2, channels: dict[int, int] | None = None,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in rosinality's stylegan2-pytorch Generator layout."""
    channels = channels or {4: 16, 8: 16, 16: 8, 32: 4}
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return shift + scale * torch.randn(*shape, generator=gen)

    blur = ref.FIR2D * 4
    sd: dict[str, torch.Tensor] = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = randn(dim, dim) / 0.01
        sd[f"style.{i}.bias"] = randn(dim, scale=20)
    sd["input.input"] = randn(1, channels[4], 4, 4)

    def styled(prefix: str, cin: int, cout: int, up: bool) -> None:
        sd[f"{prefix}.conv.weight"] = randn(1, cout, cin, 3, 3)
        sd[f"{prefix}.conv.modulation.weight"] = randn(cin, dim)
        sd[f"{prefix}.conv.modulation.bias"] = randn(cin, scale=0.2, shift=1)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = blur.clone()
        sd[f"{prefix}.noise.weight"] = torch.tensor([0.4])
        sd[f"{prefix}.activate.bias"] = randn(cout, scale=0.2)

    def rgb(prefix: str, cin: int, up: bool) -> None:
        if up:
            sd[f"{prefix}.upsample.kernel"] = blur.clone()
        sd[f"{prefix}.conv.weight"] = randn(1, 3, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = randn(cin, dim)
        sd[f"{prefix}.conv.modulation.bias"] = randn(cin, scale=0.2, shift=1)
        sd[f"{prefix}.bias"] = randn(1, 3, 1, 1, scale=0.2)

    styled("conv1", channels[4], channels[4], False)
    rgb("to_rgb1", channels[4], False)
    num_up = int(math.log2(size)) - 2
    for i in range(num_up):
        cin, cout = channels[4 * 2 ** i], channels[8 * 2 ** i]
        styled(f"convs.{2 * i}", cin, cout, True)
        styled(f"convs.{2 * i + 1}", cout, cout, False)
        rgb(f"to_rgbs.{i}", cout, True)
    for j in range(2 * num_up + 1):
        res = 2 ** ((j + 5) // 2)
        sd[f"noises.noise_{j}"] = randn(1, 1, res, res)
    return sd


def rosi_upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """rosinality's upfirdn2d_native: zero-insert, pad, correlate with the flipped kernel."""
    n, c, h, w = x.shape
    out = x.reshape(n * c, h, 1, w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1]).reshape(n * c, 1, h * up, w * up)
    out = F.pad(out, [pad[0], pad[1], pad[0], pad[1]])
    out = F.conv2d(out, torch.flip(kernel, [0, 1])[None, None])
    return out.reshape(n, c, out.shape[2], out.shape[3])


def rosi_linear(sd: dict[str, torch.Tensor], prefix: str, x: torch.Tensor, lr_mul: float, act: bool) -> torch.Tensor:
    weight = sd[f"{prefix}.weight"]
    out = F.linear(x, weight * (1 / math.sqrt(weight.shape[1])) * lr_mul)
    bias = sd[f"{prefix}.bias"] * lr_mul
    return F.leaky_relu(out + bias, 0.2) * 2 ** 0.5 if act else out + bias


def rosi_modconv(sd: dict[str, torch.Tensor], prefix: str, x: torch.Tensor, latent: torch.Tensor, demodulate: bool,
                 upsample: bool) -> torch.Tensor:
    n, cin, h, w = x.shape
    weight = sd[f"{prefix}.conv.weight"]
    cout, k = weight.shape[1], weight.shape[-1]
    style = rosi_linear(sd, f"{prefix}.conv.modulation", latent, 1, False).view(n, 1, cin, 1, 1)
    weight = (1 / math.sqrt(cin * k * k)) * weight * style
    if demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(n, cout, 1, 1, 1)
    if upsample:
        weight = weight.transpose(1, 2).reshape(n * cin, cout, k, k)
        out = F.conv_transpose2d(x.view(1, n * cin, h, w), weight, padding=0, stride=2, groups=n)
        out = out.view(n, cout, out.shape[2], out.shape[3])
        p = (4 - 2) - (k - 1)  # their Blur padding for factor 2
        return rosi_upfirdn2d(out, sd[f"{prefix}.conv.blur.kernel"], 1, ((p + 1) // 2 + 1, p // 2 + 1))
    out = F.conv2d(x.view(1, n * cin, h, w), weight.view(n * cout, cin, k, k), padding=k // 2, groups=n)
    return out.view(n, cout, h, w)


def rosi_forward(sd: dict[str, torch.Tensor], latent: torch.Tensor) -> torch.Tensor:
    """rosinality's Generator.forward(input_is_latent=True, randomize_noise=False) on W+ ``latent``."""

    def styled(prefix: str, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor, up: bool) -> torch.Tensor:
        out = rosi_modconv(sd, prefix, x, w, True, up)
        out = out + sd[f"{prefix}.noise.weight"] * noise
        return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * 2 ** 0.5

    def to_rgb(prefix: str, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = rosi_modconv(sd, prefix, x, w, False, False) + sd[f"{prefix}.bias"]
        if skip is not None:
            kernel = sd[f"{prefix}.upsample.kernel"]
            p = kernel.shape[0] - 2  # their Upsample padding for factor 2
            out = out + rosi_upfirdn2d(skip, kernel, 2, ((p + 1) // 2 + 1, p // 2))
        return out

    out = sd["input.input"].repeat(latent.shape[0], 1, 1, 1)
    out = styled("conv1", out, latent[:, 0], sd["noises.noise_0"], False)
    skip = to_rgb("to_rgb1", out, latent[:, 1], None)
    i = 1
    j = 0
    while f"to_rgbs.{j}.conv.weight" in sd:
        out = styled(f"convs.{2 * j}", out, latent[:, i], sd[f"noises.noise_{2 * j + 1}"], True)
        out = styled(f"convs.{2 * j + 1}", out, latent[:, i + 1], sd[f"noises.noise_{2 * j + 2}"], False)
        skip = to_rgb(f"to_rgbs.{j}", out, latent[:, i + 2], skip)
        i += 2
        j += 1
    return skip


def rosi_style(sd: dict[str, torch.Tensor], z: torch.Tensor, n_mlp: int) -> torch.Tensor:
    x = z * torch.rsqrt(torch.mean(z ** 2, dim=1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        x = rosi_linear(sd, f"style.{i}", x, 0.01, True)
    return x


@pytest.mark.parametrize("legacy", [False, True])
def test_rosinality_checkpoint_maps_onto_the_same_function(tmp_path, legacy):
    sd = rosinality_state(size=32)
    latent_avg = torch.randn(8)
    path = tmp_path / "stylegan2-ffhq-config-f.pt"
    torch.save({"g_ema": sd, "g": rosinality_state(size=32, seed=1), "latent_avg": latent_avg,
                "args": argparse.Namespace(size=32, channel_multiplier=2)}, path,
               _use_new_zipfile_serialization=not legacy)
    assert identify(path)[0].name == "rosinality StyleGAN2 checkpoint"
    G = load_generator_file(path)
    assert (G.img_resolution, G.num_ws, G.w_dim) == (32, 8, 8)
    assert G.init_kwargs["synthesis_kwargs"] == {"channel_base": 128, "channel_max": 16}
    assert torch.equal(G.mapping.w_avg, latent_avg)
    torch.manual_seed(0)
    z = torch.randn(3, 8)
    with torch.no_grad():
        w = rosi_style(sd, z, 2)
        assert close(G.mapping(z, None)[:, 0], w)
        truncated = latent_avg + 0.6 * (w - latent_avg)  # rosinality's truncation
        assert close(G.mapping(z, None, truncation_psi=0.6)[:, -1], truncated)
        latent = w[:, None].repeat(1, 8, 1) + torch.randn(3, 8, 8)
        assert close(G.synthesis(latent, noise_mode="const"), rosi_forward(sd, latent))
        no_noise = {**sd, **{k: torch.zeros_like(v) for k, v in sd.items() if k.startswith("noises.")}}
        assert close(G.synthesis(latent, noise_mode="none"), rosi_forward(no_noise, latent))
    raw = load_generator_file(path, which="G")
    assert not torch.equal(raw.synthesis.b8.conv0.weight, G.synthesis.b8.conv0.weight)


def test_rosinality_variants_and_errors(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save(rosinality_state(size=8, channels={4: 16, 8: 8}), bare)
    G = load_generator_file(bare)
    assert G.img_resolution == 8 and bool((G.mapping.w_avg == 0).all())  # no latent_avg: w_avg stays zero
    odd = rosinality_state(size=8, channels={4: 8, 8: 16})  # widths that grow with resolution
    torch.save({"g_ema": odd}, tmp_path / "odd.pt")
    with pytest.raises(WeightsError, match="cannot be expressed as NVIDIA's channel_base/channel_max"):
        load_generator_file(tmp_path / "odd.pt")
    blur = rosinality_state(size=8, channels={4: 16, 8: 8})
    blur["convs.0.conv.blur.kernel"] = torch.ones(4, 4) / 4
    torch.save({"g_ema": blur}, tmp_path / "blur.pt")
    with pytest.raises(WeightsError, match="is not the \\[1,3,3,1\\] blur kernel"):
        load_generator_file(tmp_path / "blur.pt")
    extra = {**rosinality_state(size=8, channels={4: 16, 8: 8}), "convs.9.conv.weight": torch.zeros(1)}
    torch.save({"g_ema": extra}, tmp_path / "extra.pt")
    with pytest.raises(WeightsError, match="does not know: convs.9.conv.weight"):
        load_generator_file(tmp_path / "extra.pt")
    missing = rosinality_state(size=8, channels={4: 16, 8: 8})
    del missing["noises.noise_2"]
    torch.save({"g_ema": missing}, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="has no noises.noise_2"):
        load_generator_file(tmp_path / "missing.pt")


def test_rosinality_file_with_code_is_refused(tmp_path, marker):
    class Evil:
        def __reduce__(self):
            return (eval, (f"open({str(marker)!r}, 'w').close()",))

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": rosinality_state(size=8, channels={4: 16, 8: 8}), "extra": Evil()}, path)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match="refused to load: it calls eval") as excinfo:
        load_generator_file(path)
    assert "weights_only" not in one_line_error(excinfo)


# ---------------------------------------------------------------------------------------------- our format


def test_safetensors_round_trip_and_conversion(tmp_path):
    snap = nvp.snapshot(nvp.Config(resolution=16, c_dim=2, conv_clamp=0.9))
    pkl = nvp.write(tmp_path / "net.pkl", snap)
    G = load_generator_file(pkl)
    out = convert_generator(pkl, tmp_path / "out" / "net.safetensors")
    assert sorted(p.name for p in out.parent.iterdir()) == ["net.safetensors"]  # atomic: no temp files left
    assert identify(out)[0].name == "stylepuppet safetensors"
    loaded = load_generator_file(out)
    assert loaded.init_kwargs == G.init_kwargs and not loaded.training
    z, c = torch.randn(2, 8), torch.eye(2)
    with torch.no_grad():
        for mode in ("const", "none"):
            assert torch.equal(loaded(z, c, truncation_psi=0.7, noise_mode=mode), G(z, c, truncation_psi=0.7,
                                                                                    noise_mode=mode))
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT and meta["format_version"] == "1" and meta["source"] == "net.pkl"
    assert meta["which"] == "G_ema" and json.loads(meta["config"]) == G.init_kwargs
    raw = convert_generator(pkl, tmp_path / "raw.bin", which="G")  # detected by content, not by extension
    assert torch.equal(load_generator_file(raw).synthesis.b8.conv0.weight,
                       snap["G"].flat_state()["synthesis.b8.conv0.weight"])
    fresh = Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=4, synthesis_kwargs={"channel_base": 64})
    save_generator(fresh, out)  # overwrites in place
    assert load_generator_file(out).img_resolution == 4


def test_foreign_and_future_safetensors_are_refused(tmp_path):
    G = Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=4, synthesis_kwargs={"channel_base": 64})
    state = {k: v.contiguous() for k, v in G.state_dict().items()}
    cases = {
        "foreign": ({}, "not a stylepuppet generator"),
        "future": ({"format": FORMAT, "format_version": "99", "config": json.dumps(G.init_kwargs)}, "upgrade"),
        "bad-config": ({"format": FORMAT, "format_version": "1", "config": "{"}, "unreadable generator config"),
        "bad-arch": ({"format": FORMAT, "format_version": "1", "config": json.dumps(
            {**G.init_kwargs, "synthesis_kwargs": {"architecture": "orig"}})}, "only the 'skip'"),
    }
    for name, (meta, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(state, str(path), metadata=meta or None)
        with pytest.raises(WeightsError, match=message) as excinfo:
            load_generator_file(path)
        one_line_error(excinfo)
    save_file({k: v for k, v in state.items() if "torgb" not in k}, str(tmp_path / "partial.safetensors"),
              metadata={"format": FORMAT, "format_version": "1", "config": json.dumps(G.init_kwargs)})
    with pytest.raises(WeightsError, match="missing synthesis.b4.torgb.weight"):
        load_generator_file(tmp_path / "partial.safetensors")
