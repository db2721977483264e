"""Mini-batches from in-memory arrays.

    loader = DataLoader((x, y), batch_size=128, shuffle=True, seed=0)
    for xb, yb in loader:            # scratchgen Tensors, dtypes as in the arrays
        ...

Each epoch takes one permutation and slices it, so there is no per-example Python work.
Epoch k shuffles with np.random.default_rng([seed, k]): the order depends only on (seed, k), and
state_dict() = {seed, epoch, batch} resumes exactly, even from the middle of an epoch.
"""
import numpy as np


class ArrayDataset:
    """Arrays that share their first dimension; item i is the tuple of their i-th rows."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("ArrayDataset needs at least one array")
        self.arrays = tuple(np.asarray(a) for a in arrays)
        lengths = {a.shape[0] if a.ndim else None for a in self.arrays}
        if len(lengths) != 1 or None in lengths:
            shapes = ", ".join(str(a.shape) for a in self.arrays)
            raise ValueError(f"ArrayDataset arrays must share their first dimension; got shapes {shapes}")

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)


class TensorDataset(ArrayDataset):
    """torch.utils.data.TensorDataset: tensors (or arrays) sharing their first dimension."""

    def __init__(self, *tensors):
        super().__init__(*(getattr(t, "data", t) for t in tensors))


class DataLoader:
    """Batches of a dataset: an ArrayDataset / TensorDataset, a tuple of arrays, or one array.

    Every batch is a tuple of Tensors, one per array, even for a single array
    (`for (xb,) in DataLoader(x, 64)`), as PyTorch's DataLoader over a TensorDataset yields."""

    def __init__(self, dataset, batch_size, shuffle=False, drop_last=False, seed=None):
        if isinstance(dataset, np.ndarray):
            dataset = ArrayDataset(dataset)
        elif isinstance(dataset, (tuple, list)):
            dataset = ArrayDataset(*dataset)
        if not isinstance(dataset, ArrayDataset):
            raise TypeError(f"DataLoader takes an ArrayDataset or a tuple of arrays, not {type(dataset).__name__}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        # No seed: draw one, so the run is still resumable from state_dict().
        self.seed = int(np.random.SeedSequence().entropy) if seed is None else int(seed)
        self.epoch = 0          # the epoch the next iteration runs
        self._start = 0         # first batch of that epoch (nonzero only after a mid-epoch resume)
        self._current = None    # (epoch, batches done) of the iteration in progress

    def __len__(self):
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _batches(self):
        """One epoch of tuples of NumPy arrays (copies, never views of the dataset)."""
        epoch, start = self.epoch, self._start
        self.epoch, self._start = epoch + 1, 0
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else None
        for b in range(start, len(self)):
            rows = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            index = order[rows] if self.shuffle else rows
            self._current = (epoch, b + 1)
            yield tuple(np.array(a[index]) for a in self.dataset.arrays)

    def __iter__(self):
        import scratchgen as sg  # lazily: the data package does not need the engine to load
        for batch in self._batches():
            yield tuple(sg.tensor(a) for a in batch)

    def state_dict(self):
        """{seed, epoch, batch}: where the next batch comes from. Plain ints (checkpoint-safe)."""
        if self._current is not None and self._current[1] < len(self):
            epoch, batch = self._current      # mid-epoch: continue this epoch
        else:
            epoch, batch = self.epoch, self._start
        return {"seed": self.seed, "epoch": epoch, "batch": batch}

    def load_state_dict(self, state):
        self.seed, self.epoch, self._start = int(state["seed"]), int(state["epoch"]), int(state.get("batch", 0))
        self._current = None
