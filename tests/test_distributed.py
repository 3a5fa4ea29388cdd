"""Multi-process ALS with torch.distributed (gloo, 2 CPU processes) matches one process."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from surprise_torch import TorchALS, train_als

from .conftest import FAST

WORLD = 2
SOLVERS = ("cholesky", "cg")


def problem():
    rng = np.random.default_rng(0)
    n_users, n_items, n = 37, 23, 400  # sizes that do not split evenly
    keys = rng.choice(n_users * n_items, n, replace=False)
    indices = torch.from_numpy(np.stack([keys // n_items, keys % n_items]))
    values = torch.from_numpy(rng.integers(1, 6, n).astype(np.float64))
    return torch.sparse_coo_tensor(indices, values, (n_users, n_items), check_invariants=True).coalesce()


def _worker(rank, init_file, out_dir, trainset):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        models = {solver: train_als(problem(), n_factors=4, n_epochs=6, generator=torch.Generator().manual_seed(0),
                                    group=dist.group.WORLD, solver=solver) for solver in SOLVERS}
        algo = TorchALS(**FAST[TorchALS], distributed=True).fit(trainset)
        torch.save({"models": {solver: {"pu": model.pu, "qi": model.qi, "bu": model.bu, "bi": model.bi,
                                        "loss": model.history["loss"]} for solver, model in models.items()},
                    "algo_pu": torch.from_numpy(algo.pu), "algo_qi": torch.from_numpy(algo.qi)},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory, split):
    tmp = tmp_path_factory.mktemp("dist")
    trainset, _ = split
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp), trainset), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("solver", SOLVERS)
def test_two_processes_match_one(distributed_results, solver):
    single = train_als(problem(), n_factors=4, n_epochs=6, generator=torch.Generator().manual_seed(0), solver=solver)
    for result in distributed_results:  # every rank ends with the whole model
        model = result["models"][solver]
        for name in ("pu", "qi", "bu", "bi"):
            torch.testing.assert_close(model[name], getattr(single, name), rtol=1e-9, atol=1e-9)
        assert model["loss"] == pytest.approx(single.history["loss"], rel=1e-9)


def test_torch_als_distributed_matches_single_process(distributed_results, split):
    trainset, _ = split
    single = TorchALS(**FAST[TorchALS]).fit(trainset)
    for result in distributed_results:
        np.testing.assert_allclose(result["algo_pu"].numpy(), single.pu, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result["algo_qi"].numpy(), single.qi, rtol=1e-4, atol=1e-5)


def test_distributed_needs_an_initialised_group(split):
    trainset, _ = split
    with pytest.raises(ValueError, match="torchrun"):
        TorchALS(**FAST[TorchALS], distributed=True).fit(trainset)
