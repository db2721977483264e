"""A cache of parsed data files, so that only the first load of a file pays for parsing it.

    array = load_parsed(path, parse, tag="amat-bits-1")   # parse(decoded bytes) -> ndarray

Entries live in <user cache>/parsed/ ($XDG_CACHE_HOME/scratchgen/parsed, else
~/.cache/scratchgen/parsed), one .npz per (source path, tag) holding the parsed array and a JSON
record: the source's path, size and sha256, the sha256 of its decoded (gunzipped) content and the
sha256 of the array's bytes.

Why it is safe to trust:
- A hit needs the sha256 of the source file's bytes *as they are now* to equal the recorded one,
  so an edited, replaced or re-downloaded source is never answered from a stale entry. Hashing the
  (usually gzipped) source costs far less than decoding and parsing it.
- The array's own sha256 is checked on every read, so a truncated or damaged entry is detected.
- Anything wrong with an entry (unreadable, stale, damaged, another format) means: parse the source
  again and rewrite the entry. An entry is never used when in doubt, and a bad source file is an
  error (raised by `parse`), never cached.
- Entries are written to a temporary file and renamed into place, so readers never see half of one.
- If the cache folder cannot be written, loading still works (it just parses every time).

Within one process, results are also kept in memory (read-only arrays), keyed by the source's
stat, so a split that is loaded again (every epoch's validation, test metrics then pictures) is not
re-read from disk.
"""
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .paths import cache_root, decode_bytes

log = logging.getLogger(__name__)

FORMAT = 1          # of the entry file itself; bump to orphan all existing entries
_memo = {}          # (source path, tag) -> (stat key, read-only array)


def cache_dir():
    """Where parsed-data entries live (it need not exist)."""
    return cache_root() / "parsed"


def entry_path(source, tag):
    """The cache file for `source` parsed as `tag`: named after the source and a hash of its
    absolute path, so files of the same name in different data roots do not share an entry."""
    source = Path(source).absolute()
    key = hashlib.sha256(f"{source}\0{tag}".encode()).hexdigest()[:16]
    return cache_dir() / f"{source.name}.{tag}.{key}.npz"


def clear_memo():
    """Forget the in-process copies (tests; or to force the next load to go to disk)."""
    _memo.clear()


def _stat_key(path):
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class ChecksumError(ValueError):
    """A data file whose content is not the published file's."""


def load_parsed(source, parse, tag, content_sha256=None):
    """The array that parse(decoded bytes of `source`) returns, from the cache when it holds a
    verified entry for the source's current content, else parsed now (and cached if possible).
    `tag` names the parser and the array's layout; change it when either changes.
    `content_sha256`: the published checksum of the decoded content; a file that differs raises
    ChecksumError and is never cached (an entry exists only for content that passed)."""
    source = Path(source).absolute()
    memo_key = (str(source), tag)
    stat_key = _stat_key(source)
    hit = _memo.get(memo_key)
    if hit is not None and hit[0] == stat_key:
        return hit[1]
    raw = source.read_bytes()
    source_sha = hashlib.sha256(raw).hexdigest()
    try:
        entry = entry_path(source, tag)
    except RuntimeError:                        # no home folder to put a cache in: just parse
        entry = None
    array = _read_entry(entry, source_sha, tag) if entry is not None else None
    if array is None:
        decoded = decode_bytes(raw, source)
        content_sha = hashlib.sha256(decoded).hexdigest() if decoded is not raw else source_sha
        if content_sha256 is not None and content_sha != content_sha256:
            raise ChecksumError(f"{source}: its content (sha256 {content_sha[:12]}...) is not the published "
                                f"file's ({content_sha256[:12]}...): corrupt or a different version")
        array = np.ascontiguousarray(parse(decoded))
        del decoded
        meta = {"format": FORMAT, "tag": tag, "source": str(source), "source_size": len(raw),
                "source_sha256": source_sha, "content_sha256": content_sha,
                "dtype": array.dtype.str, "shape": list(array.shape),
                "sha256": hashlib.sha256(array).hexdigest()}
        if entry is not None and _stat_key(source) == stat_key:     # unchanged while we read it
            _write_entry(entry, array, meta)
    array.flags.writeable = False
    _memo[memo_key] = (stat_key, array)
    return array


def read_meta(source, tag):
    """The JSON record of `source`'s entry (e.g. its content_sha256), or None without a readable one."""
    try:
        with np.load(entry_path(source, tag), allow_pickle=False) as z:
            return json.loads(z["meta"].tobytes())
    except Exception:
        return None


def _read_entry(entry, source_sha, tag):
    """The entry's verified array, or None if it is missing, stale or damaged in any way."""
    if not entry.is_file():
        return None
    try:
        with np.load(entry, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            if (meta.get("format"), meta.get("tag"), meta.get("source_sha256")) != (FORMAT, tag, source_sha):
                log.info("%s: stale parsed-data cache entry; rebuilding", entry)
                return None
            array = z["data"]
        if (array.dtype.str != meta["dtype"] or list(array.shape) != meta["shape"]
                or hashlib.sha256(np.ascontiguousarray(array)).hexdigest() != meta["sha256"]):
            log.warning("%s: damaged parsed-data cache entry (checksum mismatch); rebuilding", entry)
            return None
        return array
    except Exception as e:                      # any unreadable entry is just a miss
        log.warning("%s: unreadable parsed-data cache entry (%s); rebuilding", entry, e)
        return None


def _write_entry(entry, array, meta):
    """Write atomically (temporary file, then rename); an unwritable cache is not an error."""
    tmp = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, data=array, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        os.replace(tmp, entry)
        tmp = None
    except OSError as e:
        log.info("not caching parsed %s in %s (%s)", meta["source"], entry.parent, e)
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass
