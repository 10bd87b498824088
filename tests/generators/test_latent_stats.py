import numpy as np
import pytest
import torch

from stylepuppet.generators import latent_stats as ls
from stylepuppet.generators.checkpoints import save_generator
from stylepuppet.generators.loader import load_generator_file
from stylepuppet.generators.stylegan2 import Generator


def tiny(c_dim: int = 0, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16,
                  synthesis_kwargs={"channel_base": 64, "channel_max": 16}).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(8))  # a trained-looking buffer, distinct from the sample mean
    return G


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "latent-stats"


def reference(G: Generator, n: int, seed: int) -> tuple[np.ndarray, float]:
    """NVIDIA's projector, written out: one randn draw, first w of each sample, float32 numpy maths."""
    z = np.random.RandomState(seed).randn(n, G.z_dim)
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(z).float(), torch.zeros(n, G.c_dim))[:, :1, :].numpy().astype(np.float32)
    w_mean = np.mean(w, axis=0, keepdims=True)
    return w_mean[0, 0], float((np.sum((w - w_mean) ** 2) / n) ** 0.5)


def test_statistics_follow_nvidias_projector_formulas(cache):
    G = tiny()
    stats = ls.latent_stats(G, num_samples=300, seed=7, cache=False)
    w_mean, w_std = reference(G, 300, 7)
    assert torch.equal(stats.w_avg, G.mapping.w_avg)
    np.testing.assert_allclose(stats.w_mean.numpy(), w_mean, rtol=0, atol=1e-6)
    assert stats.w_std == pytest.approx(w_std, rel=1e-6)
    assert (stats.num_samples, stats.seed) == (300, 7)
    assert not cache.exists()


def test_batching_does_not_change_the_samples():
    G = tiny()
    a = ls.compute_latent_stats(G, 250, 3, batch_size=250)
    b = ls.compute_latent_stats(G, 250, 3, batch_size=37)  # odd sizes: numpy's cached Gaussian carries over
    torch.testing.assert_close(a.w_mean, b.w_mean, rtol=0, atol=1e-7)
    assert a.w_std == pytest.approx(b.w_std, rel=1e-12)


def test_scalar_std_formula():
    ws = torch.tensor([[0.0, 2.0], [2.0, 0.0], [1.0, 4.0]])
    mean, std = ls.mean_and_scalar_std(ws)
    torch.testing.assert_close(mean, torch.tensor([1.0, 2.0]))
    assert std == pytest.approx(np.sqrt((1 + 1 + 0 + 0 + 4 + 4) / 3))


def test_cached_statistics_are_reused(cache, monkeypatch):
    G = tiny()
    first = ls.latent_stats(G, num_samples=200, seed=1)
    [stored] = list(cache.iterdir())

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(ls, "compute_latent_stats", fail)
    again = ls.latent_stats(G, num_samples=200, seed=1)
    assert torch.equal(again.w_mean, first.w_mean) and again.w_std == first.w_std
    assert torch.equal(again.w_avg, G.mapping.w_avg)
    monkeypatch.undo()
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(cache.parent))

    # other sample counts, seeds and networks are other entries
    ls.latent_stats(G, num_samples=100, seed=1)
    ls.latent_stats(G, num_samples=200, seed=2)
    ls.latent_stats(tiny(seed=1), num_samples=200, seed=1)
    assert len(list(cache.iterdir())) == 4

    stored.write_text("{not json")  # a damaged entry is recomputed, not trusted
    assert torch.equal(ls.latent_stats(G, num_samples=200, seed=1).w_mean, first.w_mean)


def test_the_key_follows_the_network_not_the_file(cache, tmp_path):
    G = tiny()
    path = tmp_path / "tiny.safetensors"
    save_generator(G, path)
    loaded = load_generator_file(path)
    assert ls.network_key(loaded, 200, 1) == ls.network_key(G, 200, 1)
    with torch.no_grad():
        loaded.mapping.fc0.weight[0, 0] += 1
    assert ls.network_key(loaded, 200, 1) != ls.network_key(G, 200, 1)
    # same tensors, other mapping settings: other W vectors, so another key
    slow = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, mapping_kwargs={"lr_multiplier": 0.1},
                     synthesis_kwargs={"channel_base": 64, "channel_max": 16})
    slow.load_state_dict(G.state_dict())
    assert ls.network_key(slow, 200, 1) != ls.network_key(G, 200, 1)


def test_conditional_networks_use_a_zero_label(cache):
    G = tiny(c_dim=3)
    stats = ls.latent_stats(G, num_samples=64, seed=0, cache=False)
    w_mean, w_std = reference(G, 64, 0)
    np.testing.assert_allclose(stats.w_mean.numpy(), w_mean, atol=1e-6)
    assert stats.w_std == pytest.approx(w_std, rel=1e-6)
