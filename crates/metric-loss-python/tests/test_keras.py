"""metric_loss.keras against real TensorFlow (skipped where it is not installed), and
against TF Similarity's own TripletLoss where that is installed too."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

tf = pytest.importorskip("tensorflow")
import metric_loss  # noqa: E402
import metric_loss.keras as mlk  # noqa: E402


def batch(n=16, d=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return np.arange(n) % classes, x / np.linalg.norm(x, axis=1, keepdims=True)


def test_gradient_is_the_rust_gradient():
    y, x = batch()
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        value = mlk.TripletLoss()(tf.constant(y), xt)
    grad = tape.gradient(value, xt).numpy()
    ref = metric_loss.TripletLoss().compute(y, x)
    assert float(value) == pytest.approx(ref.loss, rel=1e-6)
    np.testing.assert_allclose(grad, ref.grad, rtol=1e-5, atol=1e-7)


def test_sample_weight_and_reduction_are_keras_s():
    y, x = batch()
    w = np.linspace(0.5, 2.0, 16).astype(np.float32)
    xt = tf.constant(x)
    for reduction in ("auto", "sum"):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = mlk.TripletLoss(soft_margin=True, reduction=reduction)(tf.constant(y[:, None]), xt, sample_weight=w)
        ref = metric_loss.TripletLoss(soft_margin=True, reduction=reduction).compute(y, x, w)
        assert float(value) == pytest.approx(ref.loss, rel=1e-5)
        np.testing.assert_allclose(tape.gradient(value, xt).numpy(), ref.grad, rtol=1e-4, atol=1e-6)


def test_config_round_trip_and_compile():
    loss = mlk.TripletLoss(distance="l2", margin=0.25)
    assert mlk.TripletLoss.from_config(loss.get_config()).get_config() == loss.get_config()
    with pytest.raises(TypeError):
        mlk.from_config({"class_name": "XBM", "config": {"loss": {"class_name": "TripletLoss"}, "memory_size": 8}})


def make_model(seed=0):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input(shape=(12,))
    h = tf.keras.layers.Dense(32, activation="relu")(inputs)
    h = tf.keras.layers.Dense(8)(h)
    outputs = tf.keras.layers.Lambda(lambda t: tf.math.l2_normalize(t, axis=1))(h)
    return tf.keras.Model(inputs, outputs)


def train(loss, weights, batches, sample_weights=None):
    model = make_model()
    model.set_weights(weights)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss=loss)
    out = []
    for i, (x, y) in enumerate(batches):
        sw = None if sample_weights is None else sample_weights[i]
        out.append(float(model.train_on_batch(x, y, sample_weight=sw)))
    return np.array(out)


@pytest.mark.parametrize(
    "theirs_kwargs, ours_kwargs, weighted",
    [
        # TF Similarity 0.17.1's default is the soft margin (margin=None).
        ({}, {"soft_margin": True}, False),
        ({}, {"soft_margin": True}, True),
        ({"margin": 1.0}, {}, True),
        ({"distance": "l2", "negative_mining_strategy": "hard", "margin": 0.5}, {"distance": "l2", "negative_mining_strategy": "hard", "margin": 0.5}, False),
    ],
    ids=["soft", "soft-weighted", "margin1-weighted", "l2-hard-margin0.5"],
)
def test_trains_like_tf_similarity_for_50_steps(theirs_kwargs, ours_kwargs, weighted):
    tfsim_losses = pytest.importorskip("tensorflow_similarity.losses")
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((32, 12)).astype(np.float32), np.repeat(np.arange(8), 4)) for _ in range(50)]
    sample_weights = [rng.uniform(0.5, 1.5, 32).astype(np.float32) for _ in range(50)] if weighted else None
    weights = make_model().get_weights()
    theirs = train(tfsim_losses.TripletLoss(**theirs_kwargs), weights, batches, sample_weights)
    ours = train(mlk.TripletLoss(**ours_kwargs), weights, batches, sample_weights)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
