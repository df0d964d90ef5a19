"""Create a store from a window table and write it shard by shard, marking each shard done last.

Every array is preallocated from the window table (never appended or resized), so shard s of a
store is a fixed record range that exactly one writer owns. A shard is written once, whole, in
one zarr write per array (zarr-python has never supported safe partial shard writes: two
writers in one shard silently lose data), then its `shard_done` marker is set. A restart with
the same parameters opens the existing store and writes only the shards whose marker is unset;
rank r of R takes a disjoint, contiguous range of shards (`StoreAttrs.rank_shards`).

Crash safety, moment by moment (docs/reliability.md): an un-sharded writer holds the store's
lock for the whole run, each rank of a sharded run its own rank lock; creation happens under a
`had.creating` marker (a kill leaves a folder the rerun recognises as ours and recreates), and in
a sharded run under a short setup lock, so the first rank to arrive creates the store and the
others open it; zarr's local store writes each shard file and `zarr.json` through a temporary
file and a rename; a shard counts only once its marker is set, and a shard without its marker is
deleted before it is written again (on an object store a half-written one is never trusted);
`complete` is written last, by the last rank to finish (or `had-cache finalize`). Every inner
chunk carries a crc32c checksum (the shard index its own), and every chunk is written even when
it equals the fill value, so a reader can tell a missing or damaged shard from data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from had_cache import schema
from had_cache.codecs import FeatureCodec
from had_cache.reader import Location, StoreLike, is_store, load_codecs, read_attrs
from had_cache.schema import StoreError
from had_cache.windows import WindowTable
from had_common.distributed import World
from had_common.errors import ConfigError
from had_common.files import disk_full_guard
from had_common.lock import FileLock, Holder, LockHeldError, read_holder

WRITE_CONFIG = {"write_empty_chunks": True}
"""Every chunk of a written range exists on disk, so a missing chunk file is corruption."""
RESUME_ADVICE = "free space and rerun the same command: it resumes from the last shard written"
SETUP_WAIT_S = 600.0
"""How long a rank waits for another rank of its run to finish creating (or finalising) the
store; creation writes the window index, seconds even for hg38."""

COMPRESSOR = ("zstd", 1)
"""(codec, level) of every array's inner chunks, chosen by measurement on real features
(docs/benchmarks.md, "Compressors"); recorded in each array's zarr.json."""


def compressors(attrs: schema.StoreAttrs) -> list[object]:
    """The codec chain of each (inner) chunk after serialisation: the compressor, then the
    checksum (if the store has them). Schema 2 stores were written with zstd level 0."""
    name, level = COMPRESSOR if attrs.version[0] >= 3 else ("zstd", 0)
    chain: list[object] = (
        [ZstdCodec(level=level, checksum=False)]
        if name == "zstd"
        else [BloscCodec(cname=name, clevel=level, shuffle="shuffle")]
    )
    if attrs.checksum == schema.CHECKSUM:
        chain.append(Crc32cCodec())
    return chain


def _is_done(markers: zarr.Array, shard: int) -> bool:
    try:
        return bool(markers[shard])
    except Exception:  # zarr raises ValueError (checksum) or codec errors on a damaged file
        return False


def done_markers(
    group: zarr.Group, attrs: schema.StoreAttrs, share: range | None = None
) -> np.ndarray:
    """The done markers of `share` (default: every shard); a damaged one reads as not done."""
    share = range(attrs.n_shards) if share is None else share
    markers = group[attrs.done_array]
    if not len(share):
        return np.zeros(0, dtype=bool)
    try:
        return np.asarray(markers[share.start : share.stop], dtype=bool)
    except Exception:  # a damaged marker (checksum): that shard is simply not done
        return np.array([_is_done(markers, s) for s in share], dtype=bool)


class KeyLock:
    """`FileLock`'s rules for a store that is not a folder (an object store, a zarr Store): a
    lock object naming its holder, refreshed with a timestamp inside it (objects have no mtime
    to touch). Creation uses the store's `set_if_not_exists`: exclusive on zarr's memory and
    local stores, check-then-write on fsspec stores (S3 and most object stores offer fsspec no
    portable exclusive create), so there two writers started within the same second may both
    pass; docs/reliability.md says so."""

    def __init__(self, where: Location, key: str, purpose: str) -> None:
        self.where, self.key, self.purpose = where, key, purpose
        self.holder: Holder | None = None

    def _payload(self, me: Holder) -> bytes:
        return json.dumps(asdict(me) | {"refreshed": time.time()}).encode()

    def acquire(self) -> KeyLock:
        me = Holder.me(self.purpose)
        for _ in range(3):
            found = read_key_holder(self.where, self.key)
            if found is not None:
                holder, age = found
                if not (holder.is_me() or holder.is_stale(age)):
                    raise LockHeldError(_in_use(self.where, self.key, holder))
                self.where.delete(self.key)
            self.where.set(self.key, self._payload(me), exclusive=True)
            mine = read_key_holder(self.where, self.key)
            if mine is not None and mine[0] == me:
                self.holder = me
                return self
        raise LockHeldError(f"cannot lock {self.where}: it keeps being taken by another process")

    def refresh(self) -> None:
        if self.holder is not None:
            self.where.set(self.key, self._payload(self.holder))

    def release(self) -> None:
        found = read_key_holder(self.where, self.key)
        if self.holder is not None and found is not None and found[0] == self.holder:
            self.where.delete(self.key)
        self.holder = None

    def __enter__(self) -> KeyLock:
        return self.acquire() if self.holder is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


Lock = FileLock | KeyLock
Prepare = Callable[[schema.StoreAttrs], tuple[schema.StoreAttrs, dict[str, np.ndarray]]]
"""Called once, by the process that creates a store: its final attributes and store-level
arrays (see `StoreWriter.open_or_create`)."""


def read_key_holder(where: Location, key: str) -> tuple[Holder, float] | None:
    """(holder, seconds since it last refreshed) of a lock object, None if there is none."""
    raw = where.get(key)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        refreshed = float(data.pop("refreshed"))
        known = {k: v for k, v in data.items() if k in Holder.__dataclass_fields__}
        return Holder(**known), time.time() - refreshed
    except (ValueError, TypeError, KeyError):
        return None


def _in_use(where: Location, key: str, holder: Holder) -> str:
    return (
        f"{where} is in use: {holder.describe()}; wait for it to finish, or delete "
        f"{_key_path(where, key)} if that process is gone"
    )


def _key_path(where: Location, key: str) -> str:
    return str(where.local / key) if where.local is not None else f"{where}/{key}"


def make_lock(where: Location, key: str, purpose: str) -> Lock:
    """The lock `key` of a store: a file in a folder, an object elsewhere."""
    if where.local is not None:
        return FileLock(where.local / key, purpose)
    return KeyLock(where, key, purpose)


def live_holder(where: Location, key: str) -> Holder | None:
    """The holder of lock `key` if it is another process that is (or may be) alive."""
    if where.local is not None:
        path = where.local / key
        holder = read_holder(path)
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
    else:
        found = read_key_holder(where, key)
        holder, age = found if found is not None else (None, 0.0)
    if holder is None or holder.is_me() or holder.is_stale(age):
        return None
    return holder


RANK_LOCK = re.compile(rf"^{re.escape(schema.RANK_LOCK_PREFIX)}(\d+)-of-(\d+)$")


def _rank_locks(where: Location) -> list[tuple[str, int, int]]:
    """(key, rank, world size) of every rank lock in the store."""
    found = []
    for name in where.top_names():
        match = RANK_LOCK.match(name)
        if match:
            found.append((name, int(match[1]), int(match[2])))
    return found


def _refuse_other_writers(where: Location, world: World) -> None:
    """After taking our own lock: refuse a live writer whose records may overlap ours (an
    un-sharded run against any rank, a rank against an un-sharded run or a run of another
    world size). Ranks of one run own disjoint shards and do not exclude each other."""
    others = [] if not world.distributed else [schema.LOCK_FILE]
    for key, _, size in _rank_locks(where):
        if not world.distributed or size != world.world_size:
            others.append(key)
    for key in others:
        holder = live_holder(where, key)
        if holder is not None:
            raise LockHeldError(_in_use(where, key, holder))


def lock_store(
    path: StoreLike | Location, overwrite: bool = False, world: World | None = None
) -> Lock:
    """Take this process's lock of the store at `path` (creating its folder): `had.lock` for an
    un-sharded run, `had.lock.rank-R-of-W` for rank R of W. A live writer that could overlap is
    refused (named); a stale lock is taken over. The writer keeps it until `close`."""
    where = Location(path)
    world = world or World()
    if world.distributed and overwrite:
        raise ConfigError(
            "--overwrite cannot be combined with several ranks (a late rank would delete what "
            "the others wrote); delete the store first, or run --overwrite without ranks"
        )
    if store_state(where) == "other":
        check_target(where, overwrite)  # raises, naming what is there
    key = schema.rank_lock(world.rank, world.world_size) if world.distributed else schema.LOCK_FILE
    try:
        with disk_full_guard(_guard_path(where), "locking the store", then=RESUME_ADVICE):
            if where.local is not None:
                where.local.mkdir(parents=True, exist_ok=True)
            lock = make_lock(where, key, "had-cache extract").acquire()
    except PermissionError as err:
        raise StoreError(f"--out {where}: cannot write there ({err.strerror})") from None
    try:
        _refuse_other_writers(where, world)
    except BaseException:
        lock.release()
        raise
    return lock


def _setup_lock(where: Location, wait_s: float = SETUP_WAIT_S) -> Lock:
    """The short lock under which a sharded store is created or finalised; waits for a rank of
    the same run that holds it (the lock of a dead holder is taken over)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return make_lock(where, schema.SETUP_LOCK, "had-cache extract (setup)").acquire()
        except LockHeldError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _guard_path(where: Location) -> Path | str:
    return where.local if where.local is not None else str(where)


def store_state(path: StoreLike | Location) -> str:
    """`absent` (nothing, an empty folder, or only locks left behind), `creating` (a creation
    that was interrupted: ours, recreated), `store`, or `other` (never touched)."""
    where = Location(path)
    if where.local is not None:
        local = where.local
        if not local.exists():
            return "absent"
        if local.is_dir():
            names = [p.name for p in local.iterdir()]
            if all(n.startswith(schema.LOCK_FILE) for n in names):
                return "absent"
            if schema.CREATING_MARKER in names:
                return "creating"
            if _interrupted_before_markers(local, names):
                return "creating"
        return "store" if is_store(where) else "other"
    names = where.top_names()
    if all(n.startswith(schema.LOCK_FILE) for n in names):
        return "absent"
    if schema.CREATING_MARKER in names:
        return "creating"
    return "store" if is_store(where) else "other"


def _interrupted_before_markers(path: Path, names: list[str]) -> bool:
    """A creation killed by an older had (before the creation marker): a Zarr group without
    attributes holding nothing but arrays of our schema's names (and lock files)."""
    if "zarr.json" not in names:
        return False
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    if meta.get("node_type") != "group" or meta.get("attributes"):
        return False
    ours = {schema.SEQ, schema.MASK, schema.SHARD_DONE, schema.CHUNK_DONE, *schema.INDEX_ARRAYS}
    ours |= {schema.LOCUS, schema.OFFSET}
    return all(
        n == "zarr.json"
        or n.startswith(schema.LOCK_FILE)
        or ((path / n).is_dir() and (n in ours or n.startswith(schema.TEACHER_PREFIX)))
        for n in names
    )


def _clear(where: Location) -> None:
    """Delete everything in a store of ours but the locks."""
    if where.local is not None:
        for child in where.local.iterdir():
            if child.name.startswith(schema.LOCK_FILE):
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        return
    for key in where.list_keys():
        if not key.startswith(schema.LOCK_FILE):
            where.delete(key)


class StoreWriter:
    """Writes the shards of one store (this rank's share of them); `open_or_create` is the only
    way to get one. Use it as a context manager (or call `close`) to release the lock."""

    def __init__(
        self,
        group: zarr.Group,
        attrs: schema.StoreAttrs,
        where: Location,
        lock: Lock,
        world: World | None = None,
    ) -> None:
        self.group = group
        self.attrs = attrs
        self.where = where
        self.path = _guard_path(where)
        self.lock = lock
        self.world = world or World()
        self.codecs: dict[int, FeatureCodec] = load_codecs(group, attrs)

    @classmethod
    def open_or_create(
        cls,
        path: StoreLike | Location,
        attrs: schema.StoreAttrs,
        table: WindowTable,
        overwrite: bool = False,
        lock: Lock | None = None,
        world: World | None = None,
        prepare: Prepare | None = None,
    ) -> StoreWriter:
        """Resume a store of the same extraction, or create it; refuse to clobber a different one.

        `prepare(attrs)` runs only when this process creates the store, under the setup lock in
        a sharded run (so exactly once per store): it returns the attributes to write and the
        store-level arrays (a codec's fitted parameters). Every other rank, and every resume,
        reads them back from the store.

        `overwrite` replaces only a store of ours: any other file or folder at `path` (a
        mistyped `--out ~/project`, say) is refused untouched. A second writer is refused
        (the lock names the first); a lock left by a killed writer is taken over. Ranks of a
        sharded run (`world`) create the store once: whichever takes the setup lock first.
        """
        where = Location(path)
        world = world or World()
        lock = lock or lock_store(where, overwrite, world)
        try:
            setup = _setup_lock(where) if world.distributed else None
            try:
                return cls._open_or_create(where, attrs, table, overwrite, lock, world, prepare)
            finally:
                if setup is not None:
                    setup.release()
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_or_create(
        cls,
        where: Location,
        attrs: schema.StoreAttrs,
        table: WindowTable,
        overwrite: bool,
        lock: Lock,
        world: World,
        prepare: Prepare | None = None,
    ) -> StoreWriter:
        state = store_state(where)  # again, now that no one else creates it
        if state == "store" and not overwrite:
            existing = read_attrs(where)
            check_writable_version(where, existing)
            if not existing.same_extraction(attrs):
                raise StoreError(
                    f"{where} already holds a different extraction (other FASTA, teacher or "
                    "options); pass --overwrite to replace it or choose another --out"
                )
            return cls(where.open_group("r+"), existing, where, lock, world)
        if state != "absent":
            _clear(where)  # an interrupted creation, or --overwrite of a store of ours
        parameters: dict[str, np.ndarray] = {}
        if prepare is not None:
            attrs, parameters = prepare(attrs)
        with disk_full_guard(
            _guard_path(where), "creating the store", then="free space and rerun the same command"
        ):
            return cls._create(where, attrs, table, lock, world, parameters)

    @classmethod
    def _create(
        cls,
        where: Location,
        attrs: schema.StoreAttrs,
        table: WindowTable,
        lock: Lock,
        world: World,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> StoreWriter:
        if where.local is not None:
            (where.local / schema.CREATING_MARKER).touch()
        else:
            where.set(schema.CREATING_MARKER, b"")
        group = where.open_group("a")
        chain = compressors(attrs)
        for name, (shape, dtype, chunks) in schema.array_specs(attrs).items():
            group.create_array(
                name,
                shape=shape,
                dtype=dtype,
                chunks=chunks,
                shards=schema.shard_shape(attrs, name, chunks),
                fill_value=0,
                compressors=chain,
            )
        # The window index is known up front; writing it now (whole shards, by the one process
        # that creates the store) makes a partial store inspectable.
        for name, values in table.index_arrays().items():
            if name in schema.index_arrays(attrs):
                group[name].with_config(WRITE_CONFIG)[:] = values
        # Store-level arrays (a codec's rotation, PCA mean and basis): one chunk each.
        for name, values in (parameters or {}).items():
            array = group.create_array(
                name, shape=values.shape, dtype=values.dtype, fill_value=0, compressors=chain
            )
            array.with_config(WRITE_CONFIG)[...] = values
        group.attrs[schema.ATTRS_KEY] = attrs.to_json()
        if where.local is not None:
            (where.local / schema.CREATING_MARKER).unlink()
        else:
            where.delete(schema.CREATING_MARKER)
        return cls(group, attrs, where, lock, world)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.lock.release()

    def pending_shards(self) -> list[int]:
        """Shards not yet done in this rank's contiguous share of the store."""
        share = self.attrs.rank_shards(self.world.rank, self.world.world_size)
        done = done_markers(self.group, self.attrs, share)
        return [share.start + int(i) for i in np.flatnonzero(~done)]

    def all_pending_shards(self) -> list[int]:
        """Shards of the whole store (every rank's) whose marker is unset."""
        return [int(s) for s in np.flatnonzero(~done_markers(self.group, self.attrs))]

    def shard_bytes(self, shard: int) -> int:
        """Uncompressed payload of one shard (an upper bound on what it takes on disk)."""
        rows = self.attrs.shard_slice(shard)
        return (rows.stop - rows.start) * schema.record_bytes(self.attrs)

    def _shard_key(self, name: str, shard: int) -> str:
        array = self.group[name]
        coords = (shard,) + (0,) * (array.ndim - 1)
        return f"{name}/{array.metadata.chunk_key_encoding.encode_chunk_key(coords)}"

    def write_shard(
        self,
        shard: int,
        seq: np.ndarray,
        mask: np.ndarray,
        teacher: dict[int, np.ndarray],
        predictions: dict[str, np.ndarray] | None = None,
    ) -> int:
        """Write one shard's records (features per stored layer, encoded here by the store's
        codec, and the teacher's predictions by array name where the store keeps them), each
        array's shard in one write, then its done marker. Whatever an earlier, interrupted writer left of this shard is deleted
        first: a shard without its marker is never trusted, nor read back.

        Returns the payload bytes. A full disk is a one-line DiskFullError naming the space the
        shards still to write need.
        """
        rows = self.attrs.shard_slice(shard)
        expected = rows.stop - rows.start
        if sorted(teacher) != sorted(self.attrs.teacher.layers):
            raise ValueError(f"shard {shard} needs layers {self.attrs.teacher.layers}")
        if not len(seq) == len(mask) == expected or any(
            len(f) != expected for f in teacher.values()
        ):
            raise ValueError(f"shard {shard} needs {expected} records, got {len(seq)}")
        wanted = schema.PREDICTION_ARRAYS if self.attrs.has_predictions else ()
        if sorted(predictions or {}) != sorted(wanted):
            raise ValueError(f"shard {shard} needs the prediction arrays {list(wanted)}")

        def needed() -> int:
            return sum(self.shard_bytes(s) for s in self.pending_shards())

        data = {schema.SEQ: seq, schema.MASK: mask}
        for layer, feats in teacher.items():
            data |= self.encode(layer, rows.start, feats)
        data |= {
            name: values.astype(self.group[name].dtype, copy=False)
            for name, values in (predictions or {}).items()
        }
        with disk_full_guard(self.path, f"writing shard {shard}", needed, then=RESUME_ADVICE):
            g = self.group
            for name, values in data.items():
                self.where.delete(self._shard_key(name, shard))
                g[name].with_config(WRITE_CONFIG)[rows] = values
            g[self.attrs.done_array][shard] = True
        self.lock.refresh()
        return sum(v.nbytes for v in data.values())

    def encode(self, layer: int, first_record: int, feats: np.ndarray) -> dict[str, np.ndarray]:
        """Layer `layer`'s features of the records from `first_record` on, as the arrays the
        store holds (by name); stochastic rounding draws from (codec seed, layer, first record),
        so a rerun writes the same bytes."""
        codec = self.codecs[layer]
        seed = int(getattr(codec, "seed", 0))
        rng = np.random.Generator(np.random.PCG64([seed, layer, first_record]))
        encoded = codec.encode(feats, rng)
        dtypes = schema.feature_arrays(self.attrs, layer)
        names = {key: schema.feature_array(layer, key) for key in encoded}
        return {
            names[key]: values.astype(dtypes[names[key]][0], copy=False)
            for key, values in encoded.items()
        }

    def finalize(self) -> bool:
        """Mark the store complete if every shard is done (the last write of an extraction).
        In a sharded run every rank calls it when its share is done; under the setup lock, so
        exactly the last rank to finish marks the store."""
        setup = _setup_lock(self.where) if self.world.distributed else None
        try:
            return self._finalize()
        finally:
            if setup is not None:
                setup.release()

    def _finalize(self) -> bool:
        if not done_markers(self.group, self.attrs).all():
            return False
        # The store's own attributes (written by whichever rank created it), marked complete
        # and written as this schema version.
        current = dict(self.where.open_group("r").attrs)[schema.ATTRS_KEY]
        if current.get("complete"):  # another rank that finished at the same time did it
            self.attrs = schema.StoreAttrs.from_json(current, str(self.where))
            return True
        attrs = current | {"complete": True, "schema_version": schema.SCHEMA_VERSION}
        with disk_full_guard(self.path, "marking the store complete", then=RESUME_ADVICE):
            self.group.attrs[schema.ATTRS_KEY] = attrs
        self.attrs = schema.StoreAttrs.from_json(attrs, str(self.where))
        return True


def check_writable_version(where: Location, attrs: schema.StoreAttrs) -> None:
    """Refuse to resume a store of an older layout (read-only to this version)."""
    if attrs.version[0] < schema.parse_version(schema.SCHEMA_VERSION)[0]:
        raise StoreError(
            f"{where} was written with schema {attrs.schema_version}; this had reads it but "
            f"writes and resumes only schema {schema.SCHEMA_VERSION} (sharded) stores: finish "
            "it with the had version that began it, or pass --overwrite to extract it again"
        )


def finalize_store(path: StoreLike | Location) -> schema.StoreAttrs:
    """`had-cache finalize`: mark a store whose every shard is done complete (what the last rank
    of a sharded run does; for job arrays whose last task was killed after its shards)."""
    where = Location(path)
    attrs = read_attrs(where)
    check_writable_version(where, attrs)
    if attrs.complete:
        return attrs
    with make_lock(where, schema.SETUP_LOCK, "had-cache finalize"):
        group = where.open_group("r+")
        done = done_markers(group, attrs)
        if not done.all():
            missing = np.flatnonzero(~done)
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise StoreError(
                f"{where}: {len(missing)} of {attrs.n_shards} shards are not written yet "
                f"({shown}); rerun the extraction (the ranks owning them) first"
            )
        writer = StoreWriter(group, attrs, where, make_lock(where, schema.LOCK_FILE, ""))
        writer._finalize()
        return writer.attrs


def unmark_shards(path: StoreLike | Location, shards: list[int]) -> list[int]:
    """Clear the done markers of `shards` (damaged ones) and the `complete` attribute, under the
    store's lock, so that rerunning the same extraction rewrites exactly those shards."""
    where = Location(path)
    if not shards:
        return []
    lock = lock_store(where)
    try:
        lock.purpose = "had-cache verify --repair"
        attrs = read_attrs(where)
        group = where.open_group("r+")
        for shard in shards:
            group[attrs.done_array][shard] = False
        group.attrs[schema.ATTRS_KEY] = attrs.to_json() | {"complete": False}
    finally:
        lock.release()
    return list(shards)


def check_target(path: StoreLike | Location, overwrite: bool) -> None:
    """Refuse an `--out` that can be neither resumed nor replaced, before any work is done:
    an existing path that is not a had-cache store (with `overwrite`: not deletable), or one
    whose nearest existing parent is not a writable folder."""
    where = Location(path)
    if where.local is not None:
        _check_parent(where.local)
    if store_state(where) != "other":
        return
    if overwrite:
        remove_store(where)  # raises: it is not ours
    raise StoreError(
        f"--out {where} is {_what(where)}; extraction resumes or (--overwrite) replaces only a "
        "had-cache store: choose another --out"
    )


def _what(where: Location) -> str:
    if where.local is not None and where.local.is_file():
        return "a file"
    return f"a {'folder' if where.local is not None else 'location'} that is not a had-cache store"


def _check_parent(path: Path) -> None:
    for parent in Path(path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise StoreError(f"--out {path}: {parent} is a file, not a folder")
            if not _writable(parent) and not path.exists():
                raise StoreError(f"--out {path}: cannot create it, {parent} is not writable")
            return


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def remove_store(path: StoreLike | Location) -> None:
    """Delete the store at `path`, refusing anything that is not a had-cache store."""
    where = Location(path)
    if store_state(where) not in ("store", "creating"):
        raise StoreError(
            f"--overwrite refuses to delete {where}: it is {_what(where)}; "
            "--overwrite replaces only a store written by had-cache; choose another --out"
        )
    with make_lock(where, schema.LOCK_FILE, "had-cache extract"):
        _clear(where)


ARRAY_GROUP_KEY = "had_array_group"
"""Attribute naming a plain array group written by `ArrayGroupWriter` (not a had-cache store)."""
ArraySpec = tuple[tuple[int, ...], Any, tuple[int, ...]]
"""(shape, dtype, chunks) of one array of a group."""


class ArrayGroupWriter:
    """A plain Zarr group of named arrays, for outputs that are not stores (`had-train embed`).

    The group is built under `<path>.partial`, filled block by block with `write`, and renamed
    to `path` by `close`, which sets the attributes last: a path that exists holds a whole
    group, and a killed run leaves only the `.partial` folder, which the next run replaces.
    Here so that zarr stays behind the reader and writer (tests/test_layering.py).
    """

    def __init__(self, path: Path, arrays: dict[str, ArraySpec], attrs: dict[str, Any]) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise StoreError(f"{self.path} already exists; choose another --out or delete it")
        self.partial = self.path.with_name(self.path.name + ".partial")
        if self.partial.exists():
            remove_partial_group(self.partial)
        self.group = zarr.open_group(str(self.partial), mode="w-")
        self.group.attrs[ARRAY_GROUP_KEY] = {"complete": False}
        for name, (shape, dtype, chunks) in arrays.items():
            self.group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, fill_value=0)
        self.attrs = attrs

    def write(self, name: str, rows: slice, values: np.ndarray) -> None:
        """Write `values` into rows `rows` of array `name` (whole chunks are cheapest)."""
        self.group[name][rows] = values

    def close(self) -> Path:
        """Set the attributes (with `complete`) and move the group into place."""
        self.group.attrs.update(self.attrs | {ARRAY_GROUP_KEY: {"complete": True}})
        os.replace(self.partial, self.path)
        return self.path


def remove_partial_group(path: Path) -> None:
    """Delete a `.partial` group left by a killed `ArrayGroupWriter`, and nothing else."""
    try:
        group = zarr.open_group(str(path), mode="r")
        ours = ARRAY_GROUP_KEY in dict(group.attrs)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError):
        ours = False
    if not ours:
        raise StoreError(
            f"{path} exists and is not a partial output of had; move it away or choose another --out"
        )
    shutil.rmtree(path)
