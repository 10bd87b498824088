import hashlib
import os
import subprocess
import sys

import pytest
import torch
from weights_server import serve

from stylepuppet import weights
from stylepuppet.cli import run
from stylepuppet.generators.checkpoints import save_generator
from stylepuppet.generators.loader import load_generator_file
from stylepuppet.generators.stylegan2 import Generator
from stylepuppet.weights import WeightsEntry

DATA = b"tiny weights " * 100


def entry(name: str, url: str, digest: str | None = None, filename: str | None = None) -> WeightsEntry:
    return WeightsEntry(name=name, url=url, filename=filename or f"{name}.pkl", sha256=digest, size=None,
                        licence="Test Licence NC, https://example.invalid/licence", kind="stylegan2", resolution=16,
                        description=f"tiny {name}")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(path))
    return path


@pytest.fixture
def server():
    with serve() as served:
        yield served


@pytest.fixture
def registry(monkeypatch, server):
    reg = {
        "net-a": entry("net-a", server.add("a.pkl", DATA), digest=hashlib.sha256(DATA).hexdigest()),
        "net-b": entry("net-b", server.add("b.pkl", DATA[::-1])),
        "net-c": entry("net-c", server.url + "/missing.pkl"),
    }
    monkeypatch.setattr(weights, "REGISTRY", reg)
    return reg


def test_list_shows_entries_and_cache_state(cache, registry, capsys):
    cache.mkdir()
    (cache / "net-a.pkl").write_bytes(DATA)
    (cache / "net-b.pkl.part").write_bytes(b"x" * 10)
    assert run(["weights", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "KIND", "RES", "CACHED", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in out[1:4]}
    assert "1.3 KB" in rows["net-a"] and "partial 10 B" in rows["net-b"] and "tiny net-c" in rows["net-c"]
    assert rows["net-c"].split()[3] == "-"
    assert str(cache) in out[-1] and "STYLEPUPPET_CACHE" in out[-1]


def test_fetch_then_verify(cache, registry, capsys):
    assert run(["weights", "fetch", "net-a", "net-b"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"net-a: {cache / 'net-a.pkl'}", f"net-b: {cache / 'net-b.pkl'}"]
    assert "licence: Test Licence NC" in captured.err  # shown on first download
    assert (cache / "net-b.pkl").read_bytes() == DATA[::-1]

    assert run(["weights", "verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", "net-a"], ["ok", "net-b"]]

    (cache / "net-b.pkl").write_bytes(b"tampered")
    assert run(["weights", "verify"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1].startswith("bad       net-b")
    assert captured.err == ("error: 1 of 2 cached files failed verification (net-b); delete them and fetch them "
                            "again\n")


def test_verify_with_an_empty_cache(cache, registry, capsys):
    assert run(["weights", "verify"]) == 0
    assert capsys.readouterr().out == f"nothing cached in {cache}\n"


def test_fetch_errors_are_one_line(cache, registry, capsys):
    assert run(["weights", "fetch", "net-c"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot download net-c from ") and "HTTP 404" in err and err.count("\n") == 1
    assert run(["weights", "fetch", "nope"]) == 1
    assert capsys.readouterr().err == ("error: unknown weights name 'nope'; known: net-a, net-b, net-c (or give a "
                                       "file path or an http(s) URL)\n")


def test_import(cache, registry, tmp_path, capsys):
    src = tmp_path / "downloaded.pkl"
    src.write_bytes(DATA)  # net-a's published hash identifies it
    assert run(["weights", "import", str(src)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"imported {src} as net-a: {cache / 'net-a.pkl'}\n") and "licence: Test Licence" in out

    other = tmp_path / "other.bin"
    other.write_bytes(b"something else")
    assert run(["weights", "import", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot tell which registry entry other.bin is") and err.count("\n") == 1
    assert run(["weights", "import", str(other), "--name", "net-c"]) == 0
    assert (cache / "net-c.pkl").read_bytes() == b"something else"
    assert "as net-c" in capsys.readouterr().out


def test_cli_error_has_no_traceback(tmp_path):
    env = {**os.environ, "STYLEPUPPET_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "stylepuppet", "weights", "import", str(tmp_path / "absent.pkl")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    absent = tmp_path / "absent.pkl"
    assert proc.stderr == f"error: no such file: {absent}; give the path of a downloaded weights file\n"


def test_convert_writes_our_format(tmp_path, capsys):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16,
                  synthesis_kwargs={"channel_base": 64, "channel_max": 16})
    src, dst = tmp_path / "in.safetensors", tmp_path / "out" / "converted.safetensors"
    save_generator(G, src)
    assert run(["weights", "convert", str(src), str(dst)]) == 0
    assert capsys.readouterr().out == f"wrote {dst}\n"
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(load_generator_file(dst)(z, None), G.eval()(z, None))

    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"\x80\x04not a pickle")
    assert run(["weights", "convert", str(broken), str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and not (tmp_path / "x.safetensors").exists()
