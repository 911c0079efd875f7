"""metric_loss.torch against real PyTorch (skipped where torch is not installed):
gradcheck in float64, float16 / bfloat16 inputs, key sets, and the torch.distributed
recipe on 2 gloo processes."""

import os
import socket
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import metric_loss  # noqa: E402
import metric_loss.torch as mlt  # noqa: E402


def batch(n=12, d=5, classes=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    return x.to(dtype), torch.arange(n) % classes


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(distance="euclidean", soft_margin=True),
        dict(distance="cosine", negative_mining_strategy="hard", margin=0.5),
        dict(distance="squared_euclidean", positive_mining_strategy="easy", margin=None),
    ],
)
def test_gradcheck_float64(kwargs):
    x, y = batch()
    x.requires_grad_(True)
    loss = mlt.TripletLoss(**kwargs)
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x,), eps=1e-6, atol=1e-6)


def test_gradcheck_float64_with_keys():
    x, y = batch(n=6, seed=1)
    k, ky = batch(n=9, seed=2)
    x.requires_grad_(True)
    k.requires_grad_(True)
    loss = mlt.TripletLoss(distance="euclidean", soft_margin=True)
    f = lambda q, keys: loss(q, y, keys=keys, key_labels=ky, remove_diagonal=False)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, k), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["PNLoss", "MultiSimilarityLoss", "CircleLoss", "SoftNearestNeighborLoss"])
def test_other_losses_match_numpy(name):
    x, y = batch(dtype=torch.float32)
    x.requires_grad_(True)
    module = getattr(mlt, name)()
    value = module(x, y)
    value.backward()
    ref = getattr(metric_loss, name)().compute(y.numpy(), x.detach().numpy())
    assert value.item() == pytest.approx(ref.loss, rel=1e-6)
    np.testing.assert_array_equal(x.grad.numpy(), ref.grad)
    assert module.per_example_loss.shape == (12,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_half_precision_is_computed_in_float32(dtype):
    x32, y = batch(dtype=torch.float32)
    x = x32.to(dtype).requires_grad_(True)
    loss = mlt.TripletLoss()
    value = loss(x, y)
    value.backward()
    assert value.dtype == dtype and x.grad.dtype == dtype and x.grad.device == x.device
    ref = metric_loss.TripletLoss().compute(y.numpy(), x.detach().float().numpy())
    assert value.float().item() == pytest.approx(ref.loss, rel=1e-2)
    np.testing.assert_allclose(x.grad.float().numpy(), ref.grad, atol=1e-2)


def test_sample_weight_and_scale_of_the_output_gradient():
    x, y = batch()
    x.requires_grad_(True)
    w = torch.linspace(0.5, 2.0, 12, dtype=torch.float64)
    loss = mlt.TripletLoss(soft_margin=True)
    (3.0 * loss(x, y, sample_weight=w)).backward()
    ref = metric_loss.TripletLoss(soft_margin=True).compute(y.numpy(), x.detach().numpy(), w.numpy())
    np.testing.assert_allclose(x.grad.numpy(), 3.0 * ref.grad, rtol=1e-12)


def test_bad_input_is_an_exception():
    x, y = batch()
    loss = mlt.TripletLoss()
    with pytest.raises(TypeError, match="integer dtype"):
        loss(x, y.double())
    with pytest.raises(TypeError, match="floating-point"):
        loss(y, y)
    with pytest.raises(ValueError, match="one entry per example"):
        loss(x, y[:3])
    with pytest.raises(ValueError, match="non-finite"):
        loss(x * float("nan"), y)


def test_xbm_module_remembers_keys_and_backpropagates():
    xbm = mlt.XBM(metric_loss.TripletLoss(), memory_size=32)
    for seed in range(3):
        x, y = batch(n=8, classes=4, seed=seed, dtype=torch.float32)
        x.requires_grad_(True)
        xbm(x, y).backward()
        assert x.grad.shape == (8, 5) and torch.isfinite(x.grad).all()
    xbm.loss.reset_state()


def test_config_round_trip_and_state_dict():
    loss = mlt.TripletLoss(distance="l2", margin=0.25)
    again = mlt.TripletLoss.from_config(loss.get_config())
    assert again.get_config() == loss.get_config()
    assert mlt.from_config(metric_loss.serialize(loss.loss)).get_config() == loss.get_config()
    assert loss.state_dict() == {}


def map_at_r(embeddings, labels):
    """Leave-one-out mean average precision at R under cosine similarity."""
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    scores = []
    for i in range(len(labels)):
        r = int(np.sum(labels == labels[i])) - 1
        hits = labels[np.argsort(-sim[i], kind="stable")[:r]] == labels[i]
        scores.append(np.sum(np.cumsum(hits) / np.arange(1, r + 1) * hits) / r)
    return float(np.mean(scores))


def test_digits_model_reaches_the_rust_demo_s_map_at_r():
    # The Rust demo's recipe (examples/train_digits.rs): 64 -> 64 ReLU -> 16 MLP,
    # L2-normalised, Glorot-uniform weights, Adam lr 1e-3, batches of 10 classes x 8,
    # 1500 steps, default TripletLoss; leave-one-out cosine mAP@R on a 30% test split.
    import gzip
    from conformance import ROOT

    with gzip.open(ROOT / "examples/data/uci-digits/digits.csv.gz", "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float32)
    pixels, labels = data[:, :64] / 16.0, data[:, 64].astype(np.int64)
    rng = np.random.default_rng(1)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = int(round(0.7 * len(idx)))
        train.append(idx[:cut])
        test.extend(idx[cut:])
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    for layer in (model[0], model[2]):
        torch.nn.init.xavier_uniform_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = mlt.TripletLoss()
    x_all = torch.from_numpy(pixels)
    for _ in range(1500):
        idx = np.concatenate([rng.choice(t, 8, replace=False) for t in train])
        opt.zero_grad()
        e = torch.nn.functional.normalize(model(x_all[idx]), dim=1)
        loss_fn(e, torch.from_numpy(labels[idx])).backward()
        opt.step()
    with torch.no_grad():
        emb = model(x_all[test]).numpy()
    score = map_at_r(emb, labels[test])
    print(f"digits test mAP@R after 1500 steps: {score:.3f} (Rust demo: 0.921-0.971)")
    assert score >= 0.92, score


# --- torch.distributed ------------------------------------------------------------------------

WORLD = 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, port, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        x, y = batch(n=16, d=6, classes=4, seed=7)
        n = x.shape[0] // WORLD
        local = x[rank * n : (rank + 1) * n].clone().requires_grad_(True)
        local_y = y[rank * n : (rank + 1) * n]
        keys, key_labels = mlt.gather_keys(local, local_y)
        loss = mlt.TripletLoss()(local, local_y, keys=keys, key_labels=key_labels)
        loss.backward()
        torch.save({"grad": local.grad, "loss": loss.detach()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_distributed_gradient_is_world_size_times_the_single_process_gradient():
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_rank_main, args=(_free_port(), out_dir), nprocs=WORLD, join=True)
        parts = [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(WORLD)]

    x, y = batch(n=16, d=6, classes=4, seed=7)
    x.requires_grad_(True)
    whole = mlt.TripletLoss()(x, y)
    whole.backward()
    grad = torch.cat([p["grad"] for p in parts])
    # Each rank's loss is the mean over its own 8 queries: the summed gradient is
    # WORLD x the single-process gradient of the mean over all 16.
    torch.testing.assert_close(grad, WORLD * x.grad, rtol=1e-10, atol=1e-12)
    mean_of_ranks = sum(p["loss"] for p in parts) / WORLD
    torch.testing.assert_close(mean_of_ranks, whole.detach(), rtol=1e-12, atol=1e-12)
