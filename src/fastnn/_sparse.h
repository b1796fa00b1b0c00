/* The first layer's products on the CSR rows of a sparse X, one dtype per
 * inclusion (included by _gemm_train.h, inside its FNN_T / FNN_F scope; no
 * include guard on purpose). fastnn.reference.csr_forward and
 * csr_weight_grad are their NumPy twins.
 *
 * A batch is the rows rows[0:bs] of the CSR X (indptr, indices, x: nnz
 * values, d columns). Every index is checked as it is read (the caller
 * validated them, but another thread could change them): an entry or row out
 * of range is skipped and the kernel returns 0 (the caller then stops).
 * The arithmetic of an output element is a fixed sequence whatever the
 * block of columns n0:n1 a thread asks for (the rows in batch order, a row's
 * entries in CSR order), so the results do not depend on the thread count;
 * with -ffp-contract=off, x * w + z is two roundings on every instruction
 * set of the clones. */

/* The range k0:k1 of row r's entries, or 0 when r, or its range, is out of
 * bounds. */
static inline int FNN_F(fnn_csr_span)(const ptrdiff_t *indptr, ptrdiff_t n_rows, ptrdiff_t nnz,
                                      ptrdiff_t r, ptrdiff_t *k0, ptrdiff_t *k1)
{
    if (r < 0 || r >= n_rows)
        return 0;
    *k0 = indptr[r];
    *k1 = indptr[r + 1];
    return *k0 >= 0 && *k0 <= *k1 && *k1 <= nnz;
}

/* z[i, n0:n1] = act(sum_k x[k] W[indices[k], n0:n1] + bias[n0:n1]) for the
 * batch rows i (k over row rows[i]'s entries, in order, from 0; an empty row
 * gives act(bias)); the bias and activation as the dense products' epilogue
 * (relu and identity in the loop, tanh and sigmoid by _fastmath.h's row
 * pass). W is d x ldw, z bs x ldz. */
FNN_CLONES static int FNN_F(fnn_csr_forward)(ptrdiff_t bs, const ptrdiff_t *rows,
                                             ptrdiff_t n_rows, const ptrdiff_t *indptr,
                                             const ptrdiff_t *indices, const FNN_T *x,
                                             ptrdiff_t nnz, ptrdiff_t d, const FNN_T *w,
                                             ptrdiff_t ldw, const FNN_T *bias, FNN_T *z,
                                             ptrdiff_t ldz, ptrdiff_t n0, ptrdiff_t n1, int act)
{
    int ok = 1;
    const ptrdiff_t n = n1 - n0;
    const FNN_T *bb = bias + n0;
    for (ptrdiff_t i = 0; i < bs; i++) {
        FNN_T *zr = z + i * ldz + n0;
        for (ptrdiff_t j = 0; j < n; j++)
            zr[j] = 0;
        ptrdiff_t k0, k1;
        if (!FNN_F(fnn_csr_span)(indptr, n_rows, nnz, rows[i], &k0, &k1)) {
            ok = 0;
            k0 = k1 = 0;
        }
        for (ptrdiff_t k = k0; k < k1; k++) {
            const ptrdiff_t c = indices[k];
            if (c < 0 || c >= d) {
                ok = 0;
                continue;
            }
            const FNN_T v = x[k];
            const FNN_T *wr = w + c * ldw + n0;
            for (ptrdiff_t j = 0; j < n; j++)
                zr[j] = zr[j] + v * wr[j];
        }
        if (act == FNN_TANH)
            FNN_F(fnn_bias_tanh)(zr, bb, 1, n);
        else if (act == FNN_SIGMOID)
            FNN_F(fnn_bias_sigmoid)(zr, bb, 1, n);
        else if (act == FNN_RELU)
            for (ptrdiff_t j = 0; j < n; j++) {
                const FNN_T t = zr[j] + bb[j];
                zr[j] = t > 0 ? t : 0;
            }
        else
            for (ptrdiff_t j = 0; j < n; j++)
                zr[j] = zr[j] + bb[j];
    }
    return ok;
}

/* The weight gradient of the batch on columns n0:n1, G = X_b^T dZ: for the
 * batch rows i in order and their entries k in order, G[indices[k], n0:n1]
 * += x[k] dz[i, n0:n1] (G's other rows are left as they are: the caller
 * keeps them 0). zero != 0: instead set the touched rows of G to 0 (on
 * columns n0:n1), as they were before. G is d x ldg, dz bs x ldz. */
FNN_CLONES static int FNN_F(fnn_csr_wgrad)(ptrdiff_t bs, const ptrdiff_t *rows,
                                           ptrdiff_t n_rows, const ptrdiff_t *indptr,
                                           const ptrdiff_t *indices, const FNN_T *x,
                                           ptrdiff_t nnz, ptrdiff_t d, const FNN_T *dz,
                                           ptrdiff_t ldz, FNN_T *g, ptrdiff_t ldg,
                                           ptrdiff_t n0, ptrdiff_t n1, int zero)
{
    int ok = 1;
    const ptrdiff_t n = n1 - n0;
    for (ptrdiff_t i = 0; i < bs; i++) {
        const FNN_T *dzr = dz + i * ldz + n0;
        ptrdiff_t k0, k1;
        if (!FNN_F(fnn_csr_span)(indptr, n_rows, nnz, rows[i], &k0, &k1)) {
            ok = 0;
            continue;
        }
        for (ptrdiff_t k = k0; k < k1; k++) {
            const ptrdiff_t c = indices[k];
            if (c < 0 || c >= d) {
                ok = 0;
                continue;
            }
            FNN_T *gr = g + c * ldg + n0;
            if (zero) {
                memset(gr, 0, (size_t) n * sizeof(FNN_T));
                continue;
            }
            const FNN_T v = x[k];
            for (ptrdiff_t j = 0; j < n; j++)
                gr[j] = gr[j] + v * dzr[j];
        }
    }
    return ok;
}
