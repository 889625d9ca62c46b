"""Deterministic test payloads shared by the Python interop peers.

Text payloads mix ASCII with 2-, 3- and 4-byte UTF-8 sequences and are sized
in *encoded bytes*, so the frame-length boundaries (125/126, 65535/65536)
are hit exactly on the wire (before compression).
"""

import random

# Frame-length boundaries of RFC 6455 §5.2 plus large messages that need
# many reads, a 64-bit length and (with deflate) many compressed blocks.
SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20]

MAX_MESSAGE = 32 << 20

_ALPHABET = list("abcdefghij klmnop ") + ["é", "ß", "ж", "€", "✓", "漢", "𝄞", "😀"]
_BLOCK_BYTES = 1 << 20


def _text_block(seed):
    rng = random.Random(seed)
    out = []
    size = 0
    while size < _BLOCK_BYTES:
        chunk = "".join(rng.choices(_ALPHABET, k=4096))
        out.append(chunk)
        size += len(chunk.encode("utf-8"))
    return "".join(out)


_TEXT_BLOCK = None


def text_payload(n):
    """A str whose UTF-8 encoding is exactly ``n`` bytes, mostly non-ASCII-rich."""
    global _TEXT_BLOCK
    if _TEXT_BLOCK is None:
        _TEXT_BLOCK = _text_block(6455)
    parts = []
    remaining = n
    # Whole blocks first (each block's byte length is known).
    block_bytes = len(_TEXT_BLOCK.encode("utf-8"))
    while remaining >= block_bytes:
        parts.append(_TEXT_BLOCK)
        remaining -= block_bytes
    # Then characters from the block while they fit, then ASCII padding
    # (at most 3 bytes) so the total is exact.
    tail = []
    for ch in _TEXT_BLOCK:
        w = len(ch.encode("utf-8"))
        if w > remaining:
            break
        tail.append(ch)
        remaining -= w
    tail.append("x" * remaining)
    parts.append("".join(tail))
    s = "".join(parts)
    assert len(s.encode("utf-8")) == n, (len(s.encode("utf-8")), n)
    return s


def binary_payload(n):
    """``n`` bytes: a mix of random (incompressible) and patterned data."""
    rng = random.Random(7692)
    block = rng.randbytes(32 << 10) + bytes(range(256)) * 128
    reps = n // len(block) + 1
    return (block * reps)[:n]
