"""The tf.data training pipeline gives astroNN's batches: a fresh permutation per epoch, validation in order."""
import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.nn import fused
from astronn_gaiacal.nn.batches import shared_tensor, training_batches


def _data(n, length=5):
    rows = np.arange(n, dtype=np.float32)
    inputs = {"input": np.repeat(rows[:, None], length, axis=1), "labels_err": 0.5 * rows[:, None],
              "input_err": np.zeros((n, 1))}
    labels = {"output": 2 * rows[:, None], "variance_output": 3 * rows[:, None]}
    return inputs, labels


def _epoch(dataset):
    rows = []
    for batch in dataset:
        x, y = batch[0], batch[1]
        idx = x["input"].numpy()[:, 0, 0].astype(int)
        assert x["input"].shape[1:] == (5, 1) and set(x) == {"input", "labels_err"}
        np.testing.assert_array_equal(x["input"].numpy()[..., 0], np.repeat(idx[:, None], 5, axis=1))
        np.testing.assert_array_equal(x["labels_err"].numpy(), 0.5 * idx)
        np.testing.assert_array_equal(y["output"].numpy()[:, 0], 2 * idx)
        np.testing.assert_array_equal(y["variance_output"].numpy()[:, 0], 3 * idx)
        if len(batch) == 3:
            np.testing.assert_array_equal(batch[2].numpy(), 10 * idx)
        rows.append(idx)
    return rows


def test_training_batches_are_a_new_permutation_each_epoch():
    inputs, labels = _data(103)
    ds, shared = training_batches(inputs, labels, None, 10, 103 // 10, shuffle=True, seed=4)
    assert shared.shape == (103, 5) and shared.dtype == np.float32
    epochs = [_epoch(ds) for _ in range(3)]
    for batches in epochs:
        assert [len(b) for b in batches] == [10] * 10
        flat = np.concatenate(batches)
        assert np.unique(flat).size == 100 and flat.min() >= 0 and flat.max() < 103
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))
    # the same seed, the same orders; the default seed comes from NumPy's generator
    again, _ = training_batches(inputs, labels, None, 10, 10, shuffle=True, seed=4)
    np.testing.assert_array_equal(np.concatenate(_epoch(again)), np.concatenate(epochs[0]))
    orders = []
    for _ in range(2):
        np.random.seed(11)
        ds, _ = training_batches(inputs, labels, None, 10, 10, shuffle=True)
        orders.append(np.concatenate(_epoch(ds)))
    np.testing.assert_array_equal(*orders)


def test_validation_batches_in_order_with_weights():
    inputs, labels = _data(25)
    weight = 10 * np.arange(25.0)
    ds, _ = training_batches(inputs, labels, weight, 8, 3, shuffle=False)
    batches = _epoch(ds)
    np.testing.assert_array_equal(np.concatenate(batches), np.arange(24))
    assert _epoch(ds)[0].tolist() == list(range(8))


def test_three_dimensional_input_and_bad_sizes():
    inputs, labels = _data(12)
    inputs["input"] = inputs["input"][..., None]
    ds, _ = training_batches(inputs, labels, None, 4, 3, shuffle=False)
    assert np.concatenate(_epoch(ds)).tolist() == list(range(12))
    with pytest.raises(ValueError, match="4 batches of 4 rows need at least 16 rows, got 12"):
        training_batches(inputs, labels, None, 4, 4, shuffle=True)


def test_shared_tensor_shares_aligned_memory_and_copies_otherwise():
    a = fused.aligned_empty((6, 7))
    a[...] = 1.0
    arr, t = shared_tensor(a)
    assert arr is a
    a[2, 3] = 5.0  # the tensor reads the same memory
    assert float(t[2, 3]) == 5.0
    raw = np.ones(6 * 7 + 1, np.float32)[1:].reshape(6, 7)  # 4 bytes past an allocation: never 64-aligned
    assert raw.ctypes.data % fused.TENSOR_ALIGNMENT != 0
    arr, t = shared_tensor(raw)
    assert arr is not raw and arr.ctypes.data % fused.TENSOR_ALIGNMENT == 0
    np.testing.assert_array_equal(t.numpy(), raw)
    arr, t = shared_tensor(np.arange(6.0).reshape(2, 3))  # float64 -> float32 copy
    assert arr.dtype == np.float32 and t.dtype.name == "float32"
    np.testing.assert_array_equal(t.numpy(), np.arange(6.0).reshape(2, 3))
    arr, t = shared_tensor(np.zeros((0, 4), np.float32))
    assert tuple(t.shape) == (0, 4)
