"""The fused Dense-chain kernel (astronn_gaiacal.nn.fused_dense): masks independent per row and pass.

Checked against an independent NumPy computation with the same counter-based masks, the masks
statistically (keep rate, independence between rows, units and passes), the MC moments against the
TensorFlow path's per-row masks, and a star's result against the batch it is computed in.
"""
import numpy as np
import pytest
from astronn_gaiacal._compat import keras, tf  # noqa: I001  (before astroNN)
from astroNN.nn.layers import MCDropout
from astronn_gaiacal.nn import fused_dense
from astronn_gaiacal.nn.fast import effective_rate, keep_threshold
from astronn_gaiacal.nn.fused_dense import DenseChainSpec, chain_spec, mc_dense_chain
from astronn_gaiacal.nn.inference import dense_chain, mc_predict
from astronn_gaiacal.nn.layers import FastMCDropout

pytest.importorskip("numba")

RATE = 0.3
GAMMA, GAMMA2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03)


def _mix(z):
    z = np.asarray(z, np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _reference_keep(key, rows, mc, spec):
    """``{layer: bool (rows, mc, units)}``: the masks as the module docstring defines them, in NumPy."""
    with np.errstate(over="ignore"):
        row_key = _mix(np.uint64(key) + np.asarray(rows, np.uint64) * GAMMA2)  # (R,)
        counters = np.arange(mc, dtype=np.uint64)[:, None] * np.uint64(spec.words) + np.arange(
            spec.words, dtype=np.uint64)[None]  # (mc, W)
        words = _mix(row_key[:, None, None] + counters[None] * GAMMA)  # (R, mc, W)
    draws = np.stack([(words >> np.uint64(16 * q)) & np.uint64(0xFFFF) for q in range(4)], -1)
    draws = draws.reshape(len(row_key), mc, 4 * spec.words)
    keep, offset = {}, 0
    for layer, dropped in enumerate(spec.dropout):
        if dropped:
            keep[layer] = draws[:, :, offset:offset + spec.widths[layer]] >= keep_threshold(RATE)
            offset += 4 * -(-spec.widths[layer] // 4)
    return keep


def _reference_moments(x, weights, spec, key, mc, first_row=0):
    acts = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0), "linear": lambda v: v}
    keep = _reference_keep(key, first_row + np.arange(len(x)), mc, spec)
    h = acts[spec.activations[0]](x.astype(float) @ weights[0][0] + weights[0][1])[:, None, :]
    h = np.broadcast_to(h, (len(x), mc, h.shape[-1]))
    for layer in range(1, len(weights)):
        if spec.dropout[layer]:
            h = np.where(keep[layer], h / (1 - RATE), 0.0)
        h = acts[spec.activations[layer]](h @ weights[layer][0] + weights[layer][1])
    return h.mean(axis=1), h.var(axis=1)


def _weights(spec, rng, scale=0.7):
    return [(rng.normal(size=(a, b)).astype(np.float32) * scale, rng.normal(size=b).astype(np.float32) * 0.2)
            for a, b in zip(spec.widths[:-1], spec.widths[1:])]


PAPER = DenseChainSpec((3, 32, 16, 1), ("tanh", "tanh", "linear"), (False, True, True))


@pytest.mark.parametrize("spec", [
    PAPER,
    DenseChainSpec((2, 7, 5, 3), ("relu", "tanh", "linear"), (False, True, True)),
    DenseChainSpec((4, 9, 6, 2), ("tanh", "linear", "tanh"), (False, True, False)),
])
@pytest.mark.parametrize("mc", [1, 37, 100, 130])
def test_equals_an_independent_numpy_computation(rng, spec, mc):
    weights = _weights(spec, rng)
    x = rng.normal(size=(23, spec.widths[0])).astype(np.float32)
    rates = [RATE if d else 0.0 for d in spec.dropout]
    mean, var = mc_dense_chain(x, weights, spec, rates, key=987654321, mc_num=mc, first_row=5)
    ref_mean, ref_var = _reference_moments(x, weights, spec, 987654321, mc, first_row=5)
    # float32 arithmetic and Eigen's tanh (a few ulps) against float64
    np.testing.assert_allclose(mean, ref_mean, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(var, ref_var, rtol=2e-4, atol=2e-6)


def test_tanh_is_accurate_to_float32():
    spec = DenseChainSpec((1, 1), ("tanh",), (False,))
    x = np.linspace(-12, 12, 240001, dtype=np.float32)[:, None]
    mean, _ = mc_dense_chain(x, [(np.ones((1, 1), np.float32), None)], spec, [0.0], key=0, mc_num=1)
    err = np.abs(mean[:, 0] - np.tanh(x[:, 0].astype(float)))
    assert err.max() < 5e-7  # a few float32 ulps of values <= 1
    assert np.all(np.abs(mean) <= 1)


def _mask_probe(units=32):
    """x -> Dense(units, linear, ones) -> dropout -> Dense(identity): output unit j = keep_j / (1 - rate)."""
    spec = DenseChainSpec((1, units, units), ("linear", "linear"), (False, True))
    weights = [(np.ones((1, units), np.float32), None), (np.eye(units, dtype=np.float32), None)]
    return spec, weights


def test_masks_keep_rate_and_independence_between_rows_units_and_passes():
    spec, weights = _mask_probe()
    rows, mc = 4000, 100
    x = np.ones((rows, 1), np.float32)  # every row the same star: only the masks differ
    mean, var = mc_dense_chain(x, weights, spec, [0.0, RATE], key=2024, mc_num=mc)
    scale = 1 / (1 - RATE)
    kept = mean * mc / scale  # kept passes per (row, unit), Binomial(mc, q)
    np.testing.assert_allclose(kept, np.round(kept), atol=1e-3)
    q = 1 - effective_rate(RATE)
    n = kept.size * mc
    # keep rate within 4 binomial standard errors
    assert abs(kept.sum() / n - q) < 4 * np.sqrt(q * (1 - q) / n)
    # passes independent: the spread of the kept count over rows is the binomial one (correlated passes
    # inflate it); the variance estimate of N draws has relative error sqrt(2 / N)
    assert abs(kept.var() / (mc * q * (1 - q)) - 1) < 4 * np.sqrt(2 / kept.size)
    # within a row the per-pass variance is the Bernoulli one of that row's own keep fraction
    np.testing.assert_allclose(var / scale**2, (kept / mc) * (1 - kept / mc), atol=1e-6)
    # rows independent of their neighbours (shared masks would make them equal) and units of each other
    z = (kept - mc * q) / np.sqrt(mc * q * (1 - q))
    for lag in (1, 2, 64):
        r = np.mean(z[:-lag] * z[lag:])
        assert abs(r) < 4 / np.sqrt(z[lag:].size), lag
    r_units = np.mean(z[:, :-1] * z[:, 1:])
    assert abs(r_units) < 4 / np.sqrt(z[:, 1:].size)


def test_masks_of_passes_uncorrelated():
    spec, weights = _mask_probe(4)
    # mc = 2: the kernel's two masks of every (row, unit) are those of the reference generator (their sum from
    # the mean, their difference from the variance); then the correlation of pass 0 and pass 1 over many rows
    x = np.ones((20000, 1), np.float32)
    mean, var = mc_dense_chain(x, weights, spec, [0.0, RATE], key=7, mc_num=2)
    keep = _reference_keep(7, np.arange(20000), 2, spec)[1]  # (rows, 2, units)
    np.testing.assert_allclose(mean * (1 - RATE), keep.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(var * (1 - RATE) ** 2, (np.diff(keep, axis=1)[:, 0] / 2.0) ** 2, atol=1e-6)
    k = keep.astype(float) - keep.mean()
    r = np.mean(k[:, 0] * k[:, 1]) / k.var()
    assert abs(r) < 4 / np.sqrt(k[:, 0].size)


def test_a_star_does_not_depend_on_its_batch_or_threads(rng):
    weights = _weights(PAPER, rng)
    x = rng.normal(size=(1001, 3)).astype(np.float32)
    rates = [0.0, RATE, RATE]
    whole = mc_dense_chain(x, weights, PAPER, rates, key=11, mc_num=50, threads=1)
    two = mc_dense_chain(x, weights, PAPER, rates, key=11, mc_num=50, threads=2)
    part = mc_dense_chain(x[300:420], weights, PAPER, rates, key=11, mc_num=50, first_row=300)
    np.testing.assert_array_equal(whole[0], two[0])
    np.testing.assert_array_equal(whole[1][300:420], part[1])
    np.testing.assert_array_equal(whole[0][300:420], part[0])
    # its neighbours do not matter either: the same star in another batch of other stars
    other = x.copy()
    other[:300] = rng.normal(size=(300, 3))
    np.testing.assert_array_equal(mc_dense_chain(other, weights, PAPER, rates, key=11, mc_num=50)[0][300:], whole[0][300:])


def _offset_model(seed=0, disable=False, out_activation="linear"):
    """The paper's offset network (3 -> 32 -> 16 -> 1, tanh), with astroNN's and the plugin's dropout layers."""
    keras.utils.set_random_seed(seed)
    inp = x = keras.Input((3,))
    for units, dropout in ((32, MCDropout), (16, FastMCDropout)):
        x = dropout(RATE, disable=disable)(keras.layers.Dense(units, activation="tanh")(x))
    return keras.Model(inp, keras.layers.Dense(1, activation=out_activation)(x))


def test_mc_predict_runs_the_kernel_and_ignores_batch_size(rng, monkeypatch):
    model = _offset_model()
    assert chain_spec(dense_chain(model)) == PAPER
    calls = []
    real = fused_dense.mc_dense_chain
    monkeypatch.setattr(fused_dense, "mc_dense_chain", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = rng.normal(size=(257, 3)).astype(np.float32)
    tf.random.set_seed(3)
    a = mc_predict(model, x, mc_num=40, progress=False)
    assert calls
    for batch_size in (1, 7, 256, 1000):
        tf.random.set_seed(3)
        b = mc_predict(model, x, mc_num=40, batch_size=batch_size, progress=False)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    tf.random.set_seed(4)
    assert not np.array_equal(mc_predict(model, x, mc_num=40, progress=False)[0], a[0])


def test_agrees_with_the_tensorflow_path_within_mc_errors(rng):
    model = _offset_model(1)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    mc = 4000
    tf.random.set_seed(1)
    m_k, v_k = mc_predict(model, x, mc_num=mc, progress=False)
    m_t, v_t = mc_predict(model, x, mc_num=mc, progress=False, fused_kernels=False)
    # two independent MC estimates of the same mean: difference ~ N(0, 2 var / mc)
    pull = (m_k - m_t)[:, 0] / np.sqrt((v_k + v_t)[:, 0] / mc)
    assert np.all(np.abs(pull) < 4.5) and abs(pull.mean()) < 4 / np.sqrt(len(pull))
    # variance estimates: relative error about sqrt(2 / mc) each (more for skewed outputs)
    np.testing.assert_allclose(v_k, v_t, rtol=8 * np.sqrt(2 / mc))
    # dropout off: the deterministic network, as Keras computes it
    det = _offset_model(1, disable=True)
    mean, var = mc_predict(det, x, mc_num=3, progress=False)
    np.testing.assert_allclose(mean, det(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, 0, atol=1e-12)


def test_other_activations_fall_back_to_tensorflow(rng):
    model = _offset_model(2, out_activation="sigmoid")
    assert dense_chain(model) is not None and chain_spec(dense_chain(model)) is None
    mean, var = mc_predict(model, rng.normal(size=(5, 3)), mc_num=20, progress=False)
    assert mean.shape == (5, 1) and np.all((mean > 0) & (mean < 1)) and np.all(var > 0)


def test_bad_arguments(rng):
    weights = _weights(PAPER, rng)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        mc_dense_chain(np.zeros((2, 4)), weights, PAPER, [0, RATE, RATE], key=0, mc_num=2)
    with pytest.raises(ValueError, match="mc_num"):
        mc_dense_chain(np.zeros((2, 3)), weights, PAPER, [0, RATE, RATE], key=0, mc_num=0)
    with pytest.raises(ValueError, match="no dropout before it"):
        DenseChainSpec((3, 4), ("tanh",), (True,)).check()
    with pytest.raises(ValueError, match="not computed by the kernel"):
        DenseChainSpec((3, 4), ("elu",), (False,)).check()
    mean, var = mc_dense_chain(np.zeros((0, 3)), weights, PAPER, [0, RATE, RATE], key=0, mc_num=2)
    assert mean.shape == var.shape == (0, 1)
