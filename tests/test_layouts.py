"""Dense and sparse layouts, and training straight from arrays."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import surprise_torch.arrays as arrays_module
from surprise_torch import train_als, train_bayes_mf, train_nmf, train_on_arrays, train_svd
from surprise_torch.trainers import train_svd_stacked
from surprise_torch.trainers._observed import observed_ratings

from .conftest import ALGORITHMS, FAST

TRAINERS = [("svd", train_svd, {}), ("svdpp", train_svd, {"implicit": True}), ("als", train_als, {}),
            ("als-cholesky", train_als, {"solver": "cholesky"}),
            ("nmf", train_nmf, {})]


def _csr(dense):
    with warnings.catch_warnings():  # torch's once-per-process notice that CSR is "beta"
        warnings.simplefilter("ignore", UserWarning)
        return dense.to_sparse_csr()


def random_arrays(n_users=25, n_items=15, n=150, seed=0):
    rng = np.random.default_rng(seed)
    keys = rng.choice(n_users * n_items, n, replace=False)
    return keys // n_items, keys % n_items, rng.integers(1, 6, n).astype(float), n_users, n_items


@pytest.mark.parametrize("name,trainer,extra", TRAINERS, ids=[t[0] for t in TRAINERS])
def test_dense_coo_and_csr_inputs_give_the_same_model(name, trainer, extra):
    users, items, ratings, n_users, n_items = random_arrays()
    dense = torch.zeros(n_users, n_items, dtype=torch.float64)
    dense[users, items] = torch.from_numpy(ratings)
    mask = (dense != 0).double()
    coo = dense.to_sparse()
    models = [trainer(r, m, n_factors=3, n_epochs=5, generator=torch.Generator().manual_seed(0), **extra)
              for r, m in ((dense, mask), (coo, None), (_csr(dense), None))]
    for other in models[1:]:
        torch.testing.assert_close(other.pu, models[0].pu)
        torch.testing.assert_close(other.qi, models[0].qi)
        assert other.history["loss"] == pytest.approx(models[0].history["loss"])


def test_csr_columns_out_of_order_within_rows_give_the_same_model(monkeypatch):
    import surprise_torch.trainers._observed as observed

    users, items, ratings, n_users, n_items = random_arrays()
    dense = torch.zeros(n_users, n_items, dtype=torch.float64)
    dense[users, items] = torch.from_numpy(ratings)
    ordered = _csr(dense)
    crow, cols, values = ordered.crow_indices(), ordered.col_indices(), ordered.values()
    # Each row's entries reversed: still a valid CSR tensor, its columns descending.
    order = torch.cat([torch.arange(int(b) - 1, int(a) - 1, -1) for a, b in zip(crow[:-1], crow[1:])])
    shuffled = observed.csr_tensor(crow, cols[order], values[order], dense.shape)
    # Chunks of 4: a step down straddling a chunk boundary must be seen too.
    monkeypatch.setattr(observed, "_ASCENDING_CHUNK", 4)
    assert observed._ascending_within_rows(crow, cols) and not observed._ascending_within_rows(crow, cols[order])
    fits = [train_svd(r, n_factors=3, n_epochs=5, generator=torch.Generator().manual_seed(0))
            for r in (ordered, shuffled)]
    torch.testing.assert_close(fits[1].pu, fits[0].pu, rtol=0, atol=0)
    repeated = observed.csr_tensor(torch.tensor([0, 2, 2]), torch.tensor([1, 1]), torch.tensor([3.0, 4.0]), (2, 2))
    with pytest.raises(ValueError, match="repeat"):
        observed_ratings(repeated)


def test_csr_tensors_of_checked_arrays_are_not_checked_again(monkeypatch):
    import surprise_torch.trainers._observed as observed

    users, items, ratings, n_users, n_items = random_arrays()
    checked = arrays_module.as_rating_arrays(users, items, ratings, n_users, n_items)
    vouched, _ = arrays_module.ratings_tensor(checked, "sparse", torch.device("cpu"), torch.float64)
    calls = []
    monkeypatch.setattr(observed, "_ascending_within_rows", lambda crow, cols: calls.append(1) or True)
    obs, values = observed_ratings(vouched)
    assert calls == [] and torch.equal(values, vouched.values())
    # The same indices in a tensor nobody vouched for are checked.
    unvouched = observed.csr_tensor(vouched.crow_indices(), vouched.col_indices(), vouched.values(), vouched.shape)
    observed_ratings(unvouched)
    assert calls == [1]


def _bad_inputs():
    """(ratings, mask, message) that every trainer must refuse with that message (None: must accept)."""
    ratings = torch.tensor([[5.0, 3.0, 0.0], [4.0, 0.0, 1.0]])
    mask = (ratings > 0).double()
    nan = ratings.clone()
    nan[0, 1] = float("nan")
    outside = ratings.clone()
    outside[0, 2] = float("nan")  # unobserved: ignored
    cases = {"1-D": (ratings[0], mask[0], "2-D"), "3-D": (ratings[None], mask[None], "2-D"),
             "integers": (ratings.long(), mask, "floating point"), "mask shape": (ratings, mask[:1], "mask must"),
             "NaN": (nan, mask, "1 observed rating"), "no mask": (ratings, None, "need a mask"),
             "empty": (ratings, torch.zeros_like(mask), "no observed ratings"),
             "sparse NaN": (_csr(nan * mask), None, "1 observed rating"), "NaN unobserved": (outside, mask, None)}
    return [pytest.param(*case, id=what) for what, case in cases.items()]


@pytest.mark.parametrize("trainer", [train_svd, train_als, train_nmf, train_bayes_mf], ids=lambda t: t.__name__)
@pytest.mark.parametrize("ratings,mask,message", _bad_inputs())
def test_trainers_refuse_what_is_not_a_rating_matrix_saying_what(trainer, ratings, mask, message):
    # Each used to fail deep inside (TypeError, IndexError, a torch dtype error,
    # ZeroDivisionError), or to train on NaN and call it a divergence.
    extra = {"burn_in": 1} if trainer is train_bayes_mf else {}
    call = lambda: trainer(ratings, mask, n_factors=2, n_epochs=3, generator=torch.Generator().manual_seed(0), **extra)
    if message is None:
        assert torch.isfinite(call().pu).all()
    else:
        with pytest.raises(ValueError, match=message):
            call()


def test_an_empty_share_of_a_distributed_fit_is_not_refused():
    empty = _csr(torch.zeros(2, 3))
    obs, values = observed_ratings(empty, allow_empty=True)
    assert values.numel() == 0 and obs.shape == (2, 3)


@pytest.mark.parametrize("name,trainer,extra", TRAINERS[:4], ids=[t[0] for t in TRAINERS[:4]])
def test_trainers_overwrite_sparse_ratings_only_when_allowed(name, trainer, extra):
    users, items, ratings, n_users, n_items = random_arrays()
    dense = torch.zeros(n_users, n_items, dtype=torch.float64)
    dense[users, items] = torch.from_numpy(ratings)
    kept, overwritten = _csr(dense), _csr(dense)
    fits = [trainer(r, n_factors=3, n_epochs=5, generator=torch.Generator().manual_seed(0), overwrite_ratings=o,
                    **extra) for r, o in ((kept, False), (overwritten, True))]
    assert torch.equal(kept.values(), torch.from_numpy(ratings)[np.lexsort((items, users))])
    # Allowed to, the trainer centred them where they were; the model is the same to the last bit.
    assert torch.equal(overwritten.values(), kept.values() - fits[0].global_mean)
    for attr in ("pu", "qi", "bu", "bi"):
        torch.testing.assert_close(getattr(fits[1], attr), getattr(fits[0], attr), rtol=0, atol=0)


def test_training_on_arrays_lets_the_trainer_overwrite_only_its_own_copy():
    users, items, ratings, n_users, n_items = random_arrays()
    seen = []

    def trainer(tensor, mask=None, *, overwrite_ratings=False, **params):
        seen.append(overwrite_ratings)
        return train_svd(tensor, mask, overwrite_ratings=overwrite_ratings, **params)

    def stacked(tensor, mask=None, *, overwrite_ratings=False, **params):
        seen.append(overwrite_ratings)
        return train_svd_stacked(tensor, mask, overwrite_ratings=overwrite_ratings, **params)

    trainer.memory_bytes, trainer.stacked = train_svd.memory_bytes, stacked
    # float32 ratings in float32: the standardised copy is the only one, and the trainer overwrites it.
    for dtype in (np.float32, np.float64):
        given = ratings.astype(dtype)
        before = given.copy()
        train_on_arrays(trainer, users, items, given, n_users=n_users, n_items=n_items, layout="sparse",
                        dtype=torch.float32, n_factors=3, n_epochs=2, random_state=0)
        np.testing.assert_array_equal(given, before)
        parts = [arrays_module.as_rating_arrays(users[half], items[half], given[half], n_users, n_items)
                 for half in (slice(0, 75), slice(75, None))]
        arrays_module.train_stacked(trainer, parts, [{"n_epochs": 2}, {"n_epochs": 3}], layout="sparse", dtype=torch.float32,
                      n_factors=3)
        np.testing.assert_array_equal(given, before)
    assert seen == [True, True, True, True]


@pytest.mark.parametrize("where", [1, 3, 4, 5])
def test_the_ascending_check_finds_a_step_down_anywhere_across_chunks(monkeypatch, where):
    import surprise_torch.trainers._observed as observed

    monkeypatch.setattr(observed, "_ASCENDING_CHUNK", 4)
    # Rows of 3, 0, 4 and 2 nonzeros: steps 2 and 6 cross into a new row (allowed down), 3 and 4 straddle chunks.
    crow = torch.tensor([0, 3, 3, 7, 9], dtype=torch.int32)
    cols = torch.tensor([1, 4, 6, 0, 2, 3, 5, 0, 9], dtype=torch.int32)
    assert observed._ascending_within_rows(crow, cols)
    within_row = cols.clone()
    within_row[where] = within_row[where - 1]  # a repeat inside a row (every step chosen lies inside one)
    assert not observed._ascending_within_rows(crow, within_row)


@pytest.mark.parametrize("algo_class", ALGORITHMS, ids=lambda c: c.__name__)
def test_algorithms_give_the_same_model_in_both_layouts(algo_class, split):
    trainset, testset = split
    dense = algo_class(**FAST[algo_class], layout="dense").fit(trainset)
    sparse = algo_class(**FAST[algo_class], layout="sparse").fit(trainset)
    np.testing.assert_allclose(sparse.pu, dense.pu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([p.est for p in sparse.test(testset)], [p.est for p in dense.test(testset)],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="layout"):
        algo_class(**FAST[algo_class], layout="csr").fit(trainset)


def test_auto_layout_is_sparse_where_sparse_products_run():
    for device in ("cpu", "cuda"):
        assert arrays_module.choose_layout("auto", 10, 10, torch.float32, torch.device(device), n_ratings=90) == "sparse"
    assert arrays_module.choose_layout("dense", 10, 10, torch.float32, torch.device("cpu")) == "dense"


def test_auto_layout_follows_the_memory_budget_elsewhere(monkeypatch):
    mps = torch.device("mps")  # only described here: no MPS device is needed
    monkeypatch.setattr(arrays_module, "available_bytes", lambda device: 2 ** 30)
    assert arrays_module.choose_layout("auto", 1000, 1000, torch.float32, mps) == "dense"
    # 1000 x 1000 x 2 buffers x 4 bytes = 8 MB: over a quarter of 16 MB.
    monkeypatch.setattr(arrays_module, "available_bytes", lambda device: 16 * 10**6)
    assert arrays_module.choose_layout("auto", 1000, 1000, torch.float32, mps) == "sparse"
    assert arrays_module.choose_layout("dense", 1000, 1000, torch.float32, mps) == "dense"


def test_too_large_fails_before_allocating_with_the_estimate(monkeypatch):
    users, items, ratings, _, _ = random_arrays()
    monkeypatch.setattr(arrays_module, "available_bytes", lambda device: 10_000)
    with pytest.raises(MemoryError, match=r"needs about .* GiB .*fewer n_factors"):
        train_on_arrays("als", users, items, ratings, n_factors=50, layout="sparse")


def test_train_on_arrays_is_the_trainer_on_standardised_ratings():
    users, items, ratings, n_users, n_items = random_arrays()
    model = train_on_arrays("als", users, items, ratings, n_factors=3, n_epochs=4, random_state=0)
    center, spread = ratings.mean(), ratings.std()
    standardised = (ratings - center) / spread
    coo = torch.sparse_coo_tensor(np.stack([users, items]), standardised, (n_users, n_items),
                                  check_invariants=True).float()
    direct = train_als(coo, n_factors=3, n_epochs=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.qi, direct.qi.double() * spread ** 0.5)
    torch.testing.assert_close(model.bu, direct.bu.double() * spread)
    assert model.global_mean == pytest.approx(center)
    assert model.history["train_rmse"] == pytest.approx([r * spread for r in direct.history["train_rmse"]])
    svdpp = train_on_arrays("svdpp", users, items, ratings, n_factors=3, n_epochs=2, random_state=0)
    assert "yj" in svdpp.extras


def test_repeated_pairs_keep_the_last_rating():
    arrays = arrays_module.as_rating_arrays([0, 1, 0, 1], [0, 0, 0, 1], [1.0, 2.0, 5.0, 3.0])
    assert arrays.users.tolist() == [0, 1, 1] and arrays.items.tolist() == [0, 0, 1]
    assert arrays.ratings.tolist() == [5.0, 2.0, 3.0]


@pytest.mark.parametrize("name,value", [("n_users", 3.5), ("n_users", "3"), ("n_items", -1), ("n_items", True)])
def test_sizes_of_the_id_spaces_are_whole_numbers(name, value):
    # int() took 3.5 as 3 and "3" as 3 without a word.
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
        arrays_module.as_rating_arrays([0, 1], [0, 1], [1.0, 2.0], **{name: value})


def test_float32_ratings_train_without_a_float64_copy_and_as_float64_ones_do():
    gen = np.random.default_rng(7)
    users, items = np.repeat(np.arange(30), 8), np.tile(np.arange(8), 30)
    ratings = gen.integers(1, 6, users.size) + gen.random(users.size).round(2)
    narrow = arrays_module.as_rating_arrays(users, items, ratings.astype(np.float32))
    assert narrow.ratings.dtype == np.float32
    assert arrays_module.as_rating_arrays(users, items, ratings.astype(int)).ratings.dtype == np.float64
    # The scale is computed in float64 either way.
    scales = [arrays_module.RatingScale.of(r, centred=True) for r in (ratings.astype(np.float32), ratings)]
    assert scales[0].center == pytest.approx(float(ratings.astype(np.float32).astype(np.float64).mean()), rel=1e-15)
    assert scales[0].spread == pytest.approx(scales[1].spread, rel=1e-6)
    fits = [train_on_arrays("svd", users, items, r, n_factors=3, n_epochs=5, random_state=0)
            for r in (ratings.astype(np.float32).astype(np.float64), ratings.astype(np.float32))]
    for name in ("pu", "qi", "bu", "bi"):
        torch.testing.assert_close(getattr(fits[1], name), getattr(fits[0], name), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("users,items,ratings,match", [
    ([0, 1], [0], [1.0, 2.0], "same length"),
    ([], [], [], "no ratings"),
    ([0.5], [0], [1.0], "integer ids"),
    ([-1], [0], [1.0], r"\[0, "),
    ([0], [0], [float("nan")], "NaN"),
])
def test_bad_arrays_are_refused(users, items, ratings, match):
    with pytest.raises(ValueError, match=match):
        train_on_arrays("svd", users, items, ratings)


def test_bad_inputs_to_trainers():
    with pytest.raises(ValueError, match="mask"):
        train_svd(torch.ones(3, 3))
    dup = torch.sparse_coo_tensor([[0, 0], [1, 1]], [3.0, 4.0], (2, 2), check_invariants=True)
    with pytest.raises(ValueError, match="repeat"):
        observed_ratings(dup)
    with pytest.raises(ValueError, match="trainer must be"):
        train_on_arrays("knn", [0], [0], [1.0])


@pytest.mark.parametrize("name", ["svd", "svdpp", "als", "nmf"])
def test_users_and_items_without_ratings_train_cleanly(name):
    users, items, ratings, n_users, n_items = random_arrays()
    # Five users and three items more than the arrays mention: empty rows and columns.
    model = train_on_arrays(name, users, items, ratings, n_users=n_users + 5, n_items=n_items + 3,
                            n_factors=3, n_epochs=5, random_state=0)
    assert model.pu.shape == (n_users + 5, 3) and model.qi.shape == (n_items + 3, 3)
    for tensor in (model.pu, model.qi, model.bu, model.bi):
        assert torch.isfinite(tensor).all()
    assert all(np.isfinite(v) for v in model.history["loss"])


def _coordinates(csr):
    """A CSR tensor's (rows, columns) of each stored entry, in storage order."""
    rows = torch.repeat_interleave(torch.arange(csr.shape[0]), csr.crow_indices().diff().long())
    return [rows.tolist(), csr.col_indices().tolist()]


def test_the_sparse_tensor_is_sorted_csr_whatever_the_order_of_the_arrays():
    from surprise_torch._data import RatingArrays

    ordered = arrays_module.as_rating_arrays([1, 0, 1, 0], [1, 1, 0, 0], [4.0, 2.0, 3.0, 1.0], 3, 2)
    unordered = RatingArrays(np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0]), np.array([4.0, 2.0, 3.0, 1.0]), 3, 2)
    for arrays in (ordered, unordered):
        tensor, mask = arrays_module.ratings_tensor(arrays, "sparse", torch.device("cpu"), torch.float64)
        assert mask is None and tensor.layout == torch.sparse_csr and tensor.shape == (3, 2)
        # int32 indices (they fit), the last user without ratings an empty row.
        assert tensor.crow_indices().dtype == torch.int32 and tensor.crow_indices().tolist() == [0, 2, 4, 4]
        assert _coordinates(tensor) == [[0, 0, 1, 1], [0, 1, 0, 1]]
        assert tensor.values().tolist() == [1.0, 2.0, 3.0, 4.0]


def test_int32_ids_become_the_csr_columns_without_a_copy():
    arrays = arrays_module.as_rating_arrays([0, 0, 1], [0, 2, 1], [1.0, 2.0, 3.0])
    arrays = type(arrays)(arrays.users, arrays.items.astype(np.int32), arrays.ratings, 2, 3, ordered=True)
    tensor, _ = arrays_module.ratings_tensor(arrays, "sparse", torch.device("cpu"), torch.float64)
    assert tensor.col_indices().data_ptr() == arrays.items.ctypes.data
    obs, values = observed_ratings(tensor)
    assert obs._user_index[1].data_ptr() == arrays.items.ctypes.data  # the trainer's index, still no copy
    assert obs.users.tolist() == [0, 0, 1] and values.tolist() == [1.0, 2.0, 3.0]


def test_stacked_arrays_are_ordered_only_when_every_part_is():
    from surprise_torch._data import RatingArrays
    from surprise_torch.trainers._stack import Stack

    ordered = arrays_module.as_rating_arrays([1, 0, 1, 0], [1, 1, 0, 0], [4.0, 2.0, 3.0, 1.0])
    unordered = RatingArrays(np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0]), np.array([4.0, 2.0, 3.0, 1.0]), 2, 2)
    stack = Stack.of_sizes([(2, 2), (2, 2)])
    both = arrays_module._stack_arrays([ordered, ordered], stack)
    assert both.ordered
    assert np.all(np.diff(both.users * both.n_items + both.items) > 0)
    mixed = arrays_module._stack_arrays([ordered, unordered], stack)
    assert not mixed.ordered
    tensor, _ = arrays_module.ratings_tensor(mixed, "sparse", torch.device("cpu"), torch.float64)
    assert _coordinates(tensor) == [[0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 0, 1, 2, 3, 2, 3]]


@pytest.mark.parametrize("where", [0, 3, 4, 8])
def test_order_check_finds_a_swap_or_a_repeat_anywhere_across_chunks(monkeypatch, where):
    # Chunks of 4: positions 3 and 4 straddle a boundary, which a check within chunks alone would miss.
    monkeypatch.setattr(arrays_module, "_ORDER_CHUNK", 4)
    users, items = np.repeat(np.arange(5), 2), np.tile([0, 1], 5)
    assert arrays_module._ordered(users, items, 2)
    swapped = [users.copy(), items.copy()]
    for ids in swapped:
        ids[[where, where + 1]] = ids[[where + 1, where]]
    assert not arrays_module._ordered(*swapped, 2)
    repeated = np.insert(users, where + 1, users[where]), np.insert(items, where + 1, items[where])
    assert not arrays_module._ordered(*repeated, 2)
    # What the check refuses is sorted, a repeated pair keeping its last rating.
    arrays = arrays_module.as_rating_arrays(*repeated, np.arange(11.0), 5, 2)
    assert arrays.ordered and arrays.ratings.tolist() == [r for r in range(11) if r != where]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_ratings_are_counted_and_refused(bad, dtype):
    ratings = np.array([1.0, bad, 3.0, bad], dtype=dtype)
    with pytest.raises(ValueError, match="2 rating"):
        arrays_module.as_rating_arrays([0, 0, 1, 1], [0, 1, 0, 1], ratings)


def test_read_only_arrays_train_without_torch_warning():
    # pandas' copy-on-write columns and memory-mapped files are read-only. torch warns about tensors on such
    # arrays once per process, so the check runs in a fresh one, with that warning as an error.
    code = """
import numpy as np
from surprise_torch import train_on_arrays
arrays = [np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([1.0, 2.0, 3.0, 4.0])]
for a in arrays:
    a.flags.writeable = False
for layout in ("sparse", "dense"):
    assert np.isfinite(train_on_arrays("svd", *arrays, n_factors=2, n_epochs=2, layout=layout).pu).all()
"""
    run = subprocess.run([sys.executable, "-W", "error:The given NumPy array is not writable", "-c", code],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("n_users, n_items", [(40, 30), (70_000, 40_000)])  # int32 keys, then int64 ones
def test_unordered_pairs_are_sorted_keeping_each_repeated_pairs_last_rating(n_users, n_items):
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, n_users, 300), rng.integers(0, n_items, 300)
    users[-20:], items[-20:] = users[:20], items[:20]  # 20 pairs given twice
    ratings = np.arange(300.0)
    arrays = arrays_module.as_rating_arrays(users, items, ratings, n_users, n_items)
    last = {}
    for u, i, r in zip(users, items, ratings):
        last[u, i] = r
    expected = sorted(last.items())
    assert arrays.ordered and len(arrays.ratings) == len(expected) <= 280
    assert [(u, i) for (u, i), _ in expected] == list(zip(arrays.users.tolist(), arrays.items.tolist()))
    assert [r for _, r in expected] == arrays.ratings.tolist()
    assert arrays.users.dtype == arrays.items.dtype == np.int64
