"""Strict parsing of `.amat` text: one image per line, 784 space-separated 0/1 values.

    values = parse_amat_values(text, path)   # uint8 (rows, 784) of 0/1

Two paths, same result:
- The fixed-width fast path: the files as published are exactly "d d ... d\\n" per line, 2 bytes
  per value, so the whole file is a (rows, 784) grid of (digit, separator) byte pairs. Read as
  little-endian uint16 each pair is 0x20 0x3X (0x0A 0x3X at a line end), so validating every byte
  of every line is one comparison per pair.
- The exact path, for anything else: other whitespace (tabs, CRLF, a missing final newline,
  blank lines) is accepted, and a malformed file gets an error naming the file, the line and what
  is wrong. It is slower, but only files that are not in the canonical layout ever reach it.
"""
import numpy as np

PIXELS = 784
_ZERO, _ONE, _SPACE, _TAB, _CR, _LF = b"01 \t\r\n"
_LINE = 2 * PIXELS                       # bytes per canonical line
_PAIR_SPACE = _SPACE << 8 | _ONE         # a pair (digit, ' ') with its low bit forced to 1
_PAIR_LF = _LF << 8 | _ONE               # a pair (digit, '\n')


def parse_amat_values(data, path="<bytes>"):
    """uint8 (rows, 784) of 0/1 from .amat text, every line validated; a malformed line is a
    ValueError naming `path` and the line."""
    fast = _parse_fixed_width(data)
    return fast if fast is not None else _parse_exact(data, path)


def _parse_fixed_width(data):
    """The values if `data` is exactly rows of "d d ... d\\n" with d in 0/1, else None."""
    if not data or len(data) % _LINE:
        return None
    pairs = np.frombuffer(data, "<u2").reshape(-1, PIXELS)
    low = pairs | 1                       # maps the pairs of '0' and '1' to the same value
    if not ((low[:, :-1] == _PAIR_SPACE).all() and (low[:, -1] == _PAIR_LF).all()):
        return None
    digits = np.frombuffer(data, np.uint8)[0::2].reshape(-1, PIXELS)
    return digits & 1                     # '0' = 0x30, '1' = 0x31: the value is the low bit


def _parse_exact(data, path):
    """Byte-level parse of any whitespace layout; precise errors for malformed input."""
    a = np.frombuffer(data, np.uint8)
    digit = (a == _ZERO) | (a == _ONE)
    bad = ~(digit | (a == _SPACE) | (a == _TAB) | (a == _CR) | (a == _LF))
    bad[:-1] |= digit[:-1] & digit[1:]          # a multi-digit token such as "10" or "11"
    if bad.any():
        at = int(np.argmax(bad))
        line = int(np.count_nonzero(a[:at] == _LF)) + 1
        raise ValueError(f"{path}: line {line}: unexpected {bytes(a[at:at + 2])!r}; "
                         "expected only 0/1 values separated by spaces")
    # Lines are a[start:end+1]; a last line may lack its newline.
    ends = np.flatnonzero(a == _LF)
    if len(a) and a[-1] != _LF:
        ends = np.append(ends, len(a) - 1)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.intp)
    per_line = np.add.reduceat(digit, starts, dtype=np.int64) if len(a) else np.zeros(0, np.int64)
    wrong = np.flatnonzero((per_line != PIXELS) & (per_line != 0))   # blank lines are allowed
    if len(wrong):
        raise ValueError(f"{path}: line {wrong[0] + 1} has {per_line[wrong[0]]} values, "
                         f"expected {PIXELS}")
    return (a[digit] - _ZERO).reshape(-1, PIXELS)
