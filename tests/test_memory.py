"""Fresh CPU buffers ask the kernel for 2 MB pages (surprise_torch.trainers._memory)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import surprise_torch.trainers._memory as memory


@pytest.fixture
def advice(monkeypatch):
    """Every ``madvise(start, length, advice)`` call, recorded instead of made."""
    calls = []
    monkeypatch.setattr(memory, "_madvise", lambda: lambda *args: calls.append(args) or 0)
    return calls


def test_whole_huge_pages_inside_a_large_buffer_are_advised(advice):
    buffer = torch.empty(memory.HUGE_PAGES_FROM + 3 * memory.HUGE_PAGE + 12345, dtype=torch.uint8)
    assert memory.advise_huge_pages(buffer) is buffer
    [(start, length, flag)] = advice
    begin, end = buffer.data_ptr(), buffer.data_ptr() + buffer.nbytes
    assert flag == 14  # MADV_HUGEPAGE
    assert start % memory.HUGE_PAGE == 0 and length % memory.HUGE_PAGE == 0 and length > 0
    # Inside the buffer (no advice on a neighbour's memory), and every whole huge page of it.
    assert begin <= start < begin + memory.HUGE_PAGE
    assert end - memory.HUGE_PAGE < start + length <= end


def test_small_and_non_cpu_buffers_are_left_alone(advice):
    memory.advise_huge_pages(torch.empty(memory.HUGE_PAGES_FROM - 1, dtype=torch.uint8))
    memory.advise_huge_pages(torch.empty(memory.HUGE_PAGES_FROM, dtype=torch.uint8, device="meta"))
    assert advice == []


def test_fresh_buffers_match_torch_empty_and_zeros(advice):
    like = torch.ones((3000, 1000), dtype=torch.float64)[:, ::2]  # strided: the buffer is contiguous anyway
    empty = memory.fresh_empty(like=like)
    assert (empty.shape, empty.dtype, empty.device, empty.is_contiguous()) == (like.shape, like.dtype, like.device,
                                                                              True)
    zeros = memory.fresh_zeros((2100, 1000), dtype=torch.float32)
    assert zeros.shape == (2100, 1000) and zeros.dtype == torch.float32 and not zeros.any()
    assert len(advice) == 2  # both are at least HUGE_PAGES_FROM bytes


@pytest.fixture
def fresh_policy():
    """The cached madvise lookups cleared before and after the test."""
    memory._madvise.cache_clear()
    memory._libc_madvise.cache_clear()
    yield
    memory._madvise.cache_clear()
    memory._libc_madvise.cache_clear()


def pretend(monkeypatch, tmp_path, thp_mode: str, host_reclaims: bool):
    """The kernel's huge-page setting reads ``thp_mode``, and the host does or does not take back free memory."""
    mode = tmp_path / "enabled"
    mode.write_text(thp_mode + "\n")
    monkeypatch.setattr(memory, "_THP_MODE", str(mode))
    monkeypatch.setattr(memory, "host_reclaims_free_memory", lambda: host_reclaims)
    memory._madvise.cache_clear()
    memory._libc_madvise.cache_clear()


def test_no_advice_where_huge_pages_are_off(monkeypatch, tmp_path, fresh_policy):
    pretend(monkeypatch, tmp_path, "always madvise [never]", host_reclaims=False)
    assert memory._madvise() is None
    memory.advise_huge_pages(torch.empty(memory.HUGE_PAGES_FROM, dtype=torch.uint8))  # a no-op, no error


def test_no_advice_where_the_host_takes_back_free_memory(monkeypatch, tmp_path, fresh_policy):
    pretend(monkeypatch, tmp_path, "always [madvise] never", host_reclaims=True)
    assert memory._madvise() is None
    if sys.platform.startswith("linux"):
        pretend(monkeypatch, tmp_path, "always [madvise] never", host_reclaims=False)
        assert memory._madvise() is not None  # the same machine without reporting: advised


def test_free_page_reporting_is_read_from_the_balloons_feature_bits(tmp_path):
    assert not memory.host_reclaims_free_memory(str(tmp_path / "absent"))
    device = tmp_path / "virtio0"
    device.mkdir()
    bits = ["0"] * 64
    bits[1] = bits[2] = "1"  # statistics, deflate on OOM: no reporting
    (device / "features").write_text("".join(bits) + "\n")
    assert not memory.host_reclaims_free_memory(str(tmp_path))
    bits[memory._F_REPORTING] = "1"
    (device / "features").write_text("".join(bits) + "\n")
    assert memory.host_reclaims_free_memory(str(tmp_path))


@pytest.mark.skipif(not sys.platform.startswith("linux") or not Path(memory._THP_MODE).exists()
                    or "[never]" in Path(memory._THP_MODE).read_text(),
                    reason="transparent huge pages are not offered here")
def test_the_kernel_records_the_advice(monkeypatch):
    # The kernel marks the advised range "hg" in /proc/self/smaps, whether or not it then finds 2 MB pages.
    # Asked for even where the policy would not (a host that takes back free memory, as this machine's).
    monkeypatch.setattr(memory, "_madvise", memory._libc_madvise)
    buffer = memory.fresh_empty(memory.HUGE_PAGES_FROM + 2 * memory.HUGE_PAGE, dtype=torch.uint8)
    inside = -(-buffer.data_ptr() // memory.HUGE_PAGE) * memory.HUGE_PAGE
    flags, region = None, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            low, high = (int(x, 16) for x in head.split("-"))
            region = low <= inside < high
        elif region and line.startswith("VmFlags:"):
            flags = line.split()[1:]
            break
    assert flags is not None and "hg" in flags


def test_a_fit_allocates_its_large_buffers_advised(monkeypatch):
    # Which buffers go through advise_huge_pages (whatever their size): the first epoch's fresh writes.
    from surprise_torch import train_on_arrays

    shapes = []
    advise = memory.advise_huge_pages
    monkeypatch.setattr(memory, "advise_huge_pages", lambda t: shapes.append(tuple(t.shape)) or advise(t))
    gen = np.random.default_rng(0)
    cells = np.unique(gen.integers(0, 30 * 20, 300))
    users, items = cells // 20, cells % 20
    train_on_arrays("svd", users, items, gen.uniform(1, 5, cells.size), n_users=30, n_items=20, layout="sparse",
                    n_factors=4, n_epochs=2, optimizer="adam", random_state=0)
    rows = [s[0] for s in shapes if len(s) == 2]
    # The residuals; the factor tables, their last sound state and Adam's two moments, per side.
    assert (cells.size,) in shapes
    assert rows.count(30) >= 4 and rows.count(20) >= 4
