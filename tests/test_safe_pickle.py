"""The one allow-list mechanism: stand-ins instead of the named globals, refusals that name the global."""

import pickle
from collections import OrderedDict

import pytest
import torch

from stylepuppet import safe_pickle
from stylepuppet.errors import UnsafePickleError, WeightsError
from stylepuppet.safe_pickle import AllowList, fresh, shared


class _Exploit:
    def __reduce__(self):
        return (print, ("ran",))


def test_allowed_globals_get_their_stand_ins_and_others_are_refused_by_name():
    allow = AllowList("test pickle", {("collections", "OrderedDict"): shared(dict),
                                      ("builtins", "set"): fresh(lambda: type("Set", (set,), {}))},
                      modules={"__torch__": lambda module, name: f"{module}.{name}"})
    data = pickle.dumps([OrderedDict(a=1), OrderedDict(b=2)], protocol=2)
    assert safe_pickle.load(data, allow, source="x") == [{"a": 1}, {"b": 2}]
    made = allow.provider("__builtin__", "set")  # Python 2's name for builtins
    assert made("builtins", "set") is not made("builtins", "set")  # a fresh stand-in at every lookup
    assert allow.provider("__torch__.nets", "Net")("__torch__.nets", "Net") == "__torch__.nets.Net"
    assert allow.provider("__torchvision__", "Net") is None
    with pytest.raises(UnsafePickleError, match=r"^evil: refused to load: the pickle calls (__builtin__|builtins)"
                                                r"\.print, which is not allowed in a test pickle"):
        safe_pickle.load(pickle.dumps(_Exploit(), protocol=2), allow, source="evil")
    with pytest.raises(WeightsError, match="^cut is not a readable test pickle .*truncated"):
        safe_pickle.load(data[:-5], allow, source="cut")


def test_torch_files_are_read_with_torchs_allow_list_and_the_same_errors(tmp_path):
    torch.save({"module.w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(safe_pickle.torch_load(tmp_path / "ok.pt", what="ok")["module.w"], torch.ones(2))
    torch.save({"net": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")
    with pytest.raises(UnsafePickleError, match="^mine: refused to load: it calls torch.nn.modules.linear") as info:
        safe_pickle.torch_load(tmp_path / "module.pt", what="mine")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(WeightsError, match="^gone not found"):
        safe_pickle.torch_load(tmp_path / "missing.pt", what="gone")


def test_state_dicts_are_unwrapped_from_checkpoints_and_data_parallel():
    w = torch.zeros(1)
    assert safe_pickle.state_dict({"module.a": w}) == {"a": w}
    assert safe_pickle.state_dict({"state_dict": {"module.a": w}, "epoch": 3}) == {"a": w}
    assert safe_pickle.state_dict({"netG": {"a": w}}, nested=("netG", "state_dict")) == {"a": w}
    assert safe_pickle.state_dict(w) is None
