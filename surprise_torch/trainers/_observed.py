"""Index of the observed entries of a rating matrix, for sparse products in both directions.

Rating matrices are mostly empty (ML-100K is 6% full), so products that only
involve observed entries run several times faster as CSR sparse-dense
products than as dense GEMMs over the whole matrix. :class:`Observed` keeps
the observed coordinates once, in user-major order, with the permutation to
item-major order; it wraps any per-rating vector as a user-major CSR matrix
without copying the index, and multiplies either layout by dense rows through
:class:`CSRProduct`: embedding bags over chunks of rows (:func:`bag_product`),
the item side tiled on the CPU.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass, field
from functools import cached_property, partial

import torch

from .._threads import run_beside
from ._common import all_finite
from ._memory import fresh_empty

#: Bytes of dense rows that one tile of an item-side product reads from (about
#: a core's L2 cache). An item's raters are scattered over the whole user
#: table; once that is far larger than the cache nearly every nonzero misses
#: (ML-10M, 100 factors: 0.51 s per product, 0.11 s in tiles), so on the CPU
#: the product runs tile by tile. The user side is not tiled: a user's items
#: crowd on the popular ones, which stay cached (tiling it measured slower).
TILE_BYTES = 2 ** 20

#: Tiling pays only when each tile's rows average at least this many nonzeros:
#: every tile's product writes, and adds into the result, a whole
#: ``(n_rows, m)`` output. ML-10M's item side has 50 per tile row; ML-100K's
#: folds stacked twenty at a time (model selection) have 3, where tiling made
#: the products twice slower than the plain one.
MIN_TILE_DENSITY = 16

#: Bytes of result rows that one ``embedding_bag`` call of a product writes
#: (see :func:`bag_product`): the call's fresh result stays in a core's L2
#: cache until it is added into the product, and the allocator recycles it
#: rather than faulting in new pages (ML-20M's user side: 92 ms in such
#: chunks against 110 ms as one call).
BAG_BYTES = 2 ** 20


@dataclass(frozen=True)
class Observed:
    """Coordinates of the observed ratings, sorted by user then item.

    Attributes
    ----------
    items : torch.Tensor
        ``(nnz,)`` column of each observed rating (int64, or int32 as a CSR
        tensor's indices came).
    shape : tuple of int
        ``(n_users, n_items)``.
    user_crow : torch.Tensor
        CSR row pointers of the user-major layout.
    users : torch.Tensor
        ``(nnz,)`` int64 row of each observed rating (from ``user_crow`` on
        first use, unless given).
    item_order : torch.Tensor
        Permutation taking user-major vectors to item-major order, in
        :func:`index_dtype` (computed on first use).
    item_crow, item_cols : torch.Tensor
        CSR row pointers and column (user) indices of the item-major layout
        (computed on first use).
    """

    items: torch.Tensor
    shape: tuple
    user_crow: torch.Tensor
    _users: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _item_product: "CSRProduct" = field(default=None, repr=False, compare=False)
    _user_product: "CSRProduct" = field(default=None, repr=False, compare=False)
    _user_index: tuple = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_item_product", _TransposedProduct(self))
        # int32 CSR indices where they fit: a quarter less memory traffic per product (ML-10M: 0.105 -> 0.078 s).
        # No copy where they came so (train_on_arrays' CSR tensors).
        narrow = index_dtype(max(self.nnz, self.shape[1]))
        object.__setattr__(self, "_user_index", (self.user_crow.to(narrow), self.items.to(narrow)))
        # Untiled: a user's items crowd on the popular ones, which stay cached (tiling measured slower).
        object.__setattr__(self, "_user_product", CSRProduct(*self._user_index, self.shape, tiled=False))

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> "Observed":
        """Index the nonzero entries of a dense ``(n_users, n_items)`` mask."""
        users, items = mask.nonzero(as_tuple=True)  # row-major, so sorted by user
        return cls.from_coordinates(users, items, tuple(mask.shape))

    @classmethod
    def from_coordinates(cls, users: torch.Tensor, items: torch.Tensor, shape) -> "Observed":
        """Index coordinates already sorted by user (then item)."""
        n_users, n_items = shape
        return cls(items=items, shape=(n_users, n_items), user_crow=_crow(users, n_users), _users=users)

    @property
    def users(self) -> torch.Tensor:
        """Each rating's user (row) id, in the user-major order."""
        # Not kept for a CSR tensor's ratings unless asked for: TorchSVD and TorchALS never need it
        # (ML-10M: 72 MB of fresh pages, 7-15 ms of a first epoch).
        if self._users is None:
            object.__setattr__(self, "_users", _row_ids(self.user_crow))
        return self._users

    # The item-major layout is built only where something asks for it: TorchSVD's item-side products
    # on the CPU run on tiles cut from the user-major layout (see _TransposedProduct), and sorting
    # ML-10M's ratings by item took 0.17 s of a first epoch.
    @cached_property
    def item_order(self) -> torch.Tensor:
        """The permutation that puts user-major values in item-major order: ``values[item_order]``."""
        # Users are sorted already: a stable sort by item alone orders by (item, user). Narrowed: every
        # untiled item-side product gathers its values by it (a stacked search's: 4.9 against 5.8 ms).
        return torch.argsort(self._item_keys, stable=True).to(index_dtype(self.nnz))

    @cached_property
    def item_crow(self) -> torch.Tensor:
        """Item-major row pointers: item ``i``'s ratings are ``item_order[item_crow[i]:item_crow[i + 1]]``."""
        # Row pointers need only the counts: no gather of the sorted items. Counted on the narrowed
        # items (ML-10M: 6 ms in int16, 10-12 in int32, 16 in int64).
        return _crow(self._item_keys, self.shape[1])

    @cached_property
    def _item_keys(self) -> torch.Tensor:
        # The items in the narrowest type that holds them, converted once for the counts and the
        # item-major order of untiled products (the tiles narrow their own: see _item_tiles).
        return _narrow(self.items, self.shape[1])

    @cached_property
    def item_cols(self) -> torch.Tensor:
        """Each rating's user id, in item-major order."""
        return self.users.index_select(0, self.item_order)

    @cached_property
    def _item_index(self) -> tuple:
        # Narrowed as the user-major index is: the item-side product of a stacked search's folds
        # ran on int64 indices at 28 ms against the user side's 24.
        narrow = index_dtype(max(self.nnz, self.shape[0]))
        return self.item_crow.to(narrow), self.item_cols.to(narrow)

    @property
    def nnz(self) -> int:
        """Number of observed ratings."""
        return self.items.numel()

    def by_user(self, values: torch.Tensor) -> torch.Tensor:
        """``(n_users, n_items)`` CSR matrix holding ``values`` (user-major order)."""
        return csr_tensor(*self._user_index, values, self.shape)

    def by_item(self, values: torch.Tensor) -> torch.Tensor:
        """``(n_items, n_users)`` CSR matrix, the transpose, holding the same ``values``."""
        return csr_tensor(*self._item_index, values.index_select(0, self.item_order), self.shape[::-1])

    def user_product(self, values: torch.Tensor, dense: torch.Tensor, out: torch.Tensor | None = None,
                     add: bool = False) -> torch.Tensor:
        """``by_user(values) @ dense`` (see :class:`CSRProduct`), into ``out`` if given (added to it, with ``add``)."""
        return self._user_product(values, dense, out, add)

    def item_product(self, values: torch.Tensor, dense: torch.Tensor, out: torch.Tensor | None = None,
                     add: bool = False, scratch: torch.Tensor | None = None) -> torch.Tensor:
        """``by_item(values) @ dense``, tiled over ``dense``'s rows where that is faster (see :class:`CSRProduct`),
        into ``out`` if given (added to it, with ``add``), ``values`` reordered into ``scratch`` if given."""
        return self._item_product(values, dense, out, add, scratch)

    def prepare_item_product(self, dense: torch.Tensor, alongside=()) -> None:
        """Cut the tiles that :meth:`item_product` with ``dense``'s rows will use, now, beside ``alongside``.

        ``alongside`` (callables) run in the same lanes as the cut (see
        :func:`cut_transposed_tiles`), and run even where the products need
        no tiles. Products cut their tiles on first use anyway; this lets a
        trainer overlap the cut with its own one-thread setup.
        """
        self._item_product.prepare(dense, alongside)

    def counts(self, dtype):
        """Ratings per user and per item: the row lengths of the two CSR layouts."""
        return self.user_crow.diff().to(dtype), self.item_crow.diff().to(dtype)

    def _item_tiles(self, tile: int, alongside=()) -> tuple:
        """The item-major layout cut into tiles of ``tile`` users (:func:`cut_transposed_tiles`'s order and
        parts), beside ``alongside``. The tiles count each item's ratings anyway: their sums become
        :attr:`item_crow`'s source, unless it is known already (ML-10M: a count of every rating saved)."""
        # The items narrowed already if something else needed them so, else narrowed tile by tile.
        keys = self.__dict__.get("_item_keys", self.items)
        order, parts, counts = cut_transposed_tiles(self.user_crow, keys, self.shape, tile, alongside)
        if "item_crow" not in self.__dict__:
            self.__dict__["item_crow"] = _counts_crow(counts)
        return order, parts


class CSRProduct:
    """Products ``csr(values) @ dense`` for one fixed CSR pattern and changing values.

    Each product runs as embedding bags over chunks of the pattern's rows
    (:func:`bag_product`), the chunks kept from product to product. On the
    CPU, when ``dense`` is larger than :data:`TILE_BYTES`, the pattern is cut
    into column tiles (each reading a cache-sized slice of ``dense``'s rows)
    and the tiles' products are summed; the tiling is built on first use for
    each tile size and kept. Values that need reordering go into one buffer
    kept from product to product; a caller's ``out`` takes the result.

    Parameters
    ----------
    crow, cols : torch.Tensor
        CSR row pointers and column indices, columns ascending within a row.
    shape : tuple of int
        ``(n_rows, n_cols)``.
    order : torch.Tensor, optional
        ``values`` come in another order: the pattern's nonzeros are
        ``values[order]``.
    tiled : bool, default True
        False always runs the plain product.
    """

    def __init__(self, crow: torch.Tensor, cols: torch.Tensor, shape, order: torch.Tensor | None = None,
                 tiled: bool = True):
        self.crow, self.cols, self.shape, self.order, self.tiled = crow, cols, tuple(shape), order, tiled
        self._tilings = {}
        self._bags = {}
        self._ordered = None

    @property
    def nnz(self) -> int:
        """Number of nonzeros of the pattern."""
        return self.cols.numel()

    def __call__(self, values: torch.Tensor, dense: torch.Tensor, out: torch.Tensor | None = None,
                 add: bool = False, scratch: torch.Tensor | None = None) -> torch.Tensor:
        """``csr(values) @ dense``: ``(n_rows, n_cols)`` times ``(n_cols, m)``, into ``out`` if given.

        With ``add``, the product is added to what ``out`` holds (a pass
        less than zeroing it and adding the two afterwards). ``scratch``, a
        contiguous 1-D tensor of at least :attr:`nnz` values of ``values``'
        dtype, takes the reordered values instead of the buffer the product
        keeps; it is free again when the product returns.
        """
        if out is None:
            out, add = dense.new_empty((self.shape[0], dense.shape[1])), False
        row_bytes = dense.shape[1] * dense.element_size()
        tiling = self.prepare(dense)
        if tiling is None:
            crow, cols, order = self._untiled()
            ordered = values if order is None else self._reorder(values, order, scratch)
            return bag_product(self._chunks(None, crow, cols, row_bytes), ordered, dense, out, add)
        tile, (order, parts) = tiling
        ordered = self._reorder(values, order, scratch)
        for t, (start, end, crow, cols, first, width) in enumerate(parts):
            bag_product(self._chunks((tile, t), crow, cols, row_bytes), ordered[start:end],
                        dense[first:first + width], out, add or t > 0)
        return out

    def prepare(self, dense: torch.Tensor, alongside=()):
        """The tiling that products with ``dense``'s rows use, cut now if it is not yet.

        ``alongside`` (callables) run in the same lanes as the cut; without a
        cut to make, on the calling thread.

        Returns
        -------
        tuple or None
            ``(tile, (order, parts))`` (see :func:`cut_tiles`), or None where
            the products run untiled.
        """
        tile = tile_columns(self.shape, self.nnz, dense.shape[1] * dense.element_size(), dense.device)
        if not self.tiled or tile is None:
            tile = None
        elif tile not in self._tilings:
            self._tilings[tile] = self._cut(tile, alongside)
            alongside = ()
        for job in alongside:
            job()
        return None if tile is None else (tile, self._tilings[tile])

    def _untiled(self):
        """The whole pattern's row pointers and columns, and the order its values come in (None: as given)."""
        return self.crow, self.cols, self.order

    def _chunks(self, key, crow, cols, row_bytes):
        """The row chunks of pattern ``key`` (None: untiled; else a tiling's tile), kept for the next product."""
        return kept_chunks(self._bags, key, crow, cols, row_bytes)

    def _reorder(self, values, order, scratch=None):
        """``values[order]``, in ``scratch`` or one kept buffer: a fresh 9M-value result per product faulted
        in new pages every time (ML-10M: 49 against 30 ms)."""
        if scratch is not None:
            return gather(values, order, scratch[:order.numel()])
        if self._ordered is None or self._ordered.dtype != values.dtype or self._ordered.device != values.device:
            self._ordered = fresh_empty(like=values)
        return gather(values, order, self._ordered)

    def _cut(self, tile, alongside=()):
        """The nonzeros reordered by (column tile, row, column), and each tile's CSR pattern, after ``alongside``."""
        for job in alongside:
            job()
        return cut_tiles(self.crow, self.cols, self.shape, tile, self.order)


#: Gathers of at least this many values run on all of torch's CPU threads (see :func:`gather`).
PARALLEL_GATHER = 2 ** 20

#: Values per span of a parallel :func:`gather`: the lanes take spans one at a time.
GATHER_SPAN = 2 ** 19

#: Tile cuts of at least this many nonzeros run on lanes (see :func:`cut_transposed_tiles`). Below, lanes
#: could save a few ms at most (ML-1M's 0.9M ratings: about 9 ms for the draws and the cut together), and
#: lost them: the worker shares the second core with OpenMP's idle thread, which spins there for a few ms
#: after the setup's last parallel region (ML-1M first epochs 34-39 ms on lanes against 31-37 on the
#: calling thread; with OMP_WAIT_POLICY=PASSIVE lanes won, 32-35 ms, but every epoch was 10% slower).
PARALLEL_CUT = 2 ** 20


def gather(values: torch.Tensor, order: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = values[order]`` for 1-D tensors, split over torch's CPU threads when it is large.

    torch runs a 1-D ``index_select`` on one thread; at ML-10M's size it
    took 29 ms an epoch (a fifth of TorchSVD's epoch once the products ran
    as embedding bags). Here it runs span by span (:data:`GATHER_SPAN`) on
    lanes (:func:`~surprise_torch._threads.run_beside`: the caller's thread
    and workers kept for the process; torch releases the GIL), each lane
    taking the next span when it finishes one. Fixed halves waited for the
    worker's: right after a parallel region, OpenMP's idle thread spins on
    the other core for a few ms, and the worker shares that core with it
    (ML-10M: 21-22 ms a gather in halves, 18-19 in spans; 9.5 ms for the
    halves with no parallel region before them).
    """
    n = order.numel()
    lanes = torch.get_num_threads() if values.device.type == "cpu" and n >= PARALLEL_GATHER else 1
    if lanes <= 1:
        return torch.index_select(values, 0, order, out=out)
    jobs = [partial(torch.index_select, values, 0, order[a:a + GATHER_SPAN], out=out[a:a + GATHER_SPAN])
            for a in range(0, n, GATHER_SPAN)]
    run_beside([], jobs, lanes)
    return out


def kept_chunks(kept: dict, key, crow: torch.Tensor, cols: torch.Tensor, row_bytes: int) -> list:
    """:func:`row_chunks` of pattern ``key`` for results of ``row_bytes`` a row, cut once and kept in ``kept``."""
    rows = max(1, BAG_BYTES // max(1, row_bytes))  # 0 bytes a row: an empty product (n_factors=0)
    if (key, rows) not in kept:
        kept[key, rows] = row_chunks(crow, cols, rows)
    return kept[key, rows]


def row_chunks(crow: torch.Tensor, cols: torch.Tensor, rows: int) -> list:
    """A CSR pattern cut into runs of ``rows`` rows, as :func:`bag_product` takes them.

    Returns each run's ``(first row, end row, first nonzero, end nonzero,
    columns, offsets)``: its nonzeros' columns and each row's start among
    them, in the pattern's index dtype.
    """
    n_rows = crow.numel() - 1
    starts = list(range(0, n_rows, rows))
    bounds = crow[torch.tensor(starts + [n_rows], dtype=torch.long, device=crow.device)].tolist()
    return [(r0, min(r0 + rows, n_rows), s, e, cols[s:e], crow[r0:min(r0 + rows, n_rows)] - s)
            for r0, s, e in zip(starts, bounds[:-1], bounds[1:])]


def bag_product(chunks: list, values: torch.Tensor, dense: torch.Tensor, out: torch.Tensor,
                add: bool = False) -> torch.Tensor:
    """``out (+)= csr(values) @ dense`` for a pattern cut by :func:`row_chunks`, one embedding bag per row.

    ``embedding_bag`` in sum mode with per-sample weights is the CSR product
    (each row a bag of its columns' dense rows, weighted by its values), and
    runs it 1.7-2.2x faster than torch's CSR ``addmm`` on the CPU
    (ML-10M's user side: 36 against 62 ms; ML-100K's: 1.1 against 2.5 ms).
    Each chunk's fresh result (:data:`BAG_BYTES`) stays cached until it is
    added or copied into ``out``.
    """
    if dense.shape[1] == 0:  # no columns to add (n_factors=0); embedding_bag fails on an empty table
        return out
    for r0, r1, s, e, cols, offsets in chunks:
        part = torch.nn.functional.embedding_bag(cols, dense, offsets, mode="sum", per_sample_weights=values[s:e])
        if add:
            out[r0:r1].add_(part)
        else:
            out[r0:r1].copy_(part)
    return out


class _TransposedProduct(CSRProduct):
    """:class:`CSRProduct` of an :class:`Observed`'s item-major layout, its tiles cut from the user-major one.

    Cutting the user-major layout needs no item-major index: each tile's
    users are one contiguous run of it, sorted by item on its own (ML-10M:
    0.07 s, against 0.17 s to sort every rating by item and then 0.16 s more
    to sort by tile).
    """

    def __init__(self, obs: Observed):
        super().__init__(None, None, obs.shape[::-1])
        # A weak reference: the Observed owns this product, and a reference cycle would keep both,
        # tiles included, until the cyclic garbage collector happened to run.
        self.obs = weakref.proxy(obs)

    @property
    def nnz(self) -> int:
        """Number of observed ratings."""
        return self.obs.nnz

    def _untiled(self):
        return *self.obs._item_index, self.obs.item_order

    def _cut(self, tile, alongside=()):
        return self.obs._item_tiles(tile, alongside)


def tile_columns(shape, nnz: int, row_bytes: int, device) -> int | None:
    """Columns per tile for products of an ``(n_rows, n_cols)`` pattern with dense rows of ``row_bytes``.

    None where the plain product is the better one: off the CPU, when the
    dense rows fit one tile, or when the tiles would be too sparse (each
    tile writes and sums a whole output; see :data:`MIN_TILE_DENSITY`).
    """
    n_rows, n_cols = shape
    tile = max(1, TILE_BYTES // max(1, row_bytes))
    n_tiles = -(-n_cols // tile)
    if device.type != "cpu" or n_tiles == 1 or n_tiles * n_rows * MIN_TILE_DENSITY > nnz:
        return None
    return tile


def cut_tiles(crow: torch.Tensor, cols: torch.Tensor, shape, tile: int, order: torch.Tensor | None = None):
    """Cut a CSR pattern into column tiles of ``tile`` columns.

    Returns the nonzeros' order by (column tile, row, column), composed with
    ``order`` if the values come in another order, and each tile's
    ``(start, end, crow, cols, first column, width)``, indices in
    :func:`index_dtype` and columns local to the tile.
    """
    n_rows, n_cols = shape
    rows = _row_ids(crow)
    tiles = cols // tile
    # The nonzeros are sorted by (row, column): a stable sort by tile alone orders by (tile, row, column).
    local = torch.argsort(_narrow(tiles, n_cols), stable=True)
    order = local if order is None else order.index_select(0, local)
    narrow = index_dtype(max(cols.numel(), n_cols))
    n_tiles = (n_cols + tile - 1) // tile
    per_row = torch.bincount(tiles * n_rows + rows, minlength=n_tiles * n_rows).view(n_tiles, n_rows)
    sizes = per_row.sum(1).tolist()
    tiled_cols = cols.index_select(0, local)
    parts, start = [], 0
    for t, size in enumerate(sizes):
        tile_crow = torch.cat([per_row.new_zeros(1), per_row[t].cumsum(0)]).to(narrow)
        first = t * tile
        parts.append((start, start + size, tile_crow, (tiled_cols[start:start + size] - first).to(narrow),
                      first, min(tile, n_cols - first)))
        start += size
    return order, parts


def cut_transposed_tiles(crow: torch.Tensor, cols: torch.Tensor, shape, tile: int, alongside=()):
    """Cut the transpose of a CSR pattern into column tiles of ``tile`` columns (rows of the pattern).

    Each tile is cut on its own, on one thread; on the CPU the tiles of a
    large pattern (:data:`PARALLEL_CUT`) are shared out among as many lanes
    as torch has threads (see :func:`~surprise_torch._threads.run_beside`).
    torch's two-thread sort of a tile is three times slower in some
    processes than in others (ML-10M: 26 or 80-90 ms for all tiles), the
    largest source of spread in TorchSVD's first epoch; tiles sorted on one
    thread each, two at a time, took 26-29 ms in every process.

    Parameters
    ----------
    crow : torch.Tensor
        Row pointers of the ``(n_rows, n_cols)`` pattern.
    cols : torch.Tensor
        Each nonzero's column, ascending within each row; they are the sort
        keys, narrowed tile by tile to the narrowest type that holds them
        (where they sort fastest).
    shape : tuple of int
        ``(n_rows, n_cols)``: the transpose is ``(n_cols, n_rows)``.
    tile : int
        Rows of the pattern (columns of the transpose) per tile.
    alongside : sequence of callable, optional
        Other work to run in order on one of the lanes before it cuts
        tiles: independent work that runs on one thread (a fit's initial
        draws, one stream of random numbers) while the others cut.

    Returns
    -------
    order, parts
        As :func:`cut_tiles` returns them for the transpose: the nonzeros'
        order by (row tile, column, row) and each tile's
        ``(start, end, crow, cols, first row, width)``.
    counts : torch.Tensor
        ``(n_cols,)`` int64 nonzeros per column of the pattern (per row of
        the transpose), summed from the tiles' own counts.
    """
    n_rows, n_cols = shape
    nnz = cols.numel()
    narrow = index_dtype(max(nnz, n_rows))
    bounds = crow[::tile].tolist()
    if (len(bounds) - 1) * tile < n_rows:
        bounds.append(nnz)
    order = fresh_empty(nnz, dtype=narrow, device=cols.device)
    lengths = crow.diff().to(narrow)
    parts = [None] * (len(bounds) - 1)
    counts = [None] * len(parts)  # each tile's nonzeros per column

    def cut(t, start, end):
        # A tile is a contiguous run of whole rows, sorted by row: a stable sort by column orders it
        # by (column, row). Sorting run by run keeps each sort in cache. Its keys are narrowed here, on
        # the lanes, into memory each tile reuses, not as one array of every key (ML-10M: 18 MB of
        # fresh pages and a pass over every rating before the cut).
        keys = _narrow(cols[start:end], n_cols)
        local = torch.argsort(keys, stable=True)
        first = t * tile
        width = min(tile, n_rows - first)
        # Row pointers from the counts, written in the index type directly (ML-10M, one thread: 7 ms for
        # every tile, against 19 ms searching the sorted columns).
        tile_crow = torch.empty(n_cols + 1, dtype=narrow, device=cols.device)
        tile_crow[0] = 0
        counts[t] = torch.bincount(keys, minlength=n_cols)
        torch.cumsum(counts[t], 0, dtype=narrow, out=tile_crow[1:])
        # Each nonzero's row within the tile, from the row lengths (no array of every nonzero's row).
        rows = _repeat_ids(lengths[first:first + width], end - start)
        # Narrowed before the offset is added: one pass over int64 positions instead of two.
        order[start:end].copy_(local).add_(start)
        parts[t] = (start, end, tile_crow, rows.index_select(0, local), first, width)

    jobs = [partial(cut, t, start, end) for t, (start, end) in enumerate(zip(bounds[:-1], bounds[1:]))]
    lanes = torch.get_num_threads() if cols.device.type == "cpu" and nnz >= PARALLEL_CUT else 1
    run_beside(list(alongside), jobs, lanes)
    total = torch.stack(counts).sum(0) if counts else cols.new_zeros(n_cols, dtype=torch.int64)
    return order, parts, total


class NormalOperator:
    """Every row's normal-equation matrix ``F_u^T F_u`` over its observed columns, applied without forming it.

    Conjugate-gradient ALS needs, at each step and for every row ``u``,
    ``F_u^T (F_u p_u)``, where ``F_u`` holds the features of the row's
    observed columns: one sampled product ``F p`` at the observed entries,
    then one sparse product back. That is ``O(nnz d)`` work, against the
    ``O(nnz d^2)`` of building the Gram matrices. On the CPU both products run
    tile by tile over cache-sized slices of ``F``'s rows (see
    :data:`TILE_BYTES`), each tile reading its slice twice while it is
    cached; the fitted values are kept in tile order once, so no step
    reorders anything.

    Parameters
    ----------
    crow, cols : torch.Tensor
        CSR row pointers and column indices, columns ascending within a row.
    values : torch.Tensor
        ``(nnz,)`` values to fit, in the pattern's order.
    shape : tuple of int
        ``(n_rows, n_cols)``.
    width : int
        Width of the features it will be applied with (sets the tile size).
    """

    def __init__(self, crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape, width: int):
        n_rows, n_cols = shape
        tile = tile_columns(shape, cols.numel(), _feature_bytes(width, values), values.device)
        if tile is None:
            narrow = index_dtype(max(cols.numel(), n_cols))
            parts = [(0, cols.numel(), crow.to(narrow), cols.to(narrow), 0, n_cols)]
            order = None
        else:
            order, parts = cut_tiles(crow, cols, shape, tile)
        self._lay_out(order, parts, values, shape)

    @classmethod
    def of_items(cls, obs: Observed, values: torch.Tensor, width: int) -> "NormalOperator":
        """The operator of ``obs``'s item-major layout (items as rows), ``values`` in user-major order.

        Its tiles are cut from the user-major layout (:func:`cut_transposed_tiles`;
        untiled, one tile of every user), so the item-major index is never
        built: at ML-10M's size, sorting by item, gathering the item-major
        columns and values, and then sorting by tile took 0.5 s of a first sweep.
        """
        n_users = obs.shape[0]
        shape = obs.shape[::-1]
        tile = tile_columns(shape, obs.nnz, _feature_bytes(width, values), values.device) or max(n_users, 1)
        order, parts = obs._item_tiles(tile)
        operator = cls.__new__(cls)
        operator._lay_out(order, parts, values, shape)
        return operator

    def _lay_out(self, order, parts, values, shape):
        """Hold ``values`` (reordered by ``order``, if not None) as the tiles ``parts`` describe."""
        self.shape, self.dtype = tuple(shape), values.dtype
        n_rows = self.shape[0]
        ordered = values if order is None else values.index_select(0, order)
        # Each tile: its values as a CSR matrix, a CSR matrix of the same pattern that every product
        # overwrites in place (fresh results would copy the pattern each time: 15% slower at ML-10M),
        # and its slice of columns.
        self._tiles = [(csr_tensor(part_crow, part_cols, ordered[start:end], (n_rows, width_t)),
                        csr_tensor(part_crow, part_cols, torch.zeros_like(ordered[start:end]), (n_rows, width_t)),
                        first, width_t)
                       for start, end, part_crow, part_cols, first, width_t in parts]
        self._bags = {}

    def _product(self, tile, errors, part, out):
        """``out += errors @ part`` for tile ``tile``'s CSR ``errors`` (see :func:`bag_product`)."""
        chunks = kept_chunks(self._bags, tile, errors.crow_indices(), errors.col_indices(),
                             part.shape[1] * part.element_size())
        return bag_product(chunks, errors.values(), part, out, add=True)

    def residual(self, x: torch.Tensor, features: torch.Tensor, offset: torch.Tensor | None = None,
                 sse: bool = True):
        """``F_u^T e_u`` and ``|e_u|^2`` of every row, for ``e = values - offset[col] - x[row] . features[col]``.

        Returns
        -------
        gradient : torch.Tensor
            ``(n_rows, d)``.
        sse : torch.Tensor or None
            ``(n_rows,)`` sums of squared residuals; None unless ``sse``.
        """
        if offset is not None:
            # values - offset[col] - x . f  =  values - [x, 1] . [f, offset]: one sampled product subtracts both.
            x = torch.cat([x, x.new_ones((x.shape[0], 1))], 1)
            features = torch.cat([features, offset[:, None]], 1)
        out = x.new_zeros((self.shape[0], x.shape[1]))
        sums = x.new_zeros((self.shape[0], 1)) if sse else None
        for t, (values, errors, first, width) in enumerate(self._tiles):
            part = features[first:first + width]
            torch.sparse.sampled_addmm(values, x, part.T, beta=1, alpha=-1, out=errors)
            self._product(t, errors, part, out)
            if sse:
                squares = errors.values()
                squares.mul_(squares)
                sums.addmm_(errors, x.new_ones((width, 1)))
        # The offset's column of the product is not a feature.
        return out[:, :out.shape[1] - (offset is not None)], sums[:, 0] if sse else None

    def apply(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``F_u^T F_u x_u`` for every row ``u``: ``(n_rows, d)``."""
        out = x.new_zeros((self.shape[0], x.shape[1]))
        for t, (_, scratch, first, width) in enumerate(self._tiles):
            part = features[first:first + width]
            torch.sparse.sampled_addmm(scratch, x, part.T, beta=0, out=scratch)
            self._product(t, scratch, part, out)
        return out


def _feature_bytes(width: int, values: torch.Tensor) -> int:
    """Bytes of one feature row that a :class:`NormalOperator` tile reads: ``width + 1``, as residuals
    carry an offset column (see :meth:`NormalOperator.residual`)."""
    return (width + 1) * values.element_size()


def index_dtype(bound: int) -> torch.dtype:
    """int32 for indices and CSR pointers below ``bound`` where they fit, else int64.

    Half the bytes to move: CSR products, gathers and sorts run faster on them.
    """
    return torch.int32 if bound < 2 ** 31 - 1 else torch.int64


def _narrow(index: torch.Tensor, bound: int) -> torch.Tensor:
    """``index`` (values below ``bound``) as sort keys in the narrowest integer type that holds them.

    Fewer bytes sort faster: a stable sort of ML-10M's 9M item ids took 127 ms
    in int16 against 164 in int32, and twice that in int64.
    """
    dtype = torch.int16 if bound <= 2 ** 15 else index_dtype(bound)
    return index.to(dtype)


#: Nonzeros per chunk of :func:`_ascending_within_rows`' check: its comparisons stay cached and their memory is reused.
_ASCENDING_CHUNK = 2 ** 18


def _ascending_within_rows(crow: torch.Tensor, cols: torch.Tensor) -> bool:
    """Whether a CSR pattern's columns strictly ascend within each row: sorted, none repeated.

    A chunk at a time, with no array-sized temporary (see
    :func:`~surprise_torch.arrays._ordered`). A step down is allowed only
    where a row starts.
    """
    nnz = cols.numel()
    if nnz < 2:
        return True
    # Where each row after the first starts (sorted): the steps into them are the ones allowed to go down.
    starts = crow[1:-1].long()
    edges = list(range(0, nnz - 1, _ASCENDING_CHUNK)) + [nnz - 1]
    spans = torch.searchsorted(starts, torch.tensor(edges, device=starts.device), right=True).tolist()
    for lo, hi, a, b in zip(edges[:-1], edges[1:], spans[:-1], spans[1:]):
        ascends = cols[lo + 1:hi + 1] > cols[lo:hi]  # step j: from nonzero j to j + 1
        ascends[starts[a:b] - 1 - lo] = True  # the rows starting in lo + 1 .. hi
        if not bool(ascends.all()):
            return False
    return True


def _row_ids(crow: torch.Tensor) -> torch.Tensor:
    """Each nonzero's row (int64), from CSR row pointers: the inverse of :func:`_crow`."""
    return _repeat_ids(crow.diff().long(), int(crow[-1]))  # a CSR's pointers start at 0 and are never empty


def _repeat_ids(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Each id ``i`` repeated ``counts[i]`` times (``total`` in all), in ``counts``' dtype (int32 or int64).

    torch's one-argument ``repeat_interleave`` (with the size given, no pass to sum the counts) writes
    the ids directly; given ``arange`` and the counts it gathers them through an int64 index instead, 3-25
    times slower on the CPU (6040 rows, 0.9M ids: 1.6 against 0.06 ms; ML-10M's 9M: 32 against 10).
    """
    return torch.repeat_interleave(counts, output_size=total)


def _crow(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """CSR row pointers of entries in these rows, once they are sorted by row (in any order now)."""
    return _counts_crow(torch.bincount(rows, minlength=n_rows))


def _counts_crow(counts: torch.Tensor) -> torch.Tensor:
    """CSR row pointers of rows holding ``counts`` entries each."""
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


#: CSR tensors made by :func:`csr_tensor` with ``validated=True``, by ``id``: their columns are known to
#: ascend within rows and their values to be finite, so :func:`observed_ratings` does not check them again.
_VALIDATED = weakref.WeakValueDictionary()


def csr_tensor(crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape,
               validated: bool = False) -> torch.Tensor:
    """A sparse CSR tensor of these (trusted) indices, without torch's warning that CSR is in beta.

    With ``validated``, the caller vouches that the columns strictly ascend
    within each row (it has checked or sorted them) and that there are
    values, all finite (it has checked them): :func:`observed_ratings` then
    indexes the tensor without passes of its own over the columns and the
    values (ML-10M's columns: 6 ms of a first epoch, after the same check on
    the arrays).
    """
    with warnings.catch_warnings():
        # torch labels CSR "beta"; the products used here are long stable.
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.sparse_csr_tensor(crow, cols, values, size=shape, check_invariants=False)
    if validated:
        _VALIDATED[id(tensor)] = tensor
    return tensor


def rating_shape(ratings: torch.Tensor) -> tuple:
    """``(n_users, n_items)`` of a rating matrix; a ``ValueError`` if it is not 2-D."""
    shape = tuple(ratings.shape)
    if len(shape) != 2:
        raise ValueError(f"ratings must be a 2-D (n_users, n_items) tensor, got shape {shape}.")
    return shape


def observed_ratings(ratings: torch.Tensor, mask: torch.Tensor | None = None, allow_empty: bool = False):
    """Index the observed ratings of a dense (with ``mask``) or sparse COO/CSR tensor.

    Parameters
    ----------
    ratings : torch.Tensor
        ``(n_users, n_items)`` floating point: dense (then ``mask`` marks the
        observed entries), or sparse COO or CSR whose stored entries are the
        ratings.
    mask : torch.Tensor, optional
        Dense 0/1 mask; required with dense ``ratings``, ignored otherwise.
    allow_empty : bool, default False
        Accept a matrix with no observed rating (one process's share of a
        distributed fit may have none).

    Returns
    -------
    obs : Observed
    values : torch.Tensor
        ``(nnz,)`` ratings in ``obs``'s user-major order.

    Raises
    ------
    ValueError
        For ratings that are not a 2-D floating-point tensor, a dense tensor
        without a mask or with a mask of another shape, a sparse tensor with
        repeated (user, item) pairs, another layout, an observed rating that
        is NaN or infinite, or (unless ``allow_empty``) no observed rating.
    """
    shape = rating_shape(ratings)
    if not ratings.dtype.is_floating_point:
        raise ValueError(f"ratings must be floating point (float32 or float64), got {ratings.dtype}; "
                         "convert them with .float() or .double().")
    # As train_on_arrays builds them, from validated arrays: no pass over the columns or the values.
    validated = ratings.layout == torch.sparse_csr and _VALIDATED.get(id(ratings)) is ratings
    obs, values = _observed(ratings, mask, shape, validated)
    if validated:
        return obs, values
    if values.numel() == 0 and not allow_empty:
        raise ValueError("There are no observed ratings to train on.")
    if not all_finite(values):
        raise ValueError(f"{int((~torch.isfinite(values)).sum())} observed rating(s) are NaN or infinite; "
                         "remove them (or leave them out of the mask).")
    return obs, values


def _observed(ratings: torch.Tensor, mask: torch.Tensor | None, shape: tuple, validated: bool):
    """:func:`observed_ratings`' index and values, before the values are checked (``validated``: a CSR
    tensor whose columns are known to ascend within rows)."""
    if ratings.layout == torch.strided:
        if mask is None:
            raise ValueError("Dense ratings need a mask of the observed entries (mask=...), "
                             "or pass a sparse COO/CSR tensor.")
        if tuple(mask.shape) != shape:
            raise ValueError(f"mask must have the ratings' shape {shape}, got {tuple(mask.shape)}.")
        obs = Observed.from_mask(mask)
        return obs, ratings[obs.users, obs.items]
    if ratings.layout == torch.sparse_coo:
        coalesced = ratings.coalesce()  # sorted by (user, item), duplicates summed
        if coalesced._nnz() != ratings._nnz():
            raise ValueError("The sparse ratings repeat some (user, item) pairs; keep one rating per pair.")
        users, items = coalesced.indices()
        return Observed.from_coordinates(users, items, shape), coalesced.values()
    if ratings.layout == torch.sparse_csr:
        crow, cols, values = ratings.crow_indices(), ratings.col_indices(), ratings.values()
        if validated or _ascending_within_rows(crow, cols):
            # Indexed as they stand, int32 indices included.
            return Observed(items=cols, shape=shape, user_crow=crow), values
        # CSR need not sort columns within a row.
        users = _row_ids(crow)
        keys, order = torch.sort(users * shape[1] + cols)
        if bool((keys[1:] == keys[:-1]).any()):
            raise ValueError("The sparse ratings repeat some (user, item) pairs; keep one rating per pair.")
        return Observed.from_coordinates(users[order], cols[order], shape), values[order]
    raise ValueError(f"ratings must be dense, sparse COO or sparse CSR, not {ratings.layout}.")
