"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing for the append-only ballot log.

Leaves and nodes are domain-separated (0x00 / 0x01 prefixes) so a leaf can never be passed
off as an inner node. Trees are the RFC's left-balanced shape: a tree of n > 1 leaves splits
at k, the largest power of two smaller than n.

Functions take *leaf hashes* (``leaf_hash(entry)``), not raw entries, so the log can store
32-byte hashes only. Proof generation over a leaf list touches each leaf hash once (O(n));
verification and the incremental ``MerkleFrontier`` are O(log n).

Proofs from stored nodes, in O(log n): every hash a proof or a root needs is MTH(D[a:b]) of a
range that RFC 9162 splits out, and such a range is a run of *perfect aligned subtrees*
(:class:`Subtree`). ``inclusion_ranges`` / ``consistency_ranges`` name the ranges,
``subtrees_of`` the O(log n) perfect subtrees they are made of, and ``range_hashes`` folds
those subtrees' roots, read from wherever they are kept, back into the proof. The service
keeps them in the database (``voting.ballot_log``); an offline auditor can keep them in a dict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): the hash of one log entry."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an inner node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]).

    Computed bottom-up: pairing neighbours level by level and carrying an odd last node up
    unchanged builds exactly the RFC 9162 left-balanced tree, in n - 1 hashes and without
    recursion.
    """
    if start == end:
        return EMPTY_ROOT
    level = list(leaf_hashes[start:end])
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [sha256(_NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of all ``leaf_hashes``; SHA-256(b"") for an empty tree."""
    return _subtree_root(leaf_hashes, 0, len(leaf_hashes))


class Subtree(NamedTuple):
    """A perfect aligned subtree: the ``2**level`` leaves from ``index * 2**level`` on.

    Level 0 is a leaf (``index`` is the leaf index); its root is the leaf hash.
    """

    level: int
    index: int

    @property
    def start(self) -> int:
        """The first leaf index under this subtree."""
        return self.index << self.level

    @property
    def end(self) -> int:
        """One past the last leaf index under this subtree."""
        return (self.index + 1) << self.level


def perfect_subtrees(start: int, end: int) -> list[Subtree]:
    """The perfect aligned subtrees that make up D[start:end], largest (leftmost) first.

    MTH(D[start:end]) is their roots folded from the right: ``node_hash(r1, node_hash(r2, ...))``.
    That holds for every range a root or an RFC 9162 proof needs, i.e. [0, n) and ranges whose
    start is a multiple of the largest power of two not above their size; other ranges raise
    ``ValueError``. An empty range has no subtrees (its MTH is ``EMPTY_ROOT``).
    """
    if not 0 <= start <= end:
        raise ValueError(f"no range [{start}, {end})")
    size = end - start
    if size and start % (1 << (size.bit_length() - 1)):
        raise ValueError(f"[{start}, {end}) is not a run of aligned perfect subtrees")
    subtrees = []
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            subtrees.append(Subtree(level, start >> level))
            start += 1 << level
    return subtrees


def inclusion_ranges(index: int, tree_size: int) -> list[tuple[int, int]]:
    """The leaf ranges [start, end) whose MTHs are PATH(index, D[0:tree_size]), leaf side first.

    RFC 9162 §2.1.3.1. Raises ``ValueError`` unless 0 <= index < tree_size.
    """
    if not 0 <= index < tree_size:
        raise ValueError(f"no leaf {index} in a tree of size {tree_size}")
    # Walk down from the root; each level contributes the subtree we do not enter. The RFC
    # lists them from the leaf upwards, hence the final reversal.
    ranges: list[tuple[int, int]] = []
    start, end = 0, tree_size
    while end - start > 1:
        mid = start + _split_point(end - start)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start = mid
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges [start, end) whose MTHs are PROOF(old_size, D[0:new_size]), in order.

    RFC 9162 §2.1.4.1. Empty when old_size is 0 or equals new_size. Raises ``ValueError``
    unless 0 <= old_size <= new_size.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    # Iterative SUBPROOF(m, D[start:end], complete): top-down, reversed at the end because
    # the RFC appends each level's hash after the recursive part.
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, new_size, old_size, True
    while True:
        if m == end - start:
            if not complete:
                ranges.append((start, end))
            break
        k = _split_point(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    ranges.reverse()
    return ranges


def subtrees_of(ranges: Iterable[tuple[int, int]]) -> set[Subtree]:
    """Every perfect subtree whose root ``range_hashes`` needs for ``ranges`` (O(log n) for a proof)."""
    return {subtree for start, end in ranges for subtree in perfect_subtrees(start, end)}


def range_hashes(ranges: Iterable[tuple[int, int]], roots: Mapping[Subtree, bytes]) -> list[bytes]:
    """MTH(D[start:end]) of each range, folded from its perfect subtrees' ``roots``.

    ``roots`` holds at least ``subtrees_of(ranges)`` (a missing one raises ``KeyError``).
    ``range_hashes(inclusion_ranges(i, n), roots)`` is ``inclusion_proof`` and
    ``range_hashes([(0, n)], roots)[0]`` the root of the tree of size n.
    """
    hashes = []
    for start, end in ranges:
        subtrees = perfect_subtrees(start, end)
        if not subtrees:
            hashes.append(EMPTY_ROOT)
            continue
        folded = roots[subtrees[-1]]
        for subtree in reversed(subtrees[:-1]):
            folded = node_hash(roots[subtree], folded)
        hashes.append(folded)
    return hashes


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, tree_size: int) -> list[bytes]:
    """The audit path PATH(index, D[0:tree_size]) of RFC 9162 §2.1.3.1, leaf side first.

    Raises ``ValueError`` unless 0 <= index < tree_size <= len(leaf_hashes).
    """
    if not 0 <= index < tree_size <= len(leaf_hashes):
        raise ValueError(f"no leaf {index} in a tree of size {tree_size} ({len(leaf_hashes)} leaves known)")
    return [_subtree_root(leaf_hashes, start, end) for start, end in inclusion_ranges(index, tree_size)]


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1.

    Empty when old_size is 0 or equals new_size. Raises ``ValueError`` unless
    0 <= old_size <= new_size <= len(leaf_hashes).
    """
    if not 0 <= old_size <= new_size <= len(leaf_hashes):
        raise ValueError(f"no consistency proof from size {old_size} to {new_size} ({len(leaf_hashes)} leaves known)")
    return [_subtree_root(leaf_hashes, start, end) for start, end in consistency_ranges(old_size, new_size)]


def _well_formed(hashes: Iterable[bytes]) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows ``leaf_hash`` at ``index`` in the tree of ``tree_size`` with ``root``.

    The bit-twiddling verifier of RFC 9162 §2.1.3.2.
    """
    if not (0 <= index < tree_size) or not _well_formed([leaf_hash, root, *proof]):
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree (new_size, new_root) extends the tree (old_size, old_root).

    The verifier of RFC 9162 §2.1.4.2. Equal sizes need an empty proof and equal roots; any
    tree extends the empty tree (old_size 0, empty proof, old_root == SHA-256(b"")).
    """
    if not 0 <= old_size <= new_size or not _well_formed([old_root, new_root, *proof]):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a subtree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


class MerkleFrontier:
    """An append-only Merkle tree kept as O(log n) perfect-subtree roots (a compact range from 0).

    One root per set bit of ``size``, largest (leftmost) first. The service can persist
    ``(size, subtree_roots)`` and resume with ``from_state`` instead of reloading every leaf.
    """

    __slots__ = ("_roots", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._roots: list[bytes] = []

    @classmethod
    def from_state(cls, size: int, subtree_roots: Sequence[bytes]) -> MerkleFrontier:
        """Resume from a persisted size and its subtree roots (as given by ``subtree_roots``)."""
        if size < 0 or len(subtree_roots) != size.bit_count() or not _well_formed(subtree_roots):
            raise ValueError(f"a tree of size {size} needs {max(size, 0).bit_count()} subtree roots of 32 bytes")
        frontier = cls()
        frontier._size = size
        frontier._roots = list(subtree_roots)
        return frontier

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> MerkleFrontier:
        """A frontier over the given leaf hashes, appended in order."""
        frontier = cls()
        for h in leaf_hashes:
            frontier.append(h)
        return frontier

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    @property
    def subtree_roots(self) -> tuple[bytes, ...]:
        """The perfect-subtree roots, largest first (the state to persist)."""
        return tuple(self._roots)

    def append(self, leaf: bytes) -> int:
        """Append one leaf hash; return its index in the log."""
        return self.append_subtrees(leaf)[0][0].index

    def append_subtrees(self, leaf: bytes) -> list[tuple[Subtree, bytes]]:
        """Append one leaf hash; return the perfect subtrees this completes, with their roots.

        Smallest first: the leaf itself at ``(0, its index)``, then one subtree per trailing
        1-bit of the old size (one on average), the subtrees a store of nodes must keep.
        """
        if not _well_formed([leaf]):
            raise ValueError("a leaf hash is 32 bytes")
        index = self._size
        merged = leaf
        completed = [(Subtree(0, index), leaf)]
        # Each trailing 1-bit of the old size is a subtree of the same height to merge with.
        n, level = index, 0
        while n & 1:
            merged = node_hash(self._roots.pop(), merged)
            n >>= 1
            level += 1
            completed.append((Subtree(level, n), merged))
        self._roots.append(merged)
        self._size += 1
        return completed

    def root(self) -> bytes:
        """The current tree root, equal to ``root_hash`` over every appended leaf."""
        if not self._roots:
            return EMPTY_ROOT
        root = self._roots[-1]
        for left in reversed(self._roots[:-1]):
            root = node_hash(left, root)
        return root
