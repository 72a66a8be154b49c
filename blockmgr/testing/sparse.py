"""A sparse byte store: reads as zeros where nothing was written, costs memory only for
chunks that were. Lets the in-memory fake hold 1-3 GiB volumes in a few KiB."""

from __future__ import annotations

from blockmgr import exception

CHUNK = 64 * 1024


class SparseBytes:

    def __init__(self, size: int):
        self.size = size
        self._chunks: dict[int, bytearray] = {}

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise exception.InvalidInput(
                reason="range %d+%d is outside a %d-byte object" % (offset, length, self.size))

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        pos = 0
        while pos < len(data):
            index, within = divmod(offset + pos, CHUNK)
            take = min(CHUNK - within, len(data) - pos)
            chunk = self._chunks.setdefault(index, bytearray(CHUNK))
            chunk[within:within + take] = data[pos:pos + take]
            pos += take

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        out = bytearray()
        while len(out) < length:
            index, within = divmod(offset + len(out), CHUNK)
            take = min(CHUNK - within, length - len(out))
            chunk = self._chunks.get(index)
            out += chunk[within:within + take] if chunk is not None else bytes(take)
        return bytes(out)

    def resize(self, size: int) -> None:
        """Grow (new space reads as zeros) or shrink (data past the end is dropped)."""
        if size < self.size:
            last = -(-size // CHUNK)
            for index in [i for i in self._chunks if i >= last]:
                del self._chunks[index]
            if size % CHUNK and (size // CHUNK) in self._chunks:
                chunk = self._chunks[size // CHUNK]
                chunk[size % CHUNK:] = bytes(CHUNK - size % CHUNK)
        self.size = size

    def copy(self, size: int | None = None) -> "SparseBytes":
        """An independent copy, optionally grown to ``size``."""
        clone = SparseBytes(self.size)
        clone._chunks = {i: bytearray(c) for i, c in self._chunks.items()}
        if size is not None:
            clone.resize(size)
        return clone
