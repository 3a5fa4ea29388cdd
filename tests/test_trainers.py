"""The pure tensor trainers, against independent NumPy oracles; no Surprise involved."""

import contextlib
import math

import numpy as np
import pytest
import torch

from surprise_torch import complete_als, solve_ridge_rows, train_als, train_bayes_mf, train_nmf, train_svd


def ridge_reference(mask, target, features, penalty):
    """One user at a time, with NumPy's solver: the textbook normal equations."""
    out = []
    for m, t, p in zip(mask, target, penalty):
        f = features[m > 0]
        out.append(np.linalg.solve(f.T @ f + np.diag(p), f.T @ t[m > 0]))
    return np.array(out)


@pytest.fixture
def problem():
    gen = torch.Generator().manual_seed(0)
    n_users, n_items, rank = 30, 20, 3
    full = 3 + torch.randn(n_users, rank, generator=gen, dtype=torch.float64) @ \
        torch.randn(rank, n_items, generator=gen, dtype=torch.float64) * 0.5
    mask = (torch.rand(n_users, n_items, generator=gen) < 0.6).double()
    mask[:, 0] = 1
    mask[0, :] = 1
    return full * mask, mask


def test_solve_ridge_rows_matches_numpy(problem):
    ratings, mask = problem
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(ratings.shape[1], 5, generator=gen, dtype=torch.float64)
    penalty = torch.rand(ratings.shape[0], 5, generator=gen, dtype=torch.float64) + 0.1
    got = solve_ridge_rows(mask, ratings, features, penalty)
    want = ridge_reference(mask.numpy(), ratings.numpy(), features.numpy(), penalty.numpy())
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-8, atol=1e-10)


def objective(model, ratings, mask, reg):
    """Surprise SVD's objective (per-rating regularisation) in NumPy."""
    r, m = ratings.numpy(), mask.numpy()
    pu, qi, bu, bi = (t.double().numpy() for t in (model.pu, model.qi, model.bu, model.bi))
    est = model.global_mean + bu[:, None] + bi[None, :] + pu @ qi.T
    sse = (((est - r) * m) ** 2).sum()
    pen = reg * (m.sum(1) @ ((pu ** 2).sum(1) + bu ** 2) + m.sum(0) @ ((qi ** 2).sum(1) + bi ** 2))
    return (sse + pen) / m.sum()


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_als_and_svd_minimise_the_same_objective(problem, solver):
    ratings, mask = problem
    reg = 0.05
    als = train_als(ratings, mask, n_factors=3, n_epochs=60, reg=reg, reg_bu=reg, reg_bi=reg,
                    generator=torch.Generator().manual_seed(0), solver=solver)
    svd = train_svd(ratings, mask, n_factors=3, n_epochs=600, lr={t: 0.02 for t in ("bu", "bi", "pu", "qi")},
                    reg={t: reg for t in ("bu", "bi", "pu", "qi")}, generator=torch.Generator().manual_seed(0))
    # The history's loss is that same objective, computed independently here.
    assert als.history["loss"][-1] == pytest.approx(objective(als, ratings, mask, reg), rel=1e-6)
    assert objective(svd, ratings, mask, reg) == pytest.approx(objective(als, ratings, mask, reg), rel=0.02)
    # Each ALS half-sweep minimises its half exactly, or (cg) lowers it from where it starts: conjugate
    # gradients lower a convex quadratic at every step. Either way the objective never increases.
    assert all(b <= a + 1e-9 for a, b in zip(als.history["loss"], als.history["loss"][1:]))


@pytest.mark.parametrize("implicit", [False, True])
def test_svd_steps_are_the_preconditioned_gradient_of_the_objective(problem, implicit):
    # SGD steps with a different rate and regularisation per term, against autograd on the documented
    # objective: each row's gradient divided by its count. A user and an item with no ratings count as one
    # (they only shrink). Two steps, as biases start at zero. Guards how the trainer assembles gradients in
    # its padded factor tables.
    ratings, mask = problem
    mask = mask.clone()
    mask[-1, :], mask[1:, -1] = 0, 0
    ratings = ratings * mask
    terms = ("pu", "qi", "bu", "bi", "yj")
    lr = dict(zip(terms, (0.3, 0.2, 0.5, 0.4, 0.25)))
    reg = dict(zip(terms, (0.05, 0.15, 0.02, 0.08, 0.12)))
    start, stepped = (train_svd(ratings, mask, n_factors=3, n_epochs=n, optimizer="sgd", lr=lr, reg=reg,
                                implicit=implicit, generator=torch.Generator().manual_seed(0)) for n in (0, 2))
    names = ("pu", "qi", "bu", "bi") + (("yj",) if implicit else ())
    p = {t: (start.extras[t] if t == "yj" else getattr(start, t)).clone() for t in names}
    count_u, count_i = mask.sum(1), mask.sum(0)
    # Counts floored at 1 in the penalty too: an empty row is penalised as if it had one rating.
    weights = {t: w.clamp(min=1) for t, w in
               {"pu": count_u, "bu": count_u, "qi": count_i, "bi": count_i, "yj": mask.T @ count_u}.items()}
    for _ in range(2):
        p = {t: v.detach().requires_grad_() for t, v in p.items()}
        user = p["pu"] + ((mask / weights["pu"].sqrt()[:, None]) @ p["yj"] if implicit else 0)
        est = start.global_mean + p["bu"][:, None] + p["bi"][None, :] + user @ p["qi"].T
        penalty = sum(reg[t] * weights[t] @ (p[t] ** 2).reshape(len(weights[t]), -1).sum(1) for t in names)
        (0.5 * (((est - ratings) * mask) ** 2).sum() + 0.5 * penalty).backward()
        p = {t: v - lr[t] * v.grad / weights[t].reshape(-1, *([1] * (v.ndim - 1))) for t, v in p.items()}
    for t in names:
        got = stepped.extras[t] if t == "yj" else getattr(stepped, t)
        torch.testing.assert_close(got, p[t].detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam", torch.optim.Adagrad])
def test_every_optimizer_lowers_the_loss(problem, optimizer):
    ratings, mask = problem
    lr = {"sgd": 0.5, "rmsprop": 0.01, "adam": 0.05}.get(optimizer, 0.1)
    model = train_svd(ratings, mask, n_factors=3, n_epochs=50, optimizer=optimizer,
                      lr={t: lr for t in ("bu", "bi", "pu", "qi")}, generator=torch.Generator().manual_seed(0))
    assert model.history["loss"][-1] < 0.5 * model.history["loss"][0]


def test_unbiased_models_have_no_biases(problem):
    ratings, mask = problem
    for train in (train_als, train_svd):
        model = train(ratings, mask, n_factors=3, n_epochs=5, biased=False,
                      generator=torch.Generator().manual_seed(0))
        assert model.global_mean == 0.0
        assert not model.bu.any() and not model.bi.any()


def test_complete_als_recovers_an_exact_low_rank_matrix():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=gen, dtype=torch.float64) @ torch.randn(3, 25, generator=gen, dtype=torch.float64)
    u, v, rmse = complete_als(x, n_factors=3, n_epochs=5, generator=gen)
    assert u.shape == (40, 3) and v.shape == (3, 25) and len(rmse) == 5
    assert rmse[-1] < 1e-8
    torch.testing.assert_close(u @ v, x)


def test_complete_als_refuses_missing_entries():
    x = torch.ones(4, 3)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="TorchALS"):
        complete_als(x)
    with pytest.raises(ValueError, match="n_factors"):
        complete_als(torch.ones(4, 3), n_factors=0)


@pytest.mark.parametrize("name,torch_class", [("sgd", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop),
                                              ("adam", torch.optim.Adam)])
@pytest.mark.parametrize("bias_rate", [1.0, 0.5])
def test_named_optimizers_are_torch_optims_updates(problem, name, torch_class, bias_rate):
    # The named optimizers are plain tensor code (no torch._dynamo import on a
    # worker's first fit), but the same updates as torch.optim's. One rate for every
    # term steps whole factor tables (Adam: torch's fused kernel); a separate bias
    # rate steps each term's view.
    ratings, mask = problem
    lr = {"sgd": 0.5, "rmsprop": 0.01, "adam": 0.05}[name]
    rates = {"pu": lr, "qi": lr, "bu": lr * bias_rate, "bi": lr * bias_rate}
    fits = [train_svd(ratings, mask, n_factors=3, n_epochs=20, optimizer=opt, lr=rates,
                      generator=torch.Generator().manual_seed(0)) for opt in (name, torch_class)]
    torch.testing.assert_close(fits[0].pu, fits[1].pu, rtol=1e-10, atol=1e-12)
    assert fits[0].history["loss"] == pytest.approx(fits[1].history["loss"], rel=1e-12)


def test_the_default_fit_does_not_import_the_compiler():
    import subprocess
    import sys

    code = ("import sys, torch; from surprise_torch import train_on_arrays; "
            "train_on_arrays('svd', [0, 1, 1], [0, 0, 1], [1.0, 2.0, 3.0], n_factors=2, n_epochs=2); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _table_solve(self, features, offset, penalty):
    """The solver ALS used before row blocks: one sparse product against a table of factor products."""
    from surprise_torch.trainers._observed import csr_tensor

    y = self.target if offset is None else self.target - offset.index_select(0, self.cols)
    x = solve_ridge_rows(csr_tensor(self.crow, self.cols, torch.ones_like(y), self.shape),
                         csr_tensor(self.crow, self.cols, y, self.shape), features, penalty)
    return x, csr_tensor(self.crow, self.cols, y, self.shape) @ features, y


@pytest.mark.parametrize("biased", [True, False])
def test_row_blocks_give_the_table_solvers_model(problem, monkeypatch, biased):
    import surprise_torch.trainers._blocks as blocks
    import surprise_torch.trainers.als as als

    ratings, mask = problem
    mask[3] = 0  # a user without ratings
    mask[5, 1:] = 0  # a user with one rating: kernel form
    # Small blocks and segments, so that rows are split and buckets span several blocks;
    # small tiles, so that the item side's right-hand sides are summed over tiles.
    monkeypatch.setattr(blocks, "MAX_SEGMENT", 7)
    monkeypatch.setattr(blocks, "BLOCK_ROWS", 16)
    _tile_every_product(monkeypatch, 40)
    params = dict(n_factors=4, n_epochs=6, biased=biased, solver="cholesky")
    # Both of a side's ways to its Gram matrices: the in-cache table (narrow features) and the row blocks.
    fitted = {}
    for width in (64, 0):
        monkeypatch.setattr(als, "TABLE_MAX_WIDTH", width)
        fitted[width] = train_als(ratings * mask, mask, generator=torch.Generator().manual_seed(0), **params)
    monkeypatch.setattr(als._Side, "solve", _table_solve)
    reference = train_als(ratings * mask, mask, generator=torch.Generator().manual_seed(0), **params)
    for fast in fitted.values():
        for name in ("pu", "qi", "bu", "bi"):
            torch.testing.assert_close(getattr(fast, name), getattr(reference, name), rtol=1e-9, atol=1e-11)
        assert fast.history["loss"] == pytest.approx(reference.history["loss"], rel=1e-10)


def test_row_blocks_solve_every_rows_ridge_regression():
    from surprise_torch.trainers._blocks import RowBlocks

    gen = torch.Generator().manual_seed(2)
    n_rows, n_cols, d = 12, 30, 5
    mask = (torch.rand(n_rows, n_cols, generator=gen) < 0.3).double()
    mask[0] = 0
    mask[1, :] = 0
    mask[1, 4] = 1
    mask[2] = 1  # longer than d: Gram form; the short ones: kernel form
    target = torch.randn(n_rows, n_cols, generator=gen, dtype=torch.float64) * mask
    features = torch.randn(n_cols, d, generator=gen, dtype=torch.float64)
    penalty = torch.rand(n_rows, d, generator=gen, dtype=torch.float64) + 0.1
    rows, cols = mask.nonzero(as_tuple=True)
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), mask.sum(1).long().cumsum(0)])
    y = target[rows, cols]
    rhs = torch.zeros(n_rows, d, dtype=torch.float64).index_add_(0, rows, features[cols] * y[:, None])
    x, failed = RowBlocks(crow, cols, n_cols, d).solve(features, y, rhs, penalty)
    want = ridge_reference(mask.numpy(), target.numpy(), features.numpy(), penalty.numpy())
    assert not failed.any() and failed.shape == (n_rows,)
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-9, atol=1e-12)


def _tile_every_product(monkeypatch, tile_bytes):
    """Tiles of ``tile_bytes`` for every CPU product, however sparse (tiny test data would not tile)."""
    import surprise_torch.trainers._observed as observed

    monkeypatch.setattr(observed, "TILE_BYTES", tile_bytes)
    monkeypatch.setattr(observed, "MIN_TILE_DENSITY", 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_users, n_tiles", [(37, 13), (36, 12)])
def test_tiled_item_products_equal_the_plain_product(monkeypatch, dtype, n_users, n_tiles):
    import surprise_torch.trainers._observed as observed

    gen = torch.Generator().manual_seed(3)
    mask = torch.rand((n_users, 11), generator=gen) < 0.3
    mask[4] = False  # a user without ratings: an empty column of the item side
    mask[-1] = False  # and in the last tile
    obs = observed.Observed.from_mask(mask)
    values = torch.randn(obs.nnz, generator=gen, dtype=dtype)
    dense = torch.randn((n_users, 5), generator=gen, dtype=dtype)
    plain = obs.by_item(values) @ dense
    want = (torch.zeros(n_users, 11, dtype=dtype).index_put_(mask.nonzero(as_tuple=True), values)).T @ dense
    torch.testing.assert_close(plain, want)
    # 3 users' rows per tile: 13 tiles of 37 users, the last one short; 12 of 36.
    monkeypatch.setattr(observed, "TILE_BYTES", 3 * 5 * dense.element_size())
    # Under 16 ratings per tile row: too sparse to tile, the plain product runs.
    sparse = observed.Observed.from_mask(mask)
    torch.testing.assert_close(sparse.item_product(values, dense), plain)
    assert not sparse._item_product._tilings
    # Into a given buffer, whatever it held: the product overwrites it.
    buffer = torch.full_like(plain, float("nan"))
    assert sparse.item_product(values, dense, out=buffer) is buffer
    torch.testing.assert_close(buffer, plain)
    # Or, with add, onto what it holds.
    start = torch.randn(plain.shape, generator=gen, dtype=dtype)
    torch.testing.assert_close(sparse.item_product(values, dense, out=start.clone(), add=True), start + plain)
    monkeypatch.setattr(observed, "MIN_TILE_DENSITY", 0)
    tiled = observed.Observed.from_mask(mask)
    torch.testing.assert_close(tiled.item_product(values, dense), plain)
    assert len(tiled._item_product._tilings[3][1]) == n_tiles
    buffer.fill_(float("nan"))
    assert tiled.item_product(values, dense, out=buffer) is buffer
    torch.testing.assert_close(buffer, plain)
    torch.testing.assert_close(tiled.item_product(values, dense, out=start.clone(), add=True), start + plain)
    # Tiles are cut from the user-major layout: the item-major one is never sorted.
    assert "item_order" not in vars(tiled)
    # The tiling is kept for the next product with the same tile size.
    torch.testing.assert_close(tiled.item_product(2 * values, dense), 2 * plain)
    assert list(tiled._item_product._tilings) == [3]


@pytest.mark.parametrize("n_items", [2 ** 15, 2 ** 15 + 7])
def test_sort_keys_are_narrow_and_order_as_int64_would(monkeypatch, n_items):
    import surprise_torch.trainers._observed as observed

    # int16 sort keys up to 2**15 ids, int32 past them: the same orders and counts either way.
    assert observed._narrow(torch.arange(3), n_items).dtype == (torch.int16 if n_items <= 2 ** 15 else torch.int32)
    gen = torch.Generator().manual_seed(5)
    n_users = 40
    keys = torch.unique(torch.randint(0, n_users * n_items, (3000,), generator=gen))
    users, items = keys // n_items, keys % n_items
    items[-1] = n_items - 1  # the largest id sorts last, not negative
    keys = users * n_items + items
    keep = torch.cat([keys[1:] != keys[:-1], torch.tensor([True])])
    users, items = users[keep], items[keep]
    obs = observed.Observed.from_coordinates(users, items, (n_users, n_items))
    assert obs.item_order.dtype == torch.int32
    torch.testing.assert_close(obs.item_order.long(), torch.argsort(items, stable=True))
    torch.testing.assert_close(obs.item_crow[-2:], torch.tensor([items.numel() - 1, items.numel()]))
    values = torch.randn(obs.nnz, generator=gen, dtype=torch.float64)
    dense = torch.randn((n_users, 3), generator=gen, dtype=torch.float64)
    want = obs.by_item(values) @ dense
    _tile_every_product(monkeypatch, 7 * 3 * dense.element_size())
    tiled = observed.Observed.from_coordinates(users, items, (n_users, n_items))
    torch.testing.assert_close(tiled.item_product(values, dense), want)
    assert len(tiled._item_product._tilings[7][1]) == 6


def _dense_normal_product(mask, values, x, features, offset):
    """NumPy reference of NormalOperator: ``F_u^T e_u``, ``|e_u|^2`` and ``F_u^T F_u x_u`` per row."""
    m, t, x, f = mask.numpy(), values.numpy(), x.numpy(), features.numpy()
    errors = (t - offset.numpy()[None, :] - x @ f.T) * m
    applied = ((x @ f.T) * m) @ f
    return errors @ f, (errors ** 2).sum(1), applied


@pytest.mark.parametrize("tile_bytes", [2 ** 20, 40])
def test_normal_operator_applies_every_rows_gram_matrix(monkeypatch, tile_bytes):
    import surprise_torch.trainers._observed as observed

    _tile_every_product(monkeypatch, tile_bytes)
    gen = torch.Generator().manual_seed(4)
    n_rows, n_cols, d = 13, 29, 4
    mask = (torch.rand(n_rows, n_cols, generator=gen) < 0.3).double()
    mask[2] = 0  # a row without entries
    mask[:, 5] = 0  # a column without entries
    target = torch.randn(n_rows, n_cols, generator=gen, dtype=torch.float64) * mask
    rows, cols = mask.nonzero(as_tuple=True)
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), mask.sum(1).long().cumsum(0)])
    operator = observed.NormalOperator(crow, cols, target[rows, cols], (n_rows, n_cols), d)
    # 40 bytes: a tile of one column (d + 1 = 5 doubles), so every column is its own tile.
    assert len(operator._tiles) == (n_cols if tile_bytes == 40 else 1)
    x = torch.randn(n_rows, d, generator=gen, dtype=torch.float64)
    features = torch.randn(n_cols, d, generator=gen, dtype=torch.float64)
    offset = torch.randn(n_cols, generator=gen, dtype=torch.float64)
    for given in (offset, None):
        gradient, sse = operator.residual(x, features, given)
        want_gradient, want_sse, want_applied = _dense_normal_product(
            mask, target, x, features, offset if given is not None else torch.zeros(n_cols, dtype=torch.float64))
        np.testing.assert_allclose(gradient.numpy(), want_gradient, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(sse.numpy(), want_sse, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(operator.apply(x, features).numpy(), want_applied, rtol=1e-10, atol=1e-12)
    # Products overwrite the operator's scratch, never the values it fits.
    np.testing.assert_allclose(operator.residual(x, features)[1].numpy(), want_sse, rtol=1e-10)
    gradient, sse = operator.residual(x, features, sse=False)
    assert sse is None
    np.testing.assert_allclose(gradient.numpy(), want_gradient, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tile_bytes", [2 ** 20, 40])
def test_item_side_operator_cut_from_the_user_major_layout(monkeypatch, tile_bytes):
    import surprise_torch.trainers._observed as observed

    _tile_every_product(monkeypatch, tile_bytes)
    gen = torch.Generator().manual_seed(6)
    n_users, n_items, d = 17, 9, 3
    mask = torch.rand(n_users, n_items, generator=gen) < 0.4
    mask[4] = False  # a user without ratings
    mask[:, 2] = False  # an item without ratings
    obs = observed.Observed.from_mask(mask)
    values = torch.randn(obs.nnz, generator=gen, dtype=torch.float64)
    operator = observed.NormalOperator.of_items(obs, values, d)
    # 40 bytes: one user (d + 1 = 4 doubles) per tile, the tiles cut from the user-major layout.
    assert len(operator._tiles) == (n_users if tile_bytes == 40 else 1)
    assert "item_order" not in vars(obs)
    want = observed.NormalOperator(obs.item_crow, obs.item_cols, values.index_select(0, obs.item_order),
                                   (n_items, n_users), d)
    x = torch.randn(n_items, d, generator=gen, dtype=torch.float64)
    features = torch.randn(n_users, d, generator=gen, dtype=torch.float64)
    offset = torch.randn(n_users, generator=gen, dtype=torch.float64)
    for got, expected in zip(operator.residual(x, features, offset), want.residual(x, features, offset)):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(operator.apply(x, features), want.apply(x, features), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("biased", [True, False])
def test_enough_cg_steps_solve_every_half_sweep_exactly(problem, biased):
    """With d steps, conjugate gradients end at each system's exact solution (up to rounding)."""
    ratings, mask = problem
    mask[3] = 0  # a user without ratings
    mask[5, 1:] = 0  # a user with one rating
    params = dict(n_factors=4, n_epochs=5, biased=biased, weighted_reg=False)
    exact = train_als(ratings * mask, mask, solver="cholesky", generator=torch.Generator().manual_seed(0), **params)
    cg = train_als(ratings * mask, mask, solver="cg", cg_steps=30, generator=torch.Generator().manual_seed(0),
                   **params)
    for name in ("pu", "qi", "bu", "bi"):
        torch.testing.assert_close(getattr(cg, name), getattr(exact, name), rtol=1e-7, atol=1e-9)
    # Its residual sum of squares, kept from the first residual without another pass, is the exact one's.
    assert cg.history["loss"] == pytest.approx(exact.history["loss"], rel=1e-9)
    assert cg.history["train_rmse"] == pytest.approx(exact.history["train_rmse"], rel=1e-9)


def test_default_cg_reaches_the_exact_solvers_heldout_rmse():
    from .conftest import low_rank_ratings

    n_users, n_items = 300, 200
    triples = low_rank_ratings(n_users, n_items, rank=5, density=0.15, noise=0.5, seed=5)
    users, items = (np.array([int(t[k][1:]) for t in triples]) for k in (0, 1))
    values = np.array([t[2] for t in triples])
    held = np.random.default_rng(0).random(values.size) < 0.1
    train = torch.sparse_coo_tensor(np.stack([users[~held], items[~held]]), values[~held], (n_users, n_items),
                                    check_invariants=True)

    def heldout_rmse(model):
        u, i = torch.from_numpy(users[held]), torch.from_numpy(items[held])
        est = model.global_mean + model.bu[u] + model.bi[i] + (model.pu[u] * model.qi[i]).sum(1)
        return float((est - torch.from_numpy(values[held])).pow(2).mean().sqrt())

    rmse = {solver: heldout_rmse(train_als(train, n_factors=10, solver=solver,
                                           generator=torch.Generator().manual_seed(0)))
            for solver in ("cholesky", "cg")}
    assert rmse["cg"] == pytest.approx(rmse["cholesky"], abs=1e-3)


@pytest.mark.parametrize("name", ["reg", "reg_bu", "reg_bi"])
def test_cg_refuses_a_zero_penalty(problem, name):
    ratings, mask = problem
    with pytest.raises(ValueError, match=f"positive {name}.*solver='cholesky'"):
        train_als(ratings, mask, n_epochs=1, solver="cg", **{name: 0.0})
    # Exact solves may try: the divergence guard reports a singular system.
    train_als(ratings, mask, n_epochs=1, solver="cholesky", on_divergence="recover", **{name: 0.0})


def test_unknown_solver_is_refused(problem):
    ratings, mask = problem
    with pytest.raises(ValueError, match="solver must be one of 'cholesky', 'cg'"):
        train_als(ratings, mask, solver="lu")
    with pytest.raises(ValueError, match="cg_steps"):
        train_als(ratings, mask, cg_steps=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_finite_finds_any_nan_or_infinity_and_passes_finite_values_too_large_to_sum(dtype):
    from surprise_torch.trainers._common import all_finite

    table = torch.randn((50, 8), generator=torch.Generator().manual_seed(6), dtype=dtype)
    assert all_finite(table) and all_finite(table[:, 2:5]) and all_finite(table[:0])
    for bad in (float("nan"), float("inf"), -float("inf")):
        spoilt = table.clone()
        spoilt[37, 3] = bad
        assert not all_finite(spoilt) and not all_finite(spoilt[:, 2:5])
        assert all_finite(spoilt[:, :3])  # the bad value is outside this view
    # Finite values whose sum overflows: the sum is infinite, the values are checked one by one.
    huge = torch.full((4,), torch.finfo(dtype).max, dtype=dtype)
    assert not math.isfinite(huge.sum()) and all_finite(huge)
    # +inf and -inf sum to NaN, never to something finite.
    assert not all_finite(torch.tensor([float("inf"), -float("inf"), 1.0], dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fit_means_are_float64_sums_in_chunks(dtype):
    from surprise_torch.trainers._common import sum64
    from surprise_torch.trainers._stack import centred

    gen = torch.Generator().manual_seed(5)
    values = (torch.rand(1001, generator=gen, dtype=torch.float64) * 4 + 1).to(dtype)
    exact = values.double().clone()  # a copy even of float64 values, to see them unchanged
    # Chunks of 7: the float64 sums of 143 pieces, as a million-value chunk sums a large fit's.
    assert sum64(values, chunk=7) == pytest.approx(float(exact.sum()), rel=1e-14)
    assert sum64(values, 3.0, square=True, chunk=7) == pytest.approx(float(((exact - 3) ** 2).sum()), rel=1e-14)
    assert sum64(values[:0]) == 0.0
    # The values themselves are not changed (each chunk's float64 copy is).
    assert torch.equal(values.double(), exact)
    means, target = centred(values, [400, 601], biased=True)
    assert means == pytest.approx([float(values[:400].double().mean()), float(values[400:].double().mean())],
                                  rel=1e-14)
    torch.testing.assert_close(target[:400], values[:400] - means[0])
    # Centred in place: the same values, in the given tensor.
    scratch = values.clone()
    means_in_place, in_place = centred(scratch, [400, 601], biased=True, inplace=True)
    assert means_in_place == means and in_place.data_ptr() == scratch.data_ptr()
    assert torch.equal(in_place, target)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_mean_and_its_squared_deviations_in_one_pass_equal_two_passes(dtype):
    from surprise_torch.trainers._common import mean_and_deviation64, sum64

    gen = torch.Generator().manual_seed(6)
    # Far from zero: the chunks' squares about their own means must be moved to the common mean exactly.
    values = (torch.rand(1001, generator=gen, dtype=torch.float64) * 4 + 1000).to(dtype)
    before = values.clone()
    mean, squares = mean_and_deviation64(values, chunk=7)
    assert mean == sum64(values, chunk=7) / 1001  # to the last bit
    assert squares == pytest.approx(sum64(values, mean, square=True), rel=1e-12)
    assert torch.equal(values, before)
    assert mean_and_deviation64(values[:0]) == (0.0, 0.0)
    assert mean_and_deviation64(values[:1])[1] == 0.0


@pytest.mark.parametrize("chunk", [16, 48, 2 ** 18])
def test_initial_factors_drawn_in_chunks_into_a_table_equal_one_draw(monkeypatch, chunk):
    from surprise_torch.trainers import _common

    monkeypatch.setattr(_common, "INIT_CHUNK", chunk)
    for n, k in ((1, 1), (3, 5), (17, 1), (33, 3), (1000, 7), (5000, 100), (0, 4)):
        whole = _common.init_factors(n, k, 0.5, 0.1, torch.Generator().manual_seed(1), "cpu", torch.float64)
        table = torch.zeros((n, k + 3), dtype=torch.float64)  # strided, as TorchSVD's padded tables are
        _common.init_factors(n, k, 0.5, 0.1, torch.Generator().manual_seed(1), "cpu", torch.float64,
                             out=table[:, :k])
        assert torch.equal(table[:, :k], whole), (n, k)
        assert not table[:, k:].any()


def test_an_observed_index_is_freed_without_the_cycle_collector(monkeypatch):
    # Its tiles can be hundreds of MB: they must go when the fit drops the index, not at some later
    # run of the cyclic garbage collector.
    import gc
    import weakref

    import surprise_torch.trainers._observed as observed

    _tile_every_product(monkeypatch, 3 * 5 * 4)
    obs = observed.Observed.from_mask(torch.rand((37, 11), generator=torch.Generator().manual_seed(6)) < 0.3)
    obs.item_product(torch.randn(obs.nnz), torch.randn((37, 5)))
    assert obs._item_product._tilings  # tiled, so the tiles exist
    alive = weakref.ref(obs)
    gc.disable()
    try:
        del obs
        assert alive() is None
    finally:
        gc.enable()


def test_factor_rows_are_padded_to_whole_words():
    from surprise_torch.trainers._common import aligned_width

    # float32: multiples of 8 elements (32 bytes); float64: of 4.
    assert [aligned_width(w, 4) for w in (1, 8, 52, 102, 104)] == [8, 8, 56, 104, 104]
    assert [aligned_width(w, 8) for w in (3, 5, 102)] == [4, 8, 104]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_large_gather_split_over_threads_is_index_select(monkeypatch, threads):
    import surprise_torch.trainers._observed as observed

    monkeypatch.setattr(observed, "PARALLEL_GATHER", 10)
    monkeypatch.setattr(observed, "GATHER_SPAN", 64)  # 16 spans, the last one short
    spans = []
    index_select = torch.index_select

    def spy(values, dim, order, out):
        spans.append(order.numel())
        return index_select(values, dim, order, out=out)

    monkeypatch.setattr(torch, "index_select", spy)
    with _with_threads(threads):
        gen = torch.Generator().manual_seed(0)
        values = torch.randn(1001, generator=gen)
        order = torch.randperm(1001, generator=gen).to(torch.int32)
        out = torch.full_like(values, float("nan"))
        assert observed.gather(values, order, out) is out
        torch.testing.assert_close(out, values[order.long()], rtol=0, atol=0)
        assert torch.get_num_threads() == threads  # restored after the lanes
    # One call on one thread; on more, spans that the lanes take one at a time.
    assert sorted(spans) == ([1001] if threads == 1 else [41] + [64] * 15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_products_by_embedding_bags_over_row_chunks(monkeypatch, dtype):
    import surprise_torch.trainers._observed as observed

    gen = torch.Generator().manual_seed(4)
    mask = torch.rand((13, 9), generator=gen) < 0.4
    mask[2:4] = False  # a whole chunk of two users without ratings
    mask[-1] = False  # and the last user
    mask[:, 5] = False  # an item without ratings
    obs = observed.Observed.from_mask(mask)
    values = torch.randn(obs.nnz, generator=gen, dtype=dtype)
    dense = torch.randn((9, 4), generator=gen, dtype=dtype)
    full = torch.zeros(13, 9, dtype=dtype).index_put_(mask.nonzero(as_tuple=True), values)
    # Two rows' results a chunk: 7 chunks of the user side, the last one short.
    monkeypatch.setattr(observed, "BAG_BYTES", 2 * 4 * dense.element_size())
    torch.testing.assert_close(obs.user_product(values, dense), full @ dense)
    assert [(r0, r1) for r0, r1, *_ in obs._user_product._bags[None, 2]] == [(0, 2), (2, 4), (4, 6), (6, 8),
                                                                           (8, 10), (10, 12), (12, 13)]
    start = torch.randn((13, 4), generator=gen, dtype=dtype)
    torch.testing.assert_close(obs.user_product(values, dense, out=start.clone(), add=True), start + full @ dense)
    users = torch.randn((13, 4), generator=gen, dtype=dtype)
    torch.testing.assert_close(obs.item_product(values, users), full.T @ users)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_gathers_on_its_own_threads(monkeypatch):
    # The worker pool's threads do not survive a fork: a child must start its own, not wait on dead ones.
    import os

    import surprise_torch.trainers._observed as observed

    monkeypatch.setattr(observed, "PARALLEL_GATHER", 10)
    monkeypatch.setattr(observed, "GATHER_SPAN", 16)
    with _with_threads(2):
        values, order = torch.arange(100.0), torch.arange(99, -1, -1)
        observed.gather(values, order, torch.empty(100))  # the parent's pool exists now
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if the gather completes (within 20 s) and is right
            import signal

            signal.alarm(20)
            out = observed.gather(values, order, torch.empty(100))
            os._exit(0 if torch.equal(out, values.flip(0)) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@contextlib.contextmanager
def _with_threads(n):
    """Run the block with ``n`` torch threads, the previous setting restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def test_transposed_tiles_cut_on_two_lanes_are_the_ones_cut_on_one(monkeypatch):
    import threading

    import surprise_torch.trainers._observed as observed

    gen = torch.Generator().manual_seed(8)
    mask = torch.rand((41, 13), generator=gen) < 0.4
    mask[5] = False  # a user without ratings
    obs = observed.Observed.from_mask(mask)
    cuts, ran = {}, []

    def cut(keys=obs.items):  # int64 ids: each tile narrows its own
        return observed.cut_transposed_tiles(obs.user_crow, keys, obs.shape, 4,
                                             alongside=[lambda: ran.append(threading.get_ident())])

    with _with_threads(2):
        cut()  # too few nonzeros for lanes: all on the calling thread
    monkeypatch.setattr(observed, "PARALLEL_CUT", 0)
    for lanes in (1, 2):
        with _with_threads(lanes):
            cuts[lanes] = cut()
            assert torch.get_num_threads() == lanes  # restored
    # The side job ran once per cut: on the calling thread alone, on a worker beside it.
    assert ran[:2] == [threading.get_ident()] * 2 and ran[2] != threading.get_ident()
    cuts["int16"] = cut(obs._item_keys)  # ids narrowed beforehand: the same tiles
    (order_1, parts_1, counts_1), (order_2, parts_2, counts_2) = cuts[1], cuts[2]
    assert torch.equal(order_1, order_2) and len(parts_1) == len(parts_2) == 11
    assert obs.items.dtype == torch.int64 and obs._item_keys.dtype == torch.int16
    assert torch.equal(cuts["int16"][0], order_1) and torch.equal(cuts["int16"][2], counts_1)
    assert all(torch.equal(a[3], b[3]) for a, b in zip(cuts["int16"][1], parts_1))
    # The tiles' counts, summed, are each item's ratings.
    assert torch.equal(counts_1, mask.sum(0)) and torch.equal(counts_2, counts_1)
    for part_1, part_2 in zip(parts_1, parts_2):
        assert part_1[:2] == part_2[:2] and part_1[4:] == part_2[4:]
        assert torch.equal(part_1[2], part_2[2]) and torch.equal(part_1[3], part_2[3])
    # Each tile's pattern is its users' (rows 4t..4t+3) ratings, item-major: the transpose's columns.
    dense = torch.randn((41, 3), generator=gen, dtype=torch.float64)
    values = torch.randn(obs.nnz, generator=gen, dtype=torch.float64)
    full = torch.zeros(41, 13, dtype=torch.float64).index_put_(mask.nonzero(as_tuple=True), values)
    product = torch.zeros(13, 3, dtype=torch.float64)
    for start, end, crow, cols, first, width in parts_2:
        tile = observed.csr_tensor(crow, cols, values[order_2[start:end].long()], (13, width))
        product += tile @ dense[first:first + width]
    torch.testing.assert_close(product, full.T @ dense)


def test_run_beside_stops_at_the_first_error_and_restores_the_threads():
    import threading

    import surprise_torch._threads as threads

    ran, lock = [], threading.Lock()

    def job(n):
        def run():
            with lock:
                ran.append(n)
            if n == 3:
                raise ValueError("job 3")
        return run

    with _with_threads(2):
        with pytest.raises(ValueError, match="job 3"):
            threads.run_beside([], [job(n) for n in range(100)], 2)
        assert torch.get_num_threads() == 2
        assert 3 in ran and len(ran) < 100  # no lane took many jobs after the failure
        # A lane's job may itself run work beside it: on a worker that runs on its own thread, not waiting
        # for lanes queued behind it.
        inner = []
        threads.run_beside([lambda: threads.run_beside([], [lambda: inner.append(1)] * 3, 2)],
                            [lambda: inner.append(2)] * 3, 2)
        assert sorted(inner) == [1, 1, 1, 2, 2, 2]


def test_item_products_use_the_tiles_cut_beforehand(monkeypatch):
    import surprise_torch.trainers._observed as observed

    gen = torch.Generator().manual_seed(9)
    mask = torch.rand((37, 11), generator=gen) < 0.3
    values = torch.randn(int(mask.sum()), generator=gen, dtype=torch.float64)
    dense = torch.randn((37, 5), generator=gen, dtype=torch.float64)
    plain = observed.Observed.from_mask(mask).by_item(values) @ dense
    # Untiled (too sparse): nothing to cut, the side job runs all the same.
    ran = []
    sparse = observed.Observed.from_mask(mask)
    sparse.prepare_item_product(dense, alongside=[lambda: ran.append("untiled")])
    assert ran == ["untiled"] and not sparse._item_product._tilings
    _tile_every_product(monkeypatch, 3 * 5 * dense.element_size())
    tiled = observed.Observed.from_mask(mask)
    tiled.prepare_item_product(dense, alongside=[lambda: ran.append("tiled")])
    assert ran == ["untiled", "tiled"] and list(tiled._item_product._tilings) == [3]
    # The products use those tiles: cutting again would fail.
    monkeypatch.setattr(observed, "cut_transposed_tiles", None)
    torch.testing.assert_close(tiled.item_product(values, dense), plain)
    tiled.prepare_item_product(dense, alongside=[lambda: ran.append("again")])  # cut already: only the side job
    assert ran[-1] == "again"


@pytest.mark.parametrize("threads", [1, 2])
def test_svd_draws_its_initial_factors_beside_the_tile_cut(monkeypatch, threads):
    from surprise_torch.trainers._common import init_factors

    import surprise_torch.trainers._observed as observed

    _tile_every_product(monkeypatch, 3 * 8 * 4)
    monkeypatch.setattr(observed, "PARALLEL_CUT", 0)  # on lanes, however few the ratings
    gen = torch.Generator().manual_seed(10)
    mask = torch.rand((37, 11), generator=gen) < 0.4
    ratings = (torch.randint(1, 6, (37, 11), generator=gen).float() * mask).to_sparse_csr()
    with _with_threads(threads):
        model = train_svd(ratings, n_factors=4, n_epochs=0, generator=torch.Generator().manual_seed(11))
    # With no epochs the model is its start: pu, then qi, from the one generator, as drawn on their own.
    draw = torch.Generator().manual_seed(11)
    pu = init_factors(37, 4, 0.0, 0.1, draw, "cpu", torch.float32)
    qi = init_factors(11, 4, 0.0, 0.1, draw, "cpu", torch.float32)
    assert torch.equal(model.pu, pu) and torch.equal(model.qi, qi)


def _out_of_range():
    """(trainer, parameters, message) that the trainer must refuse with that message: each used to train
    silently (a negative rate ascends, a misspelt term was ignored), or failed deep inside (TypeError,
    KeyError, ZeroDivisionError, torch's errors)."""
    cases = [(train_svd, {"n_factors": -1}, "n_factors must be an integer >= 0"),
             (train_svd, {"n_factors": 2.5}, "n_factors"), (train_svd, {"n_epochs": -1}, "n_epochs"),
             (train_svd, {"n_epochs": 1.5}, "n_epochs"), (train_svd, {"init_std_dev": -1.0}, "init_std_dev"),
             (train_svd, {"lr": {"pu": -0.1}}, r"lr\['pu'\] must be a finite number > 0"),
             (train_svd, {"reg": {"qi": float("nan")}}, r"reg\['qi'\]"),
             (train_svd, {"lr": {"q_i": 0.1}}, "lr has no term 'q_i'; its keys are bu, bi, pu, qi, yj"),
             (train_svd, {"reg": "strong"}, "reg must be a dict of per-term values"),
             (train_svd, {"prior": {"bu": -1.0}}, r"prior\['bu'\] must be a finite number >= 0"),
             (train_svd, {"prior": {"b_u": 1.0}}, "prior has no term 'b_u'"),
             (train_als, {"prior_bias": -1.0}, "prior_bias"), (train_als, {"prior_factors": "x"}, "prior_factors"),
             # Penalty weights past what the dtype holds (float64 here) ended in NaN ("use a smaller learning
             # rate") or in torch's "value cannot be converted to type float without overflow".
             (train_svd, {"reg": {"qi": 1e200}}, r"reg\['qi'\] and prior\['qi'\] weigh a row's penalty 1e\+200"),
             (train_svd, {"prior": {"bu": 1e160}}, r"reg\['bu'\] and prior\['bu'\] weigh .* past what torch.float64"),
             (train_als, {"reg": 1e200}, "reg and prior_factors weigh a row's penalty"),
             (train_als, {"prior_bias": 1e160}, "reg_bu and prior_bias weigh a row's penalty"),
             (train_svd, {"optimizer": "lbfgs"}, "optimizer must be one of"),
             (train_svd, {"biased": "no"}, "biased"), (train_svd, {"implicit": 2}, "implicit"),
             (train_als, {"n_factors": -1}, "n_factors"), (train_als, {"n_epochs": -2}, "n_epochs"),
             (train_als, {"reg": -1.0, "solver": "cholesky"}, "reg must be a finite number >= 0"),
             (train_als, {"weighted_reg": "yes"}, "weighted_reg"), (train_als, {"init_std_dev": -1.0}, "init_std_dev"),
             (train_nmf, {"n_factors": -1}, "n_factors"), (train_nmf, {"init_low": -1.0}, "init_low"),
             (train_nmf, {"init_low": 2.0, "init_high": 1.0}, "init_high must be a finite number > 2.0"),
             (train_nmf, {"reg_pu": -1.0}, "reg_pu"), (train_nmf, {"lr_bi": float("inf")}, "lr_bi"),
             (train_bayes_mf, {"n_factors": -1}, "n_factors"), (train_bayes_mf, {"thinning": 0}, "thinning"),
             (train_bayes_mf, {"max_samples": 0}, "max_samples"), (train_bayes_mf, {"burn_in": -1}, "burn_in"),
             (train_bayes_mf, {"prior_rate": 0.0}, "prior_rate must be a finite number > 0")]
    return [pytest.param(trainer, params, message, id=f"{trainer.__name__}-{'-'.join(map(str, params.items()))}")
            for trainer, params, message in cases]


@pytest.mark.parametrize("trainer,params,message", _out_of_range())
def test_trainers_refuse_parameters_out_of_range_naming_them(problem, trainer, params, message):
    ratings, mask = problem
    base = {"n_factors": 2, "n_epochs": 4, "generator": torch.Generator().manual_seed(0)}
    if trainer is train_bayes_mf:
        base["burn_in"] = 1
    with pytest.raises(ValueError, match=message):
        trainer(ratings, mask, **base | params)


def test_one_svd_rate_for_every_term_is_a_rate_per_term(problem):
    ratings, mask = problem
    fits = [train_svd(ratings, mask, n_factors=2, n_epochs=5, lr=lr, reg=reg,
                      generator=torch.Generator().manual_seed(0))
            for lr, reg in ((0.05, 0.2), (dict.fromkeys(("bu", "bi", "pu", "qi", "yj"), 0.05),
                                          dict.fromkeys(("bu", "bi", "pu", "qi", "yj"), 0.2)))]
    assert torch.equal(fits[0].pu, fits[1].pu) and torch.equal(fits[0].bi, fits[1].bi)
    default = train_svd(ratings, mask, n_factors=2, n_epochs=5, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(default.pu, fits[0].pu)


@pytest.mark.parametrize("trainer,extra", [(train_svd, {}), (train_svd, {"implicit": True}), (train_als, {}),
                                           (train_als, {"solver": "cholesky"}), (train_nmf, {"biased": True}),
                                           (train_bayes_mf, {"burn_in": 2})],
                         ids=["svd", "svdpp", "als", "als-cholesky", "nmf", "bayes"])
def test_zero_factors_train_the_biases_alone(problem, trainer, extra):
    # SVD++'s and NMF's products with an empty factor table divided by zero.
    ratings, mask = problem
    ratings = ratings.abs() if trainer is train_nmf else ratings  # NMF takes non-negative ratings
    model = trainer(ratings, mask, n_factors=0, n_epochs=8, generator=torch.Generator().manual_seed(0), **extra)
    observed = ratings[mask > 0]
    assert model.pu.shape == (ratings.shape[0], 0) and model.qi.shape == (ratings.shape[1], 0)
    assert model.bu.abs().sum() > 0 and model.bi.abs().sum() > 0
    # The sampler's single draws are noisy; its posterior mean is what it fits.
    rmse = model.history["train_rmse_mean" if trainer is train_bayes_mf else "train_rmse"][-1]
    assert rmse < float(((observed - observed.mean()) ** 2).mean().sqrt())


def test_solve_ridge_rows_names_arguments_that_do_not_fit_together(problem):
    # torch's errors named the shapes of intermediate products ("5x4 and 3x3"), not the arguments.
    mask, target = problem[1], problem[0]
    features, penalty = torch.randn(mask.shape[1], 3, dtype=torch.float64), torch.ones(mask.shape[0], 3,
                                                                                        dtype=torch.float64)
    for args, message in (((mask, target, features[:-1], penalty), r"features must be \(n_cols, d\) = \(20, d\)"),
                          ((mask, target[:-1], features, penalty), "weights and target must be 2-D and of one shape"),
                          ((mask, target, features, penalty[:, 0]),
                           r"penalty must broadcast to \(n_rows, d\) = \(30, 3\)"),
                          ((mask.float(), target, features, penalty), "share a dtype")):
        with pytest.raises(ValueError, match=message):
            solve_ridge_rows(*args)
    # One value for every row and factor broadcasts.
    torch.testing.assert_close(solve_ridge_rows(mask, target, features, 1.0),
                               solve_ridge_rows(mask, target, features, penalty))


@pytest.mark.parametrize("trainer,extra", [(train_svd, {}), (train_svd, {"implicit": True}), (train_als, {}),
                                           (train_als, {"solver": "cholesky"}), (train_nmf, {}),
                                           (train_bayes_mf, {"burn_in": 2})],
                         ids=["svd", "svdpp", "als", "als-cholesky", "nmf", "bayes"])
def test_no_factors_and_no_biases_fit_the_empty_model(problem, trainer, extra):
    # Nothing to fit, as Surprise's SVD(n_factors=0, biased=False) allows; conjugate gradients' empty
    # products divided by zero.
    ratings, mask = problem
    ratings = ratings.abs() if trainer is train_nmf else ratings
    model = trainer(ratings, mask, n_factors=0, n_epochs=3, biased=False, generator=torch.Generator().manual_seed(0),
                    **extra)
    observed = ratings[mask > 0]
    assert model.pu.shape == (ratings.shape[0], 0) and not model.bu.any() and not model.bi.any()
    rmse = model.history["train_rmse_mean" if trainer is train_bayes_mf else "train_rmse"][-1]
    assert rmse == pytest.approx(float(observed.square().mean().sqrt()))


@pytest.mark.parametrize("trainer", ["svd", "svdpp", "als-cg", "als-cholesky"])
def test_a_prior_shrinks_the_rows_with_few_ratings_and_none_is_surprises_objective(trainer):
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 30
    users, items = np.divmod(rng.choice(n_users * n_items, 700, replace=False), n_items)
    keep = (users != 0) | (items == items[users == 0][0])  # user 0 keeps one rating
    users, items = users[keep], items[keep]
    ratings = torch.sparse_coo_tensor(torch.tensor(np.stack([users, items])),
                                      torch.tensor(rng.normal(0, 1, keep.sum()) + 2.0 * (users == 0)),
                                      (n_users, n_items), check_invariants=True).coalesce()

    def fit(prior):
        seed = torch.Generator().manual_seed(0)
        if trainer.startswith("als"):
            priors = {} if prior is None else {"prior_bias": prior, "prior_factors": prior}
            return train_als(ratings, n_factors=3, n_epochs=10, solver=trainer[4:], generator=seed, **priors)
        return train_svd(ratings, n_factors=3, n_epochs=40, implicit=trainer == "svdpp", prior=prior, generator=seed)

    none, zero, strong = fit(None), fit(0.0), fit(20.0)
    for name in ("pu", "qi", "bu", "bi"):  # a prior of 0 is the per-rating objective, to the bit
        assert torch.equal(getattr(zero, name), getattr(none, name)), name
    counts = np.bincount(users, minlength=n_users)
    heavy = int(np.argmax(counts))
    # The lone rating's user is pulled toward 0 (a penalty over 21 ratings, not 1: the ridge optimum about a
    # third of the unshrunk one, which ALS solves for and 40 Adam steps approach); the heaviest user's bias,
    # 20 pseudo-ratings beside its own dozens, moves far less in proportion.
    assert abs(strong.bu[0]) < 0.6 * abs(none.bu[0])
    assert abs(strong.bu[heavy] - none.bu[heavy]) < 0.5 * abs(none.bu[heavy]) + 0.05
    assert torch.linalg.vector_norm(strong.pu[0]) < torch.linalg.vector_norm(none.pu[0])
