import numpy as np
import scipy.sparse as sp

from graphrec.graph.csr import build_csr, expand_indptr, reverse_csr, stable_order


def test_stable_order_matches_numpy_stable_argsort():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 50, 10_000)
    np.testing.assert_array_equal(stable_order(keys, 50), np.argsort(keys, kind="stable"))


def test_build_csr_matches_scipy_and_reverse_is_transpose():
    rng = np.random.default_rng(1)
    src = rng.integers(0, 100, 5000)
    dst = rng.integers(0, 70, 5000)
    indptr, indices, perm = build_csr(src, dst, 100)
    ref = sp.coo_matrix((np.ones(5000), (src, dst)), shape=(100, 70)).tocsr()
    ours = sp.csr_matrix((np.ones(5000), indices, indptr), shape=(100, 70))
    assert (ours != ref).nnz == 0
    np.testing.assert_array_equal(src[perm], expand_indptr(indptr))
    np.testing.assert_array_equal(dst[perm], indices)
    r_indptr, r_indices, r_eid = reverse_csr(indptr, indices, 70)
    rev = sp.csr_matrix((np.ones(5000), r_indices, r_indptr), shape=(70, 100))
    assert (rev != ref.T.tocsr()).nnz == 0
    # rev_eid points at the same edge in forward-CSR order
    np.testing.assert_array_equal(indices[r_eid], expand_indptr(r_indptr))
    np.testing.assert_array_equal(expand_indptr(indptr)[r_eid], r_indices)


def test_empty_rows_and_no_edges():
    indptr, indices, perm = build_csr(np.array([], np.int64), np.array([], np.int64), 3)
    np.testing.assert_array_equal(indptr, [0, 0, 0, 0])
    assert indices.size == 0 and perm.size == 0


def test_row_ranks_orders_each_row_by_key_with_position_ties():
    from graphrec.graph.csr import row_ages, row_ranks

    indptr = np.array([0, 3, 3, 6])
    ts = np.array([30, 10, 20, 5, 5, 1])
    np.testing.assert_array_equal(row_ranks(indptr, ts), [2, 0, 1, 1, 2, 0])
    np.testing.assert_array_equal(row_ranks(indptr), [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(row_ages(indptr, ts), [0, 2, 1, 1, 0, 2])
