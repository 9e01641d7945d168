"""The token store: each split as one flat array of token ids on disk, read through a memory map.

``mozart dataset`` writes, beside each ``SPLIT.jsonl`` (the readable copy), ``SPLIT.bin``:
the ids of every record as ``<bos> words <eos>``, back to back, as little-endian uint16; and
``SPLIT.index.npy``: one row per record, ``(offset, length, notes)`` in tokens.  Training and
evaluation read windows straight from the memory map, so resident memory does not grow with
the corpus (the Lakh MIDI dataset is about 1B tokens: 2 GB on disk, nothing in RAM), and
bits per note stay exact because the notes are counted per record in the index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import MozartError

#: Ids fit 16 bits: the vocabulary has a few thousand words at most (1,466 at grid 24).
DTYPE = np.dtype("<u2")
#: Columns of the index.
OFFSET, LENGTH, NOTES = 0, 1, 2


class StoreWriter:
    """Appends records to ``SPLIT.bin`` and writes ``SPLIT.index.npy`` on close."""

    def __init__(self, folder: Path, split: str):
        self.folder, self.split = Path(folder), split
        self.file = open(self.folder / f"{split}.bin", "wb")
        self.rows: list[tuple[int, int, int]] = []
        self.offset = 0

    def add(self, ids: np.ndarray, notes: int) -> None:
        if ids.size and int(ids.max()) > np.iinfo(DTYPE).max:
            raise MozartError(f"token id {int(ids.max())} does not fit the store's 16 bits")
        self.file.write(ids.astype(DTYPE).tobytes())
        self.rows.append((self.offset, int(ids.size), int(notes)))
        self.offset += int(ids.size)

    def close(self) -> None:
        self.file.close()
        index = np.array(self.rows, dtype=np.int64).reshape(-1, 3)
        with open(self.folder / f"{self.split}.index.npy", "wb") as f:
            np.save(f, index)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TokenStore:
    """One split of a dataset's token store, memory-mapped (nothing is read until used)."""

    def __init__(self, data_dir: Path, split: str):
        data_dir = self.folder = Path(data_dir)
        bin_path, index_path = data_dir / f"{split}.bin", data_dir / f"{split}.index.npy"
        if not bin_path.is_file() or not index_path.is_file():
            raise MozartError(f"{data_dir}: no token store for {split} ({bin_path.name}, {index_path.name}); "
                              "rebuild the dataset with this version of `mozart dataset`")
        self.index = np.load(index_path)
        size = bin_path.stat().st_size // DTYPE.itemsize
        self.tokens = np.memmap(bin_path, dtype=DTYPE, mode="r", shape=(size,)) if size else np.zeros(0, DTYPE)
        if self.index.size and int(self.index[-1, OFFSET] + self.index[-1, LENGTH]) != size:
            raise MozartError(f"{bin_path}: {size} tokens, but its index describes "
                              f"{int(self.index[-1, OFFSET] + self.index[-1, LENGTH])}; rebuild the dataset")

    def __len__(self) -> int:
        """Number of records."""
        return int(self.index.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def notes(self) -> int:
        return int(self.index[:, NOTES].sum())

    def record(self, i: int) -> np.ndarray:
        """The ids of record ``i``: ``<bos> words <eos>`` (a view into the memory map)."""
        offset, length, _ = self.index[i]
        return self.tokens[offset: offset + length]
