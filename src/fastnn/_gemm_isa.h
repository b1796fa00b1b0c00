/* fastnn's register-blocked micro-kernels, one instruction set and one dtype
 * per inclusion (included six times by _gemm.h; no include guard on purpose).
 *
 * The includer defines:
 *   FNN_T       float or double
 *   FNN_NAME(x) the function name for this ISA/dtype (fnn_<x>_<isa>_<f|d>)
 *   FNN_TARGET  __attribute__((target(...))) or empty
 *   VT, MT      vector and tail-mask types;  VL lanes per vector
 *   MRR, NRV    register tile: MRR rows x NRV vectors of VL columns
 *   VLOAD/VLOADM/VSTORE/VSTOREM/VSET1/VZERO/VFMA/VMUL/VADD/VSUB/VRELU/
 *   VSELPOS/VADDPOS/VSUBNEG/MASKN   the vector operations
 *
 * Every output element is reduced in one accumulator, in index order
 * (k = 0..K-1 for products, i = 0..batch-1 for gradients), whatever the tile,
 * the tail or the thread that computes it: results do not depend on the
 * thread count, and the AVX-512 and AVX2 variants (both FMA) agree bit for bit.
 */

/* C[:, n0:n1] = epilogue(A(m x K) @ B(K x n)), B row-major (a weight matrix as
 * fastnn stores it, or a transposed copy of one): nothing is packed. The tile
 * keeps MRR x NRV accumulators in registers over the whole K loop, broadcasts
 * A[i, k] and streams B's row k; the last vector of a column block is masked.
 * epilogue (epi):
 *   FNN_EPI_BIAS: + bias[j], then relu in registers (act == RELU) or, for
 *                 tanh/sigmoid, the _fastmath.h row pass on the finished rows;
 *   FNN_EPI_DACT: * act'(ap[i, j]) with the derivative written in terms of
 *                 the activation ap (ap has C's leading dimension). */
static inline __attribute__((always_inline)) FNN_TARGET void
FNN_NAME(tile)(const int mr, const int nv, MT mask, ptrdiff_t K,
               const FNN_T *a, ptrdiff_t lda, const FNN_T *b, ptrdiff_t ldb,
               FNN_T *c, ptrdiff_t ldc, const FNN_T *bias, int epi, int act,
               const FNN_T *ap)
{
    VT acc[MRR][NRV];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            acc[r][v] = VZERO;
    for (ptrdiff_t k = 0; k < K; k++) {
        const FNN_T *bk = b + k * ldb;
        VT bv[NRV];
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            bv[v] = v == nv - 1 ? VLOADM(bk + v * VL, mask) : VLOAD(bk + v * VL);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            VT av = VSET1(a[r * lda + k]);
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                acc[r][v] = VFMA(av, bv[v], acc[r][v]);
        }
    }
    const VT one = VSET1((FNN_T) 1);
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            const int last = v == nv - 1;
            VT x = acc[r][v];
            if (epi == FNN_EPI_BIAS) {
                if (act == FNN_TANH || act == FNN_SIGMOID) {
                    /* bias and activation in the row pass below */
                } else {
                    VT bb = last ? VLOADM(bias + v * VL, mask) : VLOAD(bias + v * VL);
                    x = VADD(x, bb);
                    if (act == FNN_RELU)
                        x = VRELU(x);
                }
            } else if (act != FNN_IDENTITY) {
                const FNN_T *p = ap + r * ldc + v * VL;
                VT av = last ? VLOADM(p, mask) : VLOAD(p);
                if (act == FNN_RELU)
                    x = VSELPOS(x, av);
                else if (act == FNN_TANH)
                    x = VMUL(x, VSUB(one, VMUL(av, av)));
                else
                    x = VMUL(x, VMUL(av, VSUB(one, av)));
            }
            if (last)
                VSTOREM(c + r * ldc + v * VL, mask, x);
            else
                VSTORE(c + r * ldc + v * VL, x);
        }
    }
}

#define FNN_TILE_CASE(MR, NV)                                                 \
    case (NV) * 8 + (MR):                                                     \
        FNN_NAME(tile)(MR, NV, mask, K, a + i0 * lda, lda, bj, ldb,           \
                       cj + i0 * ldc, ldc, biasj, epi, act,                   \
                       apj ? apj + i0 * ldc : NULL);                          \
        break;
#define FNN_TILE_CASES(NV) FNN_TILE_CASE(1, NV) FNN_TILE_CASE(2, NV)           \
    FNN_TILE_CASE(3, NV) FNN_TILE_CASE(4, NV) FNN_TILE_CASE(5, NV) FNN_TILE_CASE(6, NV)

static FNN_TARGET void
FNN_NAME(gemm)(ptrdiff_t m, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t K,
               const FNN_T *a, ptrdiff_t lda, const FNN_T *b, ptrdiff_t ldb,
               FNN_T *c, ptrdiff_t ldc, const FNN_T *bias, int epi, int act,
               const FNN_T *ap)
{
    for (ptrdiff_t j0 = n0; j0 < n1; j0 += NRV * VL) {
        ptrdiff_t cols = n1 - j0 < NRV * VL ? n1 - j0 : NRV * VL;
        int nv = (int) ((cols + VL - 1) / VL);
        MT mask = MASKN((int) (cols - (nv - 1) * VL));
        const FNN_T *bj = b + j0;
        FNN_T *cj = c + j0;
        const FNN_T *biasj = bias ? bias + j0 : NULL;
        const FNN_T *apj = ap ? ap + j0 : NULL;
        for (ptrdiff_t i0 = 0; i0 < m; i0 += MRR) {
            int mr = (int) (m - i0 < MRR ? m - i0 : MRR);
            switch (nv * 8 + mr) {
                FNN_TILE_CASES(1)
#if NRV >= 2
                FNN_TILE_CASES(2)
#endif
#if NRV >= 3
                FNN_TILE_CASES(3)
#endif
#if NRV >= 4
                FNN_TILE_CASES(4)
#endif
                default: break;
            }
        }
        if (epi == FNN_EPI_BIAS && (act == FNN_TANH || act == FNN_SIGMOID)) {
            for (ptrdiff_t i = 0; i < m; i++) {
                if (act == FNN_TANH)
                    FNN_BIAS_TANH(cj + i * ldc, biasj, 1, cols);
                else
                    FNN_BIAS_SIGMOID(cj + i * ldc, biasj, 1, cols);
            }
        }
    }
}

/* Fused weight gradient and SGD update of rows k0:k1 of W (n_in x n):
 *   g = A[:, k]^T dZ[:, j] (summed over the batch rows in order, in registers)
 *   v = mu v - lr (g + l2 w + l1 sign w);  w = w + v
 * No gradient array: each register tile of g is consumed where it is made.
 * wt, when not NULL, is W's transposed copy (n x n_in), kept equal to W. */
static inline __attribute__((always_inline)) FNN_TARGET void
FNN_NAME(dwtile)(const int kr, const int nv, MT mask, int valid_last, ptrdiff_t bs,
                 const FNN_T *a, ptrdiff_t lda, const FNN_T *dz, ptrdiff_t ldz,
                 FNN_T *w, FNN_T *vel, ptrdiff_t ldw, FNN_T *wt, ptrdiff_t ldwt,
                 const FNN_HP *hp)
{
    VT acc[MRR][NRV];
#pragma GCC unroll 8
    for (int r = 0; r < kr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            acc[r][v] = VZERO;
    for (ptrdiff_t i = 0; i < bs; i++) {
        const FNN_T *dzi = dz + i * ldz;
        VT dv[NRV];
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            dv[v] = v == nv - 1 ? VLOADM(dzi + v * VL, mask) : VLOAD(dzi + v * VL);
#pragma GCC unroll 8
        for (int r = 0; r < kr; r++) {
            VT av = VSET1(a[i * lda + r]);
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                acc[r][v] = VFMA(av, dv[v], acc[r][v]);
        }
    }
    const VT lr = VSET1(hp->lr), mu = VSET1(hp->mu), l1 = VSET1(hp->l1), l2 = VSET1(hp->l2);
    const int use_l1 = hp->l1 != 0;
#pragma GCC unroll 8
    for (int r = 0; r < kr; r++) {
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            const int last = v == nv - 1;
            FNN_T *wp = w + r * ldw + v * VL;
            FNN_T *vp = vel + r * ldw + v * VL;
            VT w0 = last ? VLOADM(wp, mask) : VLOAD(wp);
            VT v0 = last ? VLOADM(vp, mask) : VLOAD(vp);
            VT step = VADD(acc[r][v], VMUL(l2, w0));
            if (use_l1) {
                step = VADDPOS(step, w0, l1);
                step = VSUBNEG(step, w0, l1);
            }
            VT vn = VSUB(VMUL(mu, v0), VMUL(lr, step));
            VT wn = VADD(w0, vn);
            if (last) {
                VSTOREM(vp, mask, vn);
                VSTOREM(wp, mask, wn);
            } else {
                VSTORE(vp, vn);
                VSTORE(wp, wn);
            }
            if (wt) {
                FNN_T lanes[VL];
                memcpy(lanes, &wn, sizeof lanes);
                int nl = last ? valid_last : VL;
                for (int q = 0; q < nl; q++)
                    wt[(v * VL + q) * ldwt + r] = lanes[q];
            }
        }
    }
}

#define FNN_DW_CASE(KR, NV)                                                   \
    case (NV) * 8 + (KR):                                                     \
        FNN_NAME(dwtile)(KR, NV, mask, valid, bs, a + k, lda, dz + j0, ldz,   \
                         w + k * ldw + j0, vel + k * ldw + j0, ldw,           \
                         wt ? wt + j0 * ldwt + k : NULL, ldwt, hp);           \
        break;
#define FNN_DW_CASES(NV) FNN_DW_CASE(1, NV) FNN_DW_CASE(2, NV) FNN_DW_CASE(3, NV) \
    FNN_DW_CASE(4, NV) FNN_DW_CASE(5, NV) FNN_DW_CASE(6, NV)

static FNN_TARGET void
FNN_NAME(dw_update)(ptrdiff_t bs, ptrdiff_t k0, ptrdiff_t k1, ptrdiff_t n,
                    const FNN_T *a, ptrdiff_t lda, const FNN_T *dz, ptrdiff_t ldz,
                    FNN_T *w, FNN_T *vel, ptrdiff_t ldw, FNN_T *wt, ptrdiff_t ldwt,
                    const FNN_HP *hp)
{
    for (ptrdiff_t k = k0; k < k1; k += MRR) {
        int kr = (int) (k1 - k < MRR ? k1 - k : MRR);
        for (ptrdiff_t j0 = 0; j0 < n; j0 += NRV * VL) {
            ptrdiff_t cols = n - j0 < NRV * VL ? n - j0 : NRV * VL;
            int nv = (int) ((cols + VL - 1) / VL);
            int valid = (int) (cols - (nv - 1) * VL);
            MT mask = MASKN(valid);
            switch (nv * 8 + kr) {
                FNN_DW_CASES(1)
#if NRV >= 2
                FNN_DW_CASES(2)
#endif
#if NRV >= 3
                FNN_DW_CASES(3)
#endif
#if NRV >= 4
                FNN_DW_CASES(4)
#endif
                default: break;
            }
        }
    }
}

/* Bias gradient (column sums of dZ, rows in order) and its SGD update
 * (no penalty on biases), columns j0:j1. */
static FNN_TARGET void
FNN_NAME(db_update)(ptrdiff_t bs, ptrdiff_t j0, ptrdiff_t j1, const FNN_T *dz,
                    ptrdiff_t ldz, FNN_T *b, FNN_T *vel, const FNN_HP *hp)
{
    FNN_T g[64];
    const FNN_T lr = hp->lr, mu = hp->mu;
    for (ptrdiff_t c0 = j0; c0 < j1; c0 += 64) {
        ptrdiff_t nc = j1 - c0 < 64 ? j1 - c0 : 64;
        for (ptrdiff_t j = 0; j < nc; j++)
            g[j] = dz[c0 + j];
        for (ptrdiff_t i = 1; i < bs; i++)
            for (ptrdiff_t j = 0; j < nc; j++)
                g[j] = g[j] + dz[i * ldz + c0 + j];
        for (ptrdiff_t j = 0; j < nc; j++) {
            FNN_T vi = mu * vel[c0 + j] - lr * g[j];
            vel[c0 + j] = vi;
            b[c0 + j] = b[c0 + j] + vi;
        }
    }
}

#undef FNN_TILE_CASE
#undef FNN_TILE_CASES
#undef FNN_DW_CASE
#undef FNN_DW_CASES
