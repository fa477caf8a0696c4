"""RFC 9162 Merkle hashing and proofs, against an independent implementation written here
from the RFC's recursive definitions (sections 2.1.1, 2.1.3.1, 2.1.4.1), for every tree
size up to 40 and every leaf; proofs that do not hold are refused."""

from __future__ import annotations

import hashlib

import pytest

from writer.merkle import (
    Frontier,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) as the RFC writes it, over the entries themselves."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


ENTRIES = [f"entry {i}".encode() for i in range(40)]
LEAVES = [leaf_hash(e) for e in ENTRIES]


def test_roots_and_the_frontier() -> None:
    fr = Frontier()
    for n in range(0, 41):
        assert root(LEAVES[:n]) == mth(ENTRIES[:n])
        if n:
            fr.append(LEAVES[n - 1])
        assert fr.size == n and fr.root() == mth(ENTRIES[:n])
    again = Frontier(fr.size, fr.hashes)
    again.append(leaf_hash(b"more"))
    assert again.root() == mth([*ENTRIES, b"more"])


def test_inclusion_proofs() -> None:
    for n in range(1, 41):
        r = mth(ENTRIES[:n])
        for m in range(n):
            p = inclusion_proof(m, LEAVES[:n])
            assert p == path(m, ENTRIES[:n])
            verify_inclusion(m, n, LEAVES[m], p, r)
            if n > 1:
                with pytest.raises(ProofError):
                    verify_inclusion(m, n, leaf_hash(b"other"), p, r)
                with pytest.raises(ProofError):
                    verify_inclusion((m + 1) % n, n, LEAVES[m], p, r)
                with pytest.raises(ProofError):
                    verify_inclusion(m, n, LEAVES[m], p[:-1], r)
    with pytest.raises(ProofError):
        inclusion_proof(3, LEAVES[:3])


def test_consistency_proofs() -> None:
    for n in range(1, 41):
        for m in range(1, n + 1):
            p = consistency_proof(m, LEAVES[:n])
            assert p == subproof(m, ENTRIES[:n], True)
            verify_consistency(m, n, mth(ENTRIES[:m]), mth(ENTRIES[:n]), p)
            if m < n:
                with pytest.raises(ProofError):
                    verify_consistency(m, n, mth(ENTRIES[:m]), mth([*ENTRIES[:n - 1],
                                                                    b"rewritten"]), p)
                with pytest.raises(ProofError):
                    verify_consistency(m, n, mth([b"x", *ENTRIES[1:m]]), mth(ENTRIES[:n]), p)
    with pytest.raises(ProofError):
        verify_consistency(2, 5, mth(ENTRIES[:2]), mth(ENTRIES[:5]), [])
