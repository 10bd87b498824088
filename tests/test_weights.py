import hashlib
import json
import os
from pathlib import Path

import pytest
from weights_server import closed_port_url, serve

from stylepuppet import weights
from stylepuppet.errors import WeightsError
from stylepuppet.weights import WeightsEntry

DATA = bytes(range(256)) * 40 + b"tail"  # 10 244 bytes, several read chunks when CHUNK is small


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(name: str, url: str, *, digest: str | None = None, prefix: str | None = None, size: int | None = None,
          filename: str | None = None, kind: str = "stylegan2") -> WeightsEntry:
    return WeightsEntry(name=name, url=url, filename=filename or f"{name}.bin", sha256=digest, size=size,
                        licence="Test Licence, https://example.invalid/licence", kind=kind, resolution=16,
                        description="test file", sha256_prefix=prefix)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(path))
    monkeypatch.setattr(weights, "CHUNK", 1000)
    return path


@pytest.fixture
def server():
    with serve() as served:
        yield served


def use(monkeypatch, *entries: WeightsEntry) -> None:
    monkeypatch.setattr(weights, "REGISTRY", {e.name: e for e in entries})


# ---------------------------------------------------------------------------------------------- registry


def test_registry_entries_are_complete():
    reg = weights.REGISTRY
    assert weights.DEFAULT_GENERATOR == "stylegan2-ffhq-256" and reg["stylegan2-ffhq-256"].resolution == 256
    assert {"stylegan2-ffhq-512", "stylegan2-ffhq-1024", "stylegan2-ada-ffhq", "fan-2dfan4", "lpips-vgg16",
            "mediapipe-face-landmark"} <= set(reg)
    for name, e in reg.items():
        assert e.name == name and e.kind in weights.KINDS
        assert e.url.startswith("https://") and e.url.rstrip("/").endswith(e.filename.split("/")[-1])
        assert "https://" in e.licence
        assert e.sha256 is None or len(e.sha256) == 64
    for name in ("stylegan2-ffhq-256", "stylegan2-ffhq-1024", "stylegan2-ada-ffhq", "lpips-vgg16"):
        assert "NVIDIA Source Code License-NC" in reg[name].licence
    assert reg["stylegan2-ada-ffhq"].resolution == 1024 and reg["stylegan2-ada-ffhq"].filename == "ffhq.pkl"
    # the hex in FAN's file name is the published sha256 prefix (torch.hub convention)
    assert reg["fan-2dfan4"].sha256_prefix == "11f355bf06" and "11f355bf06" in reg["fan-2dfan4"].filename
    assert "Apache-2.0" in reg["mediapipe-face-landmark"].licence


def test_stylegan3_release_networks_are_listed():
    ngc = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
    for config in "tr":
        for data, res in (("ffhq", 1024), ("ffhqu", 1024), ("ffhqu", 256)):
            e = weights.REGISTRY[f"stylegan3-{config}-{data}-{res}"]
            assert e.url == f"{ngc}stylegan3-{config}-{data}-{res}x{res}.pkl" and e.kind == "stylegan3"
            assert e.resolution == res and f"StyleGAN3-{config.upper()} (config {config.upper()}" in e.description
            assert "NVIDIA Source Code License-NC" in e.licence and "NVlabs/stylegan3" in e.licence
            assert "FFHQ" in e.licence


def test_the_shared_mediapipe_model_is_the_registry_file(models_dir, cache):
    # MediaPipe's own build manifest pins this sha256 for models/face_landmark.tflite
    result = weights.import_file(models_dir / "face_landmark.tflite")
    assert result.entry.name == "mediapipe-face-landmark"
    assert weights.resolve("mediapipe-face-landmark", kind="mesh", allow_download=False) == result.path
    assert not weights.record_path(result.path).exists()  # a published hash needs no record


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "c"))
    assert weights.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("STYLEPUPPET_CACHE")
    assert weights.cache_dir().name == "stylepuppet"


# ---------------------------------------------------------------------------------------------- downloads


def test_download_checks_the_published_hash_and_is_then_served_from_the_cache(cache, server, monkeypatch):
    e = entry("net", server.add("net.pkl", DATA), digest=sha(DATA), size=len(DATA))
    use(monkeypatch, e)
    path = weights.resolve("net", kind="stylegan2")
    assert path == cache / "net.bin" and path.read_bytes() == DATA
    assert not weights.part_path(path).exists() and not weights.record_path(path).exists()
    assert weights.resolve("net") == path
    assert len(server.requests) == 1


def test_download_resumes_a_partial_file(cache, server, monkeypatch):
    e = entry("net", server.add("net.pkl", DATA), digest=sha(DATA))
    use(monkeypatch, e)
    cache.mkdir()
    weights.part_path(cache / "net.bin").write_bytes(DATA[:4000])
    assert weights.fetch("net").read_bytes() == DATA
    assert server.requests == [("/net.pkl", "bytes=4000-")]


def test_a_server_that_ignores_range_restarts_the_file(cache, server, monkeypatch):
    e = entry("net", server.add("net.pkl", DATA), digest=sha(DATA))
    use(monkeypatch, e)
    server.ignore_range = True
    cache.mkdir()
    weights.part_path(cache / "net.bin").write_bytes(b"x" * 3000)  # not even a prefix of the file
    assert weights.fetch("net").read_bytes() == DATA


def test_a_part_that_already_holds_the_whole_file_is_finished(cache, server, monkeypatch):
    e = entry("net", server.add("net.pkl", DATA), digest=sha(DATA))
    use(monkeypatch, e)
    cache.mkdir()
    weights.part_path(cache / "net.bin").write_bytes(DATA)
    assert weights.fetch("net").read_bytes() == DATA
    assert server.requests == [("/net.pkl", f"bytes={len(DATA)}-")]


def test_truncated_download_fails_clearly_and_resumes_later(cache, server, monkeypatch):
    e = entry("net", server.add("net.pkl", DATA))  # no published hash: only the length can tell
    use(monkeypatch, e)
    server.cut_after = 2500
    with pytest.raises(WeightsError) as err:
        weights.fetch("net")
    msg = str(err.value)
    assert "\n" not in msg and f"stopped at 2500 of {len(DATA)} bytes" in msg
    assert "stylepuppet weights fetch net" in msg
    final = cache / "net.bin"
    assert not final.exists() and not weights.record_path(final).exists()
    assert weights.part_path(final).stat().st_size == 2500
    server.cut_after = None
    assert weights.fetch("net").read_bytes() == DATA
    assert server.requests[-1] == ("/net.pkl", "bytes=2500-")


def test_a_file_changed_on_the_server_is_restarted_not_spliced(cache, server, monkeypatch):
    old, new = DATA, DATA[::-1]
    url = server.add("net.pkl", old)
    use(monkeypatch, entry("net", url))  # no published hash: splicing would go unnoticed
    server.cut_after = 3000
    with pytest.raises(WeightsError, match="stopped at 3000"):
        weights.fetch("net")
    server.cut_after = None
    server.add("net.pkl", new)
    path = weights.fetch("net")
    assert path.read_bytes() == new
    assert server.requests[-1] == ("/net.pkl", "bytes=3000-") and server.if_range[-1] is not None
    assert not (cache / "net.bin.part.json").exists()
    assert json.loads(weights.record_path(path).read_text())["sha256"] == sha(new)


def test_corrupted_download_caches_nothing(cache, server, monkeypatch):
    e = entry("net", server.add("net.pkl", DATA), digest=sha(b"the real file"))
    use(monkeypatch, e)
    with pytest.raises(WeightsError, match="download of net from .* is corrupt .*sha256 .* expected"):
        weights.resolve("net")
    assert not (cache / "net.bin").exists() and not weights.part_path(cache / "net.bin").exists()


def test_wrong_size_is_corrupt(cache, server, monkeypatch):
    use(monkeypatch, entry("net", server.add("net.pkl", DATA), size=len(DATA) + 1))
    with pytest.raises(WeightsError, match=f"size {len(DATA)} bytes, expected {len(DATA) + 1}"):
        weights.fetch("net")
    assert [p.name for p in cache.iterdir()] == [".net.bin.lock"]


def test_published_sha256_prefix_is_checked(cache, server, monkeypatch):
    url = server.add("2DFAN4.pth.tar", DATA)
    use(monkeypatch, entry("good", url, prefix=sha(DATA)[:10]), entry("bad", url, prefix="0123456789"))
    path = weights.fetch("good")
    assert json.loads(weights.record_path(path).read_text())["sha256"] == sha(DATA)
    with pytest.raises(WeightsError, match="does not start with the published 0123456789"):
        weights.fetch("bad")


def test_unpublished_hash_is_recorded_at_first_download_and_guards_later_loads(cache, server, monkeypatch):
    use(monkeypatch, entry("net", server.add("net.pkl", DATA)))
    path = weights.resolve("net")
    record = json.loads(weights.record_path(path).read_text())
    assert record["sha256"] == sha(DATA) and record["size"] == len(DATA) and record["how"] == "download"
    assert weights.resolve("net") == path
    tampered = bytearray(DATA)
    tampered[100] ^= 1
    path.write_bytes(bytes(tampered))  # same size, one bit changed
    with pytest.raises(WeightsError) as err:
        weights.resolve("net")
    assert f"{path} fails verification (sha256 " in str(err.value) and "weights fetch net" in str(err.value)
    [result] = weights.verify_cached()
    assert result.status == "bad" and not result.ok


def test_offline_says_where_to_put_the_file(cache, monkeypatch):
    url = closed_port_url("stylegan2-ffhq-256x256.pkl")
    use(monkeypatch, entry("net", url))
    with pytest.raises(WeightsError) as err:
        weights.resolve("net")
    dest = cache / "net.bin"
    assert str(err.value) == (f"cannot download net from {url} (Connection refused); put the file at {dest} or run "
                              "`stylepuppet weights import PATH`")
    assert not dest.exists()


def test_http_error_is_reported(cache, server, monkeypatch):
    use(monkeypatch, entry("net", server.url + "/missing.pkl"))
    with pytest.raises(WeightsError, match=r"cannot download net from .* \(HTTP 404 Not Found\); put the file at"):
        weights.fetch("net")


def test_no_download_when_not_allowed(cache, server, monkeypatch):
    use(monkeypatch, entry("net", server.add("net.pkl", DATA)))
    with pytest.raises(WeightsError, match=r"net is not in the cache; run `stylepuppet weights fetch net`, or put "
                                           r"the file at .*net\.bin"):
        weights.resolve("net", allow_download=False)
    assert server.requests == []


# ---------------------------------------------------------------------------------------------- resolve


def test_resolve_accepts_files_and_rejects_bad_sources(cache, tmp_path, monkeypatch):
    use(monkeypatch, entry("net", "https://example.invalid/net.pkl"),
        entry("fan", "https://example.invalid/fan.pth", kind="fan"))
    own = tmp_path / "mine.pkl"
    own.write_bytes(b"weights")
    assert weights.resolve(str(own)) == own
    assert weights.resolve(own) == own
    with pytest.raises(WeightsError, match=r"^no such weights file: .*nope\.pkl; check the path"):
        weights.resolve(str(tmp_path / "nope.pkl"))
    with pytest.raises(WeightsError, match="is not a file"):
        weights.resolve(str(tmp_path))
    with pytest.raises(WeightsError, match=r"^unknown weights name 'ffhq'; known: net, fan \(or give a file path"):
        weights.resolve("ffhq")
    with pytest.raises(WeightsError, match="fan is a fan file, not stylegan2 weights"):
        weights.resolve("fan", kind="stylegan2")


def test_urls_are_cached_under_a_name_derived_from_the_url(cache, server, monkeypatch):
    use(monkeypatch, entry("net", server.add("net.pkl", DATA)))
    url = server.add("other/model.pkl", b"other weights")
    path = weights.resolve(url)
    assert path.parent == cache / "url" and path.name.endswith("-model.pkl") and path.read_bytes() == b"other weights"
    assert json.loads(weights.record_path(path).read_text())["url"] == url
    assert weights.resolve(url) == path and len(server.requests) == 1
    # a registry entry's URL resolves to that entry's file
    assert weights.resolve(server.url + "/net.pkl") == cache / "net.bin"
    assert {r.name for r in weights.verify_cached()} == {"net", url}


# ---------------------------------------------------------------------------------------------- import


def test_import_identifies_by_hash_name_or_given_name(cache, tmp_path, monkeypatch):
    by_hash = entry("hashed", "https://example.invalid/a.pkl", digest=sha(b"AAA"))
    by_prefix = entry("prefixed", "https://example.invalid/b.pkl", prefix=sha(b"BBB")[:10])
    by_name = entry("named", "https://example.invalid/ffhq.pkl", filename="ffhq.pkl")
    use(monkeypatch, by_hash, by_prefix, by_name)
    for content, fname, expected in ((b"AAA", "x.bin", "hashed"), (b"BBB", "y.bin", "prefixed"),
                                     (b"CCC", "ffhq.pkl", "named")):
        src = tmp_path / fname
        src.write_bytes(content)
        result = weights.import_file(src)
        assert result.entry.name == expected and result.path.read_bytes() == content and src.exists()
    assert json.loads(weights.record_path(cache / "ffhq.pkl").read_text())["sha256"] == sha(b"CCC")
    assert {r.name: r.status for r in weights.verify_cached()} == {"hashed": "ok", "prefixed": "ok", "named": "ok"}

    stranger = tmp_path / "stranger.bin"
    stranger.write_bytes(b"DDD")
    with pytest.raises(WeightsError, match=r"cannot tell which registry entry stranger\.bin is .*give --name NAME"):
        weights.import_file(stranger)
    with pytest.raises(WeightsError, match=r"is not hashed \(sha256 .*, expected"):
        weights.import_file(stranger, name="hashed")
    result = weights.import_file(stranger, name="named")
    assert result.replaced and (cache / "ffhq.pkl").read_bytes() == b"DDD"
    assert weights.resolve("named", allow_download=False).read_bytes() == b"DDD"
    with pytest.raises(WeightsError, match="no such file"):
        weights.import_file(tmp_path / "absent.pkl")


def test_a_file_put_in_the_cache_by_hand_is_recorded_on_first_use(cache, monkeypatch):
    use(monkeypatch, entry("net", "https://example.invalid/net.pkl"))
    cache.mkdir()
    (cache / "net.bin").write_bytes(DATA)
    [result] = weights.verify_cached()
    assert result.status == "recorded" and result.sha256 == sha(DATA)
    assert weights.verify("net").status == "ok"
    os.utime(cache / "net.bin")
    assert weights.resolve("net", allow_download=False) == cache / "net.bin"
