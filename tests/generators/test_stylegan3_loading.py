"""StyleGAN3 network pickles through the safe loader: numpy data rebuilt as data, classes told by their records."""

from __future__ import annotations

import sys

import numpy as np
import nvidia_pickle as nvp
import pytest
import torch
from nvidia_pickle import Call, Global

from stylepuppet import safe_pickle
from stylepuppet.errors import UnsafePickleError, WeightsError
from stylepuppet.generators import stylegan2, stylegan3
from stylepuppet.generators.checkpoints import NETWORK_PICKLE, save_generator
from stylepuppet.generators.loader import convert_generator, load_generator_file

CFG = nvp.SG3Config(num_layers=4)


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and 0 < len(message) < 400
    return message


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "something from a pickle was executed"


@pytest.mark.parametrize("numpy_core", ["numpy.core", "numpy._core"])
@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_numpy_1_and_2_pickles_of_every_protocol_load(tmp_path, protocol, numpy_core):
    """NVIDIA's files name numpy 1.x's modules; re-saved under numpy 2 they name numpy._core; protocol 5
    pickles arrays through _frombuffer."""
    snap = nvp.sg3_snapshot(CFG)
    data = nvp.dumps(snap, protocol, numpy_core)
    assert f"{numpy_core}.multiarray".encode() in data or f"{numpy_core}.numeric".encode() in data
    G = load_generator_file(nvp.write(tmp_path / "net.pkl", snap, protocol, numpy_core))
    state = snap["G_ema"].flat_state()
    assert type(G) is stylegan3.Generator
    assert list(G.state_dict()) == list(state) and all(torch.equal(G.state_dict()[k], v) for k, v in state.items())
    top = safe_pickle.load(data, NETWORK_PICKLE, source="pickle")
    layer = top["G_ema"].state["_modules"]["synthesis"].state["_modules"]["L0_36_16"].state
    assert isinstance(layer["in_size"], np.ndarray) and layer["in_size"].tolist() == [36, 36]
    assert isinstance(layer["in_cutoff"], np.float64) and isinstance(layer["use_fp16"], np.bool_)


def test_which_picks_g_or_g_ema_and_stylegan2_pickles_still_load(tmp_path):
    snap = nvp.sg3_snapshot(CFG)
    path = nvp.write(tmp_path / "snap.pkl", snap)
    G_ema, G = load_generator_file(path), load_generator_file(path, which="G")
    name = "synthesis.L1_36_16.weight"
    assert torch.equal(G.state_dict()[name], snap["G"].flat_state()[name])
    assert not torch.equal(G.state_dict()[name], G_ema.state_dict()[name])
    sg2 = load_generator_file(nvp.write(tmp_path / "sg2.pkl", nvp.snapshot(nvp.Config(resolution=8, layout="sg3",
                                                                                        conv_clamp=256))))
    assert type(sg2) is stylegan2.Generator


def test_layer_attributes_must_agree_with_the_config(tmp_path):
    """A pickled attribute our layer would compute differently (here: padding, cut-off, kernel) is refused."""
    for attr, value in (("padding", [8, 9, 8, 9]), ("out_cutoff", np.float64(2.5)), ("conv_kernel", 1)):
        snap = nvp.sg3_snapshot(CFG)
        snap["G_ema"].children["synthesis"].children["L1_36_16"].attrs[attr] = value
        with pytest.raises(WeightsError, match=rf"synthesis\.L1_36_16\.{attr} is .* this variant is not supported") \
                as excinfo:
            load_generator_file(nvp.write(tmp_path / "odd.pkl", snap))
        one_line_error(excinfo)
    snap = nvp.sg3_snapshot(CFG)
    snap["G_ema"].init_kwargs["num_layers"] = 5
    with pytest.raises(WeightsError, match="does not match a StyleGAN3 generator of its config"):
        load_generator_file(nvp.write(tmp_path / "depth.pkl", snap))
    snap = nvp.sg3_snapshot(CFG)
    snap["G_ema"].init_kwargs["use_radial_filterz"] = True
    with pytest.raises(WeightsError, match="unsupported synthesis_kwargs: use_radial_filterz"):
        load_generator_file(nvp.write(tmp_path / "kwarg.pkl", snap))


def test_module_source_in_the_pickle_is_never_run(tmp_path, marker):
    snap = nvp.sg3_snapshot(CFG)
    evil_src = f"open({str(marker)!r}, 'w').write('ran')\nimport os\nos.system('touch {marker}')\n"
    for module in snap["G_ema"].walk() + snap["G"].walk() + snap["D"].walk():
        module.module_src = evil_src
    G = load_generator_file(nvp.write(tmp_path / "net.pkl", snap))
    assert G.num_ws == 6
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules and "training" not in sys.modules


def test_hostile_numpy_objects_are_refused(tmp_path, marker):
    """Arrays are rebuilt only from numeric bytes of the declared size; numpy.ndarray is never called."""
    reconstruct = Global("numpy.core.multiarray", "_reconstruct")
    ndarray = Global("numpy", "ndarray")
    i8 = np.dtype("int64")
    system = Call(Global("os", "system"), f"touch {marker}")

    class Array:
        """``_reconstruct(ndarray, (0,), b'b')`` then BUILD with a hand-made state."""

        def __init__(self, state: object, cls: object = ndarray) -> None:
            self.state, self.cls = state, cls

        def __reduce__(self):
            return (reconstruct, (self.cls, (0,), b"b"), self.state)

    cases = {
        "object array": Array((1, (1,), np.dtype(object), False, [system])),
        "short data": Array((1, (4,), i8, False, b"\0" * 8)),
        "huge shape": Array((1, (2 ** 40,), i8, False, b"")),
        "not an ndarray class": Array((1, (1,), i8, False, b"\0" * 8), cls=Global("numpy", "dtype")),
        "ndarray called": Call(ndarray, (2,), i8),
        "frombuffer object dtype": Call(Global("numpy._core.numeric", "_frombuffer"), b"\0" * 8, np.dtype(object),
                                        (1,), "C"),
        "frombuffer short": Call(Global("numpy.core.numeric", "_frombuffer"), b"\0" * 4, i8, (1,), "C"),
    }
    for name, obj in cases.items():
        snap = nvp.sg3_snapshot(CFG)
        snap["G_ema"].children["synthesis"].children["L1_36_16"].attrs["in_size"] = obj
        path = nvp.write(tmp_path / "hostile.pkl", snap)
        with pytest.raises(WeightsError) as excinfo:
            load_generator_file(path)
        message = one_line_error(excinfo)
        assert "numpy" in message or "numeric" in message or "os.system" in message, (name, message)
        if "os.system" in message:
            assert isinstance(excinfo.value, UnsafePickleError)


def test_our_format_round_trip_and_convert(tmp_path):
    G = load_generator_file(nvp.write(tmp_path / "net.pkl", nvp.sg3_snapshot(CFG)))
    out = convert_generator(tmp_path / "net.pkl", tmp_path / "net.safetensors")
    again = load_generator_file(out)
    assert type(again) is stylegan3.Generator and again.init_kwargs == G.init_kwargs
    assert all(torch.equal(again.state_dict()[k], v) for k, v in G.state_dict().items())
    ws = torch.randn(2, G.num_ws, G.w_dim)
    with torch.no_grad():
        assert torch.equal(again.synthesis(ws), G.synthesis(ws))
    save_generator(again, tmp_path / "copy.safetensors")
    assert type(load_generator_file(tmp_path / "copy.safetensors")) is stylegan3.Generator
    with pytest.raises(WeightsError, match="only StyleGAN2 and StyleGAN3 generators"):
        save_generator(torch.nn.Linear(2, 2), tmp_path / "linear.safetensors")
