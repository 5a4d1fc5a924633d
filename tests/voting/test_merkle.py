"""RFC 9162 Merkle tree: roots, inclusion and consistency proofs, and the incremental frontier."""

from __future__ import annotations

import hashlib
import time

import pytest

from voting.merkle import (
    EMPTY_ROOT,
    MerkleFrontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)


def reference_mth(entries: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, transcribed literally (recursive, over raw entries)."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(entries[:k]) + reference_mth(entries[k:])).digest()


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def reference_inclusion_root(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """The root a proof implies, by inverting RFC 9162 PATH recursively; None if its length is wrong."""
    if size == 1:
        return leaf if not proof else None
    if not proof:
        return None
    k, sibling, rest = split(size), proof[-1], proof[:-1]
    if index < k:
        below = reference_inclusion_root(index, k, leaf, rest)
        return None if below is None else node(below, sibling)
    below = reference_inclusion_root(index - k, size - k, leaf, rest)
    return None if below is None else node(sibling, below)


def reference_consistency_ok(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    """Invert RFC 9162 SUBPROOF recursively: rebuild both roots from the proof and compare."""
    remaining = list(proof)

    def rebuild(m: int, n: int, complete: bool) -> tuple[bytes, bytes] | None:
        if m == n:
            if complete:
                return old_root, old_root
            if not remaining:
                return None
            h = remaining.pop()
            return h, h
        if not remaining:
            return None
        k = split(n)
        if m <= k:
            right = remaining.pop()
            below = rebuild(m, k, complete)
            return None if below is None else (below[0], node(below[1], right))
        left = remaining.pop()
        below = rebuild(m - k, n - k, False)
        return None if below is None else (node(left, below[0]), node(left, below[1]))

    if not 0 < old_size < new_size:
        return False
    rebuilt = rebuild(old_size, new_size, True)
    return rebuilt is not None and not remaining and rebuilt == (old_root, new_root)


def entries(n: int) -> list[bytes]:
    return [f"ballot-{i}".encode() for i in range(n)]


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(e) for e in entries(n)]


def flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8])
def test_root_matches_reference_for_known_sizes(size: int) -> None:
    assert root_hash(leaves(size)) == reference_mth(entries(size))


def test_known_answers_for_small_trees() -> None:
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert root_hash([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root_hash([a]) == hashlib.sha256(b"\x00a").digest()
    ab = hashlib.sha256(b"\x01" + a + b).digest()
    assert root_hash([a, b]) == ab
    assert root_hash([a, b, c]) == hashlib.sha256(b"\x01" + ab + c).digest()


@pytest.mark.parametrize("size", range(1, 41))
def test_every_inclusion_proof_verifies(size: int) -> None:
    hashes = leaves(size)
    root = reference_mth(entries(size))
    for index in range(size):
        proof = inclusion_proof(hashes, index, size)
        assert verify_inclusion(hashes[index], index, size, proof, root)


@pytest.mark.parametrize("new_size", range(1, 41))
def test_every_consistency_proof_verifies(new_size: int) -> None:
    hashes = leaves(new_size)
    new_root = root_hash(hashes)
    for old_size in range(new_size + 1):
        proof = consistency_proof(hashes, old_size, new_size)
        assert verify_consistency(old_size, new_size, root_hash(hashes[:old_size]), new_root, proof)


def test_inclusion_proof_over_a_prefix_of_the_log() -> None:
    hashes = leaves(40)
    proof = inclusion_proof(hashes, 5, 13)
    assert verify_inclusion(hashes[5], 5, 13, proof, root_hash(hashes[:13]))
    assert not verify_inclusion(hashes[5], 5, 40, proof, root_hash(hashes))


def test_tampered_inclusion_proofs_fail() -> None:
    size = 21
    hashes = leaves(size)
    root = root_hash(hashes)
    for index in range(size):
        proof = inclusion_proof(hashes, index, size)
        assert not verify_inclusion(flip(hashes[index]), index, size, proof, root)
        assert not verify_inclusion(hashes[index], index, size, proof, flip(root))
        assert not verify_inclusion(hashes[index], (index + 1) % size, size, proof, root)
        assert not verify_inclusion(hashes[index], index, size, proof + [hashes[0]], root)
        assert not verify_inclusion(hashes[index], index, size, proof[:-1], root)
        for position in range(len(proof)):
            tampered = list(proof)
            tampered[position] = flip(tampered[position])
            assert not verify_inclusion(hashes[index], index, size, tampered, root)


# A root does not encode its tree size (the signed tree head binds the two), so a proof can
# also fit another size whose path has the same shape. The bit-twiddling verifiers must accept
# a misstated size exactly when the literal recursive inversion of the RFC does.


def test_inclusion_verifier_agrees_with_reference_on_misstated_sizes() -> None:
    hashes = leaves(24)
    for size in range(1, 17):
        root = root_hash(hashes[:size])
        for index in range(size):
            proof = inclusion_proof(hashes, index, size)
            for claimed in range(1, 25):
                implied = reference_inclusion_root(index, claimed, hashes[index], proof) if index < claimed else None
                expected = implied == root
                assert verify_inclusion(hashes[index], index, claimed, proof, root) == expected
                if claimed == size:
                    assert expected
    assert not verify_inclusion(hashes[0], 0, 32, inclusion_proof(hashes, 0, 16), root_hash(hashes[:16]))


def test_consistency_verifier_agrees_with_reference_on_misstated_sizes() -> None:
    hashes = leaves(20)
    for new_size in range(2, 14):
        new_root = root_hash(hashes[:new_size])
        for old_size in range(1, new_size):
            old_root = root_hash(hashes[:old_size])
            proof = consistency_proof(hashes, old_size, new_size)
            for claimed_old in range(1, 20):
                for claimed_new in range(claimed_old + 1, 20):
                    expected = reference_consistency_ok(claimed_old, claimed_new, old_root, new_root, proof)
                    assert verify_consistency(claimed_old, claimed_new, old_root, new_root, proof) == expected
                    if (claimed_old, claimed_new) == (old_size, new_size):
                        assert expected


def test_inclusion_rejects_out_of_range_and_malformed_input() -> None:
    hashes = leaves(4)
    root = root_hash(hashes)
    proof = inclusion_proof(hashes, 0, 4)
    assert not verify_inclusion(hashes[0], -1, 4, proof, root)
    assert not verify_inclusion(hashes[0], 4, 4, proof, root)
    assert not verify_inclusion(hashes[0], 0, 4, [p[:31] for p in proof], root)
    with pytest.raises(ValueError):
        inclusion_proof(hashes, 4, 4)
    with pytest.raises(ValueError):
        inclusion_proof(hashes, 0, 5)


def test_single_leaf_tree_has_empty_proof() -> None:
    hashes = leaves(1)
    assert inclusion_proof(hashes, 0, 1) == []
    assert verify_inclusion(hashes[0], 0, 1, [], hashes[0])
    assert not verify_inclusion(hashes[0], 0, 1, [hashes[0]], hashes[0])


def test_tampered_consistency_proofs_fail() -> None:
    new_size = 23
    hashes = leaves(new_size)
    new_root = root_hash(hashes)
    for old_size in range(1, new_size):
        old_root = root_hash(hashes[:old_size])
        proof = consistency_proof(hashes, old_size, new_size)
        assert not verify_consistency(old_size, new_size, flip(old_root), new_root, proof)
        assert not verify_consistency(old_size, new_size, old_root, flip(new_root), proof)
        assert not verify_consistency(new_size, old_size, old_root, new_root, proof)
        assert not verify_consistency(old_size, new_size, old_root, new_root, [])
        assert not verify_consistency(old_size, new_size, old_root, new_root, proof + [hashes[0]])
        for position in range(len(proof)):
            tampered = list(proof)
            tampered[position] = flip(tampered[position])
            assert not verify_consistency(old_size, new_size, old_root, new_root, tampered)


def test_consistency_with_a_rewritten_history_fails() -> None:
    hashes = leaves(12)
    forged = list(hashes)
    forged[3] = leaf_hash(b"a different ballot")
    proof = consistency_proof(forged, 6, 12)
    assert not verify_consistency(6, 12, root_hash(hashes[:6]), root_hash(forged), proof)


def test_consistency_edge_cases() -> None:
    hashes = leaves(5)
    root = root_hash(hashes)
    assert verify_consistency(5, 5, root, root, [])
    assert not verify_consistency(5, 5, root, flip(root), [])
    assert not verify_consistency(5, 5, root, root, [root])
    assert verify_consistency(0, 5, EMPTY_ROOT, root, [])
    assert not verify_consistency(0, 5, root, root, [])
    assert not verify_consistency(-1, 5, EMPTY_ROOT, root, [])
    with pytest.raises(ValueError):
        consistency_proof(hashes, 3, 6)
    with pytest.raises(ValueError):
        consistency_proof(hashes, 4, 3)


def test_frontier_agrees_with_root_hash_for_every_size() -> None:
    hashes = leaves(100)
    frontier = MerkleFrontier()
    assert frontier.root() == root_hash([])
    for size in range(1, 101):
        assert frontier.append(hashes[size - 1]) == size - 1
        assert frontier.size == size
        assert frontier.root() == root_hash(hashes[:size])
        assert len(frontier.subtree_roots) == size.bit_count()


def test_frontier_resumes_from_persisted_state() -> None:
    hashes = leaves(37)
    stored = MerkleFrontier.from_leaf_hashes(hashes[:21])
    resumed = MerkleFrontier.from_state(stored.size, stored.subtree_roots)
    for h in hashes[21:]:
        resumed.append(h)
    assert resumed.root() == root_hash(hashes)
    with pytest.raises(ValueError):
        MerkleFrontier.from_state(21, stored.subtree_roots[:-1])
    with pytest.raises(ValueError):
        resumed.append(b"short")


def test_large_log_is_fast() -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(200_000)]
    started = time.perf_counter()
    root = root_hash(hashes)
    proof = inclusion_proof(hashes, 123_456, len(hashes))
    old_root = root_hash(hashes[:150_001])
    consistency = consistency_proof(hashes, 150_001, len(hashes))
    elapsed = time.perf_counter() - started
    assert verify_inclusion(hashes[123_456], 123_456, len(hashes), proof, root)
    assert verify_consistency(150_001, len(hashes), old_root, root, consistency)
    assert MerkleFrontier.from_leaf_hashes(hashes).root() == root
    assert elapsed < 3.0, f"four passes over 200,000 leaves took {elapsed:.2f}s"
