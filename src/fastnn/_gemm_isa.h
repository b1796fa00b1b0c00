/* fastnn's register-blocked micro-kernels, one instruction set and one dtype
 * per inclusion: the template that _ukernels.h instantiates for float and
 * double under each _ukernels_<isa>.h (no include guard on purpose). The
 * contract the results fulfil, and their registry, are in _ukernel.h.
 *
 * The includer defines:
 *   FNN_SFX     f or d: FNN_T (float or double), FNN_HP, FNN_SQRT and
 *               FNN_F(x) follow from it (_gemm.h)
 *   FNN_ISA     generic, avx512, avx2 or neon: FNN_NAME(x) names this
 *               instantiation's functions fnn_<x>_<isa>_<f|d> (_gemm.h)
 *   FNN_TARGET  __attribute__((target(...))) or empty (portability macros
 *               FNN_ALWAYS_INLINE, FNN_NOINLINE, ...: _fastmath.h)
 *   VT, MT      vector and tail-mask types;  VL lanes per vector
 *   MRR, NRV    register tile: MRR rows x NRV vectors of VL columns
 *   VLOAD/VLOADM/VSTORE/VSTOREM/VSET1/VZERO/VFMA/VMUL/VADD/VSUB/VDIV/VSQRT/
 *   VRELU/VSELPOS/VADDPOS/VSUBNEG/MASKN/VMASKZ/VTRANS   the vector operations
 *
 * Every output element is reduced in one accumulator, in index order
 * (k = 0..K-1 for products, i = 0..batch-1 for gradients), whatever the tile,
 * the tail or the thread that computes it: results do not depend on the
 * thread count, and the SIMD variants (all FMA) agree bit for bit.
 */

/* The tile sizes the code below is written for: the tile switches (gemm's
 * FNN_TILE_CASES, 1..6 rows; dw's FNN_DW_CASES, 1..5 rows, MRR rows going
 * out of line) have cases for 1..4 (gemm) or 1, 2, 4 (dw) vectors, their
 * key nv * 8 + mr needs mr < 8, a
 * packed panel (NRV * VL) is at most the 64 columns that fnn_dw_chunk_cols
 * and db_update's chunks assume, and dw_packed's blocks hold whole tiles. */
_Static_assert(MRR >= 1 && MRR <= 6, "the tile switches cover 1 to 6 rows");
_Static_assert(NRV == 1 || NRV == 2 || NRV == 4, "dw's tile switch covers 1, 2 or 4 vectors");
_Static_assert(NRV * VL <= 64 && 64 % (NRV * VL) == 0, "a panel divides the 64-column chunks");
_Static_assert(FNN_DW_BLOCK_ROWS % MRR == 0, "dw_packed's blocks of rows are whole tiles");

/* acc[r][v] = sum over k < K, in order, of A(r, k) * B(k, v * VL : (v + 1) * VL)
 * for r < mr, v < nv: A(r, k) = a[r * ars + k * aks] broadcast, B's row k at
 * b + k * ldb, its last vector masked (mask). Inlined into each tile with
 * constant mr and nv, so the accumulators live in registers; the one loop
 * of both products (gemm's tile: A row-major; dwtile: A^T, batch rows k).
 * pk: NULL (a constant where the stores fold away), or where B's rows are
 * copied as they are loaded, NRV * VL apart (gemm's first tile of a panel
 * packs the panel while it computes: full tiles only), row k + FNN_PACK_AHEAD
 * asked for meanwhile (rows ldb apart: a stride across pages that the
 * hardware prefetchers do not follow). */
static FNN_ALWAYS_INLINE FNN_TARGET void
FNN_NAME(acc_range)(VT acc[MRR][NRV], const int mr, const int nv, MT mask, const int msk,
                    ptrdiff_t k0,
                    ptrdiff_t k1, const FNN_T *a, ptrdiff_t ars, ptrdiff_t aks, const FNN_T *b,
                    ptrdiff_t ldb, FNN_T *pk, FNN_T *pw, FNN_T *p0, FNN_T *p1, ptrdiff_t ldw)
{
    for (ptrdiff_t k = k0; k < k1; k++) {
        const FNN_T *bk = b + k * ldb;
        VT bv[NRV];
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            bv[v] = msk && v == nv - 1 ? VLOADM(bk + v * VL, mask) : VLOAD(bk + v * VL);
        if (pk) {
#pragma GCC unroll 8
            for (int q = 0; q < (int) (NRV * VL * sizeof(FNN_T)); q += 64)
                FNN_PREFETCH_R((const char *) (bk + FNN_PACK_AHEAD * ldb) + q);
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                VSTORE(pk + k * (NRV * VL) + v * VL, bv[v]);
        }
        if (pw) { /* dwtile's tail: vector k - k0 of W's tile and its slots */
            const ptrdiff_t q = k - k0, off = (q / nv) * ldw + (q % nv) * VL;
            FNN_PREFETCH_W(pw + off);
            FNN_PREFETCH_W(p0 + off);
            if (p1)
                FNN_PREFETCH_W(p1 + off);
        }
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            VT av = VSET1(a[r * ars + k * aks]);
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                acc[r][v] = VFMA(av, bv[v], acc[r][v]);
        }
    }
}

static FNN_ALWAYS_INLINE FNN_TARGET void
FNN_NAME(accumulate)(VT acc[MRR][NRV], const int mr, const int nv, MT mask, const int msk,
                     ptrdiff_t K,
                     const FNN_T *a, ptrdiff_t ars, ptrdiff_t aks, const FNN_T *b, ptrdiff_t ldb,
                     FNN_T *pk)
{
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            acc[r][v] = VZERO;
    FNN_NAME(acc_range)(acc, mr, nv, mask, msk, 0, K, a, ars, aks, b, ldb, pk, NULL, NULL, NULL,
                        0);
}

/* x * act'(a) for FNN_EPI_DACT, the derivative written in terms of the
 * activation a (relu, tanh or sigmoid): tile's epilogue and ct_dact's */
static FNN_ALWAYS_INLINE FNN_TARGET VT FNN_NAME(dact)(VT x, VT a, int act)
{
    const VT one = VSET1((FNN_T) 1);
    if (act == FNN_RELU)
        return VSELPOS(x, a);
    if (act == FNN_TANH)
        return VMUL(x, VSUB(one, VMUL(a, a)));
    return VMUL(x, VMUL(a, VSUB(one, a)));
}

/* C[:, n0:n1] = epilogue(A(m x K) @ B(K x n)), B row-major (a weight matrix as
 * fastnn stores it, or a transposed copy of one): nothing is packed. The tile
 * keeps MRR x NRV accumulators in registers over the whole K loop, broadcasts
 * A[i, k] and streams B's row k; the last vector of a column block is masked.
 * epilogue (epi):
 *   FNN_EPI_BIAS: + bias[j], then relu in registers (act == RELU) or, for
 *                 tanh/sigmoid, the _fastmath.h row pass on the finished rows;
 *   FNN_EPI_DACT: * act'(ap[i, j]) with the derivative written in terms of
 *                 the activation ap (ap has C's leading dimension). */
static FNN_ALWAYS_INLINE FNN_TARGET void
FNN_NAME(tile)(const int mr, const int nv, MT mask, const int msk, ptrdiff_t K,
               const FNN_T *a, ptrdiff_t lda, const FNN_T *b, ptrdiff_t ldb,
               FNN_T *c, ptrdiff_t ldc, const FNN_T *bias, int epi, int act,
               const FNN_T *ap, FNN_T *pk)
{
    VT acc[MRR][NRV];
    FNN_NAME(accumulate)(acc, mr, nv, mask, msk, K, a, lda, 1, b, ldb, pk);
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            const int last = msk && v == nv - 1;
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
                x = FNN_NAME(dact)(x, last ? VLOADM(p, mask) : VLOAD(p), act);
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
        FNN_NAME(tile)(MR, NV, mask, 1, K, a + i0 * lda, lda, bj, ldb,        \
                       cj + i0 * ldc, ldc, biasj, epi, act,                   \
                       apj ? apj + i0 * ldc : NULL, NULL);                    \
        break;
#define FNN_TILE_CASES(NV) FNN_TILE_CASE(1, NV) FNN_TILE_CASE(2, NV)           \
    FNN_TILE_CASE(3, NV) FNN_TILE_CASE(4, NV) FNN_TILE_CASE(5, NV) FNN_TILE_CASE(6, NV)

/* Copy the panel B[0:K, j0:j0+cols] (cols <= NRV * VL) into bp, rows of
 * NRV * VL elements: the packed panel is contiguous, so it neither aliases in
 * the caches nor spans a TLB page per row, as a power-of-two ldb does. */
static inline FNN_TARGET void
FNN_NAME(pack_panel)(ptrdiff_t K, ptrdiff_t cols, const FNN_T *b, ptrdiff_t ldb, FNN_T *bp)
{
    if (cols == NRV * VL) {
        for (ptrdiff_t k = 0; k < K; k++) {
            const FNN_T *src = b + k * ldb;
            FNN_T *dst = bp + k * (NRV * VL);
#pragma GCC unroll 8
            for (int v = 0; v < NRV; v++)
                VSTORE(dst + v * VL, VLOAD(src + v * VL));
        }
    } else {
        for (ptrdiff_t k = 0; k < K; k++)
            memcpy(bp + k * (NRV * VL), b + k * ldb, (size_t) cols * sizeof(FNN_T));
    }
}

/* dst[c, r] = src[r, c] for r < rows, c < cols (rows lds and ldd apart), a
 * block of VL rows of dst at a time: VL x VL blocks transposed in registers
 * (VTRANS), the edges one by one (moves only) */
static FNN_TARGET void
FNN_NAME(transpose)(const FNN_T *src, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t lds, FNN_T *dst,
                    ptrdiff_t ldd)
{
    const ptrdiff_t rf = rows / VL * VL, cf = cols / VL * VL;
    for (ptrdiff_t c0 = 0; c0 < cf; c0 += VL)
        for (ptrdiff_t r0 = 0; r0 < rf; r0 += VL)
            VTRANS(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
    for (ptrdiff_t r = 0; r < rf; r++)
        for (ptrdiff_t c = cf; c < cols; c++)
            dst[c * ldd + r] = src[r * lds + c];
    for (ptrdiff_t r = rf; r < rows; r++)
        for (ptrdiff_t c = 0; c < cols; c++)
            dst[c * ldd + r] = src[r * lds + c];
}

/* The panel of B = W^T made of W's rows 0:cols (cols <= NRV * VL; each row
 * K long, ldw apart), packed as pack_panel packs B's: bp[j, c] = W[c, j]. */
static inline FNN_TARGET void
FNN_NAME(pack_panel_t)(ptrdiff_t K, ptrdiff_t cols, const FNN_T *w, ptrdiff_t ldw, FNN_T *bp)
{
    FNN_NAME(transpose)(w, cols, K, ldw, bp, NRV * VL);
}

/* The product of C[:, n0:n1] (see tile): column panels of NRV * VL, each
 * copied first into bp (K x NRV * VL elements) when bp is given and the
 * panel serves more than one block of rows; the arithmetic is the same
 * either way (the same bits). bt: b is B's transpose (W, rows ldb apart,
 * for dZ W^T), always packed by pack_panel_t (bp required). */
static FNN_TARGET void
FNN_NAME(gemm)(ptrdiff_t m, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t K,
               const FNN_T *a, ptrdiff_t lda, const FNN_T *b, ptrdiff_t ldb,
               FNN_T *c, ptrdiff_t ldc, const FNN_T *bias, int epi, int act,
               const FNN_T *ap, FNN_T *bp, int bt)
{
    const ptrdiff_t ldb0 = ldb;
    const int pack = bp != NULL && (bt || (m > MRR && FNN_PACK_B(ldb * (ptrdiff_t) sizeof(FNN_T))));
    for (ptrdiff_t j0 = n0; j0 < n1; j0 += NRV * VL) {
        ptrdiff_t cols = n1 - j0 < NRV * VL ? n1 - j0 : NRV * VL;
        int nv = (int) ((cols + VL - 1) / VL);
        MT mask = MASKN((int) (cols - (nv - 1) * VL));
        const FNN_T *bj = b + j0;
        FNN_T *cj = c + j0;
        const FNN_T *biasj = bias ? bias + j0 : NULL;
        const FNN_T *apj = ap ? ap + j0 : NULL;
        ptrdiff_t i00 = 0;
        if (pack && !bt && cols == NRV * VL && m >= MRR && (fnn_pack_mode & 16)) {
            /* the first block of rows reads the panel where W keeps it and
               copies it as it goes (the same arithmetic): the copy's loads
               overlap the tile's multiply-adds instead of taking a pass of
               their own; the other blocks read the copy */
            FNN_NAME(tile)(MRR, NRV, mask, 0, K, a, lda, bj, ldb0, cj, ldc, biasj, epi, act, apj,
                           bp);
            i00 = MRR;
            bj = bp;
            ldb = NRV * VL;
        } else if (pack) {
            if (bt)
                FNN_NAME(pack_panel_t)(K, cols, b + j0 * ldb0, ldb0, bp);
            else
                FNN_NAME(pack_panel)(K, cols, b + j0, ldb0, bp);
            bj = bp;
            ldb = NRV * VL;
        }
        for (ptrdiff_t i0 = i00; i0 < m; i0 += MRR) {
            int mr = (int) (m - i0 < MRR ? m - i0 : MRR);
            if (mr == MRR && cols == NRV * VL) {
                /* a full tile: no masked load or store (AVX2's vmaskmovps
                   and AVX-512's masked stores cost more than plain ones on
                   Zen 4, whatever the mask) */
                FNN_NAME(tile)(MRR, NRV, mask, 0, K, a + i0 * lda, lda, bj, ldb, cj + i0 * ldc,
                               ldc, biasj, epi, act, apj ? apj + i0 * ldc : NULL, NULL);
                continue;
            }
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
                default: abort(); /* a tile size the cases do not cover */
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

/* Fused weight gradient and optimizer update of rows k0:k1 of W (n_in x n):
 *   g = A[:, k]^T dZ[:, j] (summed over the batch rows in order, in registers)
 *       + l2 w + l1 sign(w)
 *   SGD:      v = mu v - lr g;  w = w + v                     (s0 = v)
 *   Nesterov: v = mu v - lr g;  w = w + (mu v - lr g)         (s0 = v)
 *   Adam:     m = b1 m + c1 g;  v = b2 v + c2 (g g);          (s0 = m, s1 = v)
 *             w = w decay - (at m) / (sqrt(v) st + eps)
 * (hp: the step's constants, fnn_step_*; decay = 1 - lr wd is skipped when
 * exactly 1). No gradient array: each register tile of g is consumed where
 * it is made. wt, when not NULL, is W's transposed copy (n x n_in), kept
 * equal to W. */
static FNN_ALWAYS_INLINE FNN_TARGET int
FNN_NAME(dwtile)(const int kr, const int nv, MT mask, const int msk, int valid_last,
                 ptrdiff_t bs,
                 const FNN_T *a, ptrdiff_t lda, const FNN_T *dz, ptrdiff_t ldz,
                 FNN_T *w, FNN_T *s0, FNN_T *s1, ptrdiff_t ldw, FNN_T *wt, ptrdiff_t ldwt,
                 const FNN_HP *hp)
{
    VT acc[MRR][NRV];
    /* The tile's W and slots are asked for again over the last kr * nv
       batch rows, a vector of each per row: the epilogue waited on them.
       The next tile's prefetch (dw_update, dw_packed), issued before its
       batch loop, had them evicted from the L1 by the dZ panel streaming
       through it (bs x 64 floats: the whole 32 KiB L1d at batch 128), and
       below batch 64 none is issued. Zen 4, two threads, [784, 1024, 1024,
       10] at batch 128: the epilogue's multiplies after its loads of W
       fell from 14.7 % of the tile's samples to 4.0 %, the tile from 35.6 %
       of the step's samples to 32.5 %. Epochs A/B in one process: 0.97x;
       0.82-0.85x at batch 32 (noisy: one run 1.03x); 0.98-0.99x at batch
       512, and at batch 128 on [784, 1500, 1000, 500, 10] and on [784,
       128, 10]. */
    const ptrdiff_t tail = bs >= kr * nv ? kr * nv : 0;
    FNN_NAME(accumulate)(acc, kr, nv, mask, msk, bs - tail, a, 1, lda, dz, ldz, NULL);
    if (tail)
        FNN_NAME(acc_range)(acc, kr, nv, mask, msk, bs - tail, bs, a, 1, lda, dz, ldz, NULL, w,
                            s0, s1,
                            ldw);
    const int adam = hp->kind == FNN_OPT_ADAM, nesterov = hp->nesterov;
    const VT lr = VSET1(hp->lr), mu = VSET1(hp->mu), l1 = VSET1(hp->l1), l2 = VSET1(hp->l2);
    const int use_l1 = hp->l1 != 0, use_decay = hp->decay != 1;
    /* w * 0 is 0 for a finite w, NaN for an infinite or NaN one: one sum of
       them per tile tells whether the update made a non-finite weight */
    VT chk = VZERO;
#pragma GCC unroll 8
    for (int r = 0; r < kr; r++) {
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            const int last = msk && v == nv - 1;
            FNN_T *wp = w + r * ldw + v * VL;
            FNN_T *p0 = s0 + r * ldw + v * VL;
            VT w0 = last ? VLOADM(wp, mask) : VLOAD(wp);
            VT x0 = last ? VLOADM(p0, mask) : VLOAD(p0);
            VT step = VADD(acc[r][v], VMUL(l2, w0));
            if (use_l1) {
                step = VADDPOS(step, w0, l1);
                step = VSUBNEG(step, w0, l1);
            }
            VT xn, wn;
            if (adam) {
                FNN_T *p1 = s1 + r * ldw + v * VL;
                VT y0 = last ? VLOADM(p1, mask) : VLOAD(p1);
                xn = VADD(VMUL(VSET1(hp->b1), x0), VMUL(VSET1(hp->c1), step));
                VT yn = VADD(VMUL(VSET1(hp->b2), y0), VMUL(VSET1(hp->c2), VMUL(step, step)));
                VT den = VADD(VMUL(VSQRT(yn), VSET1(hp->st)), VSET1(hp->eps));
                VT wd = use_decay ? VMUL(w0, VSET1(hp->decay)) : w0;
                wn = VSUB(wd, VDIV(VMUL(VSET1(hp->at), xn), den));
                if (last)
                    VSTOREM(p1, mask, yn);
                else
                    VSTORE(p1, yn);
            } else if (nesterov) {
                VT lrg = VMUL(lr, step);
                xn = VSUB(VMUL(mu, x0), lrg);
                wn = VADD(w0, VSUB(VMUL(mu, xn), lrg));
            } else {
                xn = VSUB(VMUL(mu, x0), VMUL(lr, step));
                wn = VADD(w0, xn);
            }
            if (last) {
                VSTOREM(p0, mask, xn);
                VSTOREM(wp, mask, wn);
                /* the valid lanes only, from the register: reading them back
                   from wp waited for the masked store to retire (no store
                   forwarding from a masked store on Zen 4), a stall at
                   every row of every tile */
                chk = VADD(chk, VMUL(VMASKZ(wn, mask), VZERO));
            } else {
                VSTORE(p0, xn);
                VSTORE(wp, wn);
                chk = VADD(chk, VMUL(wn, VZERO));
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
    FNN_T cl[VL];
    memcpy(cl, &chk, sizeof cl);
    int bad = 0;
    for (int q = 0; q < VL; q++)
        bad |= cl[q] != cl[q];
    return bad;
}

#define FNN_DW_CASE(KR, NV)                                                   \
    case (NV) * 8 + (KR):                                                     \
        bad |= FNN_NAME(dwtile)(KR, NV, mask, 1, valid, bs, at, ldat, dzt, ldzt, \
                                w + k * ldw + j0, s0 + k * ldw + j0,          \
                                s1 ? s1 + k * ldw + j0 : NULL, ldw,           \
                                wt ? wt + j0 * ldwt + k : NULL, ldwt, hp);    \
        break;
#define FNN_DW_CASES(NV) FNN_DW_CASE(1, NV) FNN_DW_CASE(2, NV) FNN_DW_CASE(3, NV) \
    FNN_DW_CASE(4, NV) FNN_DW_CASE(5, NV)

/* One register tile of dw_update: rows k:k+kr of W, columns j0:j0+cols, from
 * at (A's rows k.. at stride ldat per batch row) and dzt (dZ's columns j0.. at
 * stride ldzt); all MRR rows by an out-of-line function (dwtile_rows), the
 * last rows of a range (kr < MRR) inlined. */
#define FNN_DW_TILE()                                                         \
    do {                                                                      \
        if (kr == MRR) {                                                      \
            bad |= FNN_NAME(dwtile_rows)(nv, mask, valid, bs, at, ldat, dzt,  \
                                         ldzt, w + k * ldw + j0,              \
                                         s0 + k * ldw + j0,                   \
                                         s1 ? s1 + k * ldw + j0 : NULL, ldw,  \
                                         wt ? wt + j0 * ldwt + k : NULL,      \
                                         ldwt, hp);                           \
            break;                                                            \
        }                                                                     \
        switch (nv * 8 + kr) {                                                \
            FNN_DW_CASES(1)                                                   \
            FNN_DW_MORE_CASES                                                 \
            default: abort(); /* a tile size the cases do not cover */        \
        }                                                                     \
    } while (0)
#if NRV >= 4
#define FNN_DW_MORE_CASES FNN_DW_CASES(2) FNN_DW_CASES(3) FNN_DW_CASES(4)
#elif NRV >= 2
#define FNN_DW_MORE_CASES FNN_DW_CASES(2)
#else
#define FNN_DW_MORE_CASES
#endif

/* The tiles of dwtile with all MRR rows, out of line: one expansion per
 * function, so GCC keeps all the accumulators in registers (inlined among
 * the edge cases, the full tile spilled one of them to the stack inside the
 * batch loop, and the narrower ones, a layer's last panel when its width is
 * not a multiple of NRV * VL, up to all of them: at batch 512 the 1000-wide
 * layer's last 40 columns took 3.5x the full tile's time per multiply-add). */
#define FNN_DW_OUT_OF_LINE(NAME, NV, MSK)                                        \
    static FNN_NOINLINE FNN_TARGET int                                           \
    NAME(MT mask, int valid_last, ptrdiff_t bs, const FNN_T *a, ptrdiff_t lda,   \
         const FNN_T *dz, ptrdiff_t ldz, FNN_T *w, FNN_T *s0, FNN_T *s1,         \
         ptrdiff_t ldw, FNN_T *wt, ptrdiff_t ldwt, const FNN_HP *hp)             \
    {                                                                            \
        return FNN_NAME(dwtile)(MRR, NV, mask, MSK, valid_last, bs, a, lda, dz, ldz, \
                                w, s0, s1, ldw, wt, ldwt, hp);                   \
    }
/* the full tile of full width (every load and store unmasked: see gemm),
   and of a narrower last panel */
FNN_DW_OUT_OF_LINE(FNN_NAME(dwtile_full), NRV, 0)
FNN_DW_OUT_OF_LINE(FNN_NAME(dwtile_fullm), NRV, 1)
#if NRV > 1
FNN_DW_OUT_OF_LINE(FNN_NAME(dwtile_v1), 1, 1)
#endif
#if NRV > 2
FNN_DW_OUT_OF_LINE(FNN_NAME(dwtile_v2), 2, 1)
FNN_DW_OUT_OF_LINE(FNN_NAME(dwtile_v3), 3, 1)
#endif
#undef FNN_DW_OUT_OF_LINE

/* A tile of all MRR rows and nv vectors, by its out-of-line function */
static FNN_ALWAYS_INLINE FNN_TARGET int
FNN_NAME(dwtile_rows)(int nv, MT mask, int valid_last, ptrdiff_t bs, const FNN_T *a,
                      ptrdiff_t lda, const FNN_T *dz, ptrdiff_t ldz, FNN_T *w, FNN_T *s0,
                      FNN_T *s1, ptrdiff_t ldw, FNN_T *wt, ptrdiff_t ldwt, const FNN_HP *hp)
{
    switch (nv) {
#if NRV > 1
    case 1:
        return FNN_NAME(dwtile_v1)(mask, valid_last, bs, a, lda, dz, ldz, w, s0, s1, ldw, wt,
                                   ldwt, hp);
#endif
#if NRV > 2
    case 2:
        return FNN_NAME(dwtile_v2)(mask, valid_last, bs, a, lda, dz, ldz, w, s0, s1, ldw, wt,
                                   ldwt, hp);
    case 3:
        return FNN_NAME(dwtile_v3)(mask, valid_last, bs, a, lda, dz, ldz, w, s0, s1, ldw, wt,
                                   ldwt, hp);
#endif
    case NRV:
        if (valid_last < VL)
            return FNN_NAME(dwtile_fullm)(mask, valid_last, bs, a, lda, dz, ldz, w, s0, s1, ldw,
                                          wt, ldwt, hp);
        return FNN_NAME(dwtile_full)(mask, valid_last, bs, a, lda, dz, ldz, w, s0, s1, ldw,
                                     wt, ldwt, hp);
    default:
        abort(); /* a tile size the cases do not cover */
    }
}

/* Prefetch, for writing, rows k:k+rows and columns j:j+cols of W and of its
 * slots: the next tile's, which the hardware prefetchers do not guess (rows
 * ldw apart, a few lines each; both of dw_update's loops). */
static FNN_ALWAYS_INLINE FNN_TARGET void
FNN_NAME(prefetch_wtile)(FNN_T *w, FNN_T *s0, FNN_T *s1, ptrdiff_t ldw, ptrdiff_t k, ptrdiff_t j,
                         ptrdiff_t rows, ptrdiff_t cols)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        const ptrdiff_t off = (k + r) * ldw + j;
        for (ptrdiff_t c = 0; c < cols; c += 64 / (ptrdiff_t) sizeof(FNN_T)) {
            FNN_PREFETCH_W(w + off + c);
            FNN_PREFETCH_W(s0 + off + c);
            if (s1)
                FNN_PREFETCH_W(s1 + off + c);
        }
    }
}

/* dw_update's packed loop (below), out of line: one expansion of the tile
 * cases per function keeps GCC's register allocation of the accumulators.
 * nc: columns of W per chunk (fnn_dw_chunk_cols, a multiple of NRV * VL). */
static FNN_TARGET FNN_NOINLINE int
FNN_NAME(dw_packed)(ptrdiff_t bs, ptrdiff_t k0, ptrdiff_t k1, ptrdiff_t n0, ptrdiff_t n1,
                    const FNN_T *a, ptrdiff_t lda, const FNN_T *dz, ptrdiff_t ldz,
                    FNN_T *w, FNN_T *s0, FNN_T *s1, ptrdiff_t ldw, FNN_T *wt, ptrdiff_t ldwt,
                    const FNN_HP *hp, FNN_T *pk, ptrdiff_t nc, ptrdiff_t na, int dz_ready)
{
    int bad = 0;
    const ptrdiff_t P = NRV * VL, KB = FNN_DW_BLOCK_ROWS;
    FNN_T *dzp = pk, *ap = pk + bs * nc;
    /* dZ's panels already in pk: the previous call's, of its one chunk */
    const int packed = dz_ready && n1 - n0 <= nc;
    /* A's columns packed at the first chunk, all of them, and kept for the
       others (fnn_dw_a_cols), when there are others and there is room */
    const int keep_a = n1 - n0 > nc && k1 - k0 <= na;
    for (ptrdiff_t c0 = n0; c0 < n1; c0 += nc) {
        const ptrdiff_t c1 = n1 - c0 < nc ? n1 : c0 + nc;
        /* the chunk's panels of dZ, each bs x P, contiguous, packed once */
        for (ptrdiff_t j0 = c0; j0 < c1 && !packed; j0 += P)
            FNN_NAME(pack_panel)(bs, c1 - j0 < P ? c1 - j0 : P, dz + j0, ldz,
                                 dzp + (j0 - c0) * bs);
        for (ptrdiff_t kb = k0; kb < k1; kb += KB) {
            const ptrdiff_t ke = k1 - kb < KB ? k1 : kb + KB;
            FNN_T *apb = keep_a ? ap + (kb - k0) * bs : ap;
            const int pack_a = !keep_a || c0 == n0;
            /* A's columns kb:ke, written tile by tile: ap[tile][i][r] = A[i, k + r],
               16 batch rows at a time (their runs, 16 x 48 values, stay in L1
               while every tile takes its part, and each tile's part is one
               contiguous store stream); the next 16 rows' runs prefetched (rows
               lda apart are a stride the hardware prefetchers follow late).
               Row by row over all tiles, the copy waited on its scattered
               stores and its loads: 15-20 % of a [784, 128, 10] batch-512 step. */
            for (ptrdiff_t i0 = 0; i0 < bs && pack_a; i0 += 16) {
                const ptrdiff_t i1 = bs - i0 < 16 ? bs : i0 + 16;
                for (ptrdiff_t i = i1; i < i1 + 16 && i < bs; i++)
                    for (ptrdiff_t c = kb; c < ke; c += 64 / (ptrdiff_t) sizeof(FNN_T))
                        FNN_PREFETCH_R(a + i * lda + c);
                for (ptrdiff_t k = kb; k < ke; k += MRR) {
                    const ptrdiff_t kr = ke - k < MRR ? ke - k : MRR;
                    FNN_T *dst = apb + (k - kb) * bs;
                    for (ptrdiff_t i = i0; i < i1; i++) {
                        const FNN_T *src = a + i * lda + k;
                        if (kr == MRR) /* one block move (16 + 8 bytes for float) */
                            memcpy(dst + i * MRR, src, MRR * sizeof(FNN_T));
                        else
                            for (ptrdiff_t r = 0; r < kr; r++)
                                dst[i * MRR + r] = src[r];
                    }
                }
            }
            for (ptrdiff_t j0 = c0; j0 < c1; j0 += P) {
                ptrdiff_t cols = c1 - j0 < P ? c1 - j0 : P;
                int nv = (int) ((cols + VL - 1) / VL);
                int valid = (int) (cols - (nv - 1) * VL);
                MT mask = MASKN(valid);
                const FNN_T *dzt = dzp + (j0 - c0) * bs;
                const ptrdiff_t ldat = MRR, ldzt = P;
                for (ptrdiff_t k = kb; k < ke; k += MRR) {
                    int kr = (int) (ke - k < MRR ? ke - k : MRR);
                    const FNN_T *at = apb + (k - kb) * bs;
                    /* the next tile's weights and slots: the next rows of
                       this panel, else the block's next panel, else the next
                       block's or chunk's first (without the last two, the
                       last tile of a block's panel waited on its W: 1 in 8) */
                    ptrdiff_t nk = k + MRR, nj = j0, nb = ke, nce = c1;
                    if (nk >= ke) {
                        nk = kb, nj = j0 + P;
                        if (nj >= c1) {
                            nk = ke, nj = c0;
                            if (nk >= k1)
                                nk = k0, nj = c1, nce = n1 - c1 < nc ? n1 : c1 + nc;
                            nb = k1 - nk < KB ? k1 : nk + KB;
                        }
                    }
                    if (nj < n1)
                        FNN_NAME(prefetch_wtile)(w, s0, s1, ldw, nk, nj,
                                                 nb - nk < MRR ? nb - nk : MRR,
                                                 nce - nj < P ? nce - nj : P);
                    FNN_DW_TILE();
                }
            }
        }
    }
    return bad;
}

/* The fused weight gradient and update of W[k0:k1, n0:n1] (see dwtile); the
 * tiles' arithmetic, and so the bits, are the same in both loops:
 *  - with pk (room for bs * (nc + na) elements, na >= FNN_DW_BLOCK_ROWS):
 *    chunks of nc columns of W (fnn_dw_chunk_cols: their dZ, bs x nc, takes
 *    half the L2), whose dZ panels (bs x NRV * VL each, contiguous) are
 *    packed once; per chunk, blocks of FNN_DW_BLOCK_ROWS rows of W, whose
 *    columns of A are packed (per tile, MRR values per batch row,
 *    contiguous; at the first chunk only, when there are several and all
 *    k1 - k0 columns fit in na), then every tile of the block, panel by
 *    panel; the next tile's W and slots are prefetched (dw_packed);
 *  - without: tiles row by row, A and dZ read in place (small batches).
 * It packs when A's or dZ's rows alias in L1 (FNN_PACK_DW), or when a dZ
 * panel read in place (bs x NRV * VL) would not fit in the L1d: [784, 1000,
 * 1000, 10] at batch 512 on an Intel Xeon (48 KiB L1d), one thread, the
 * 1000 x 1000 layer's dw_update: 62 GFLOP/s in place, 125 packed; at batch
 * 32 (8 KiB panels) 101 in place, 83 packed. */
static FNN_TARGET int
FNN_NAME(dw_update)(ptrdiff_t bs, ptrdiff_t k0, ptrdiff_t k1, ptrdiff_t n0, ptrdiff_t n1,
                    const FNN_T *a, ptrdiff_t lda, const FNN_T *dz, ptrdiff_t ldz,
                    FNN_T *w, FNN_T *s0, FNN_T *s1, ptrdiff_t ldw, FNN_T *wt, ptrdiff_t ldwt,
                    const FNN_HP *hp, FNN_T *pk, ptrdiff_t nc, ptrdiff_t na, int dz_ready)
{
    if (pk != NULL && (FNN_PACK_DW(lda * (ptrdiff_t) sizeof(FNN_T), ldz * (ptrdiff_t) sizeof(FNN_T))
                       || bs * NRV * VL * (ptrdiff_t) sizeof(FNN_T) > fnn_caches()[0]))
        return FNN_NAME(dw_packed)(bs, k0, k1, n0, n1, a, lda, dz, ldz, w, s0, s1, ldw, wt, ldwt,
                                   hp, pk, nc, na, dz_ready);
    int bad = 0;
    const ptrdiff_t P = NRV * VL;
    for (ptrdiff_t k = k0; k < k1; k += MRR) {
        int kr = (int) (k1 - k < MRR ? k1 - k : MRR);
        for (ptrdiff_t j0 = n0; j0 < n1; j0 += P) {
            ptrdiff_t cols = n1 - j0 < P ? n1 - j0 : P;
            int nv = (int) ((cols + VL - 1) / VL);
            int valid = (int) (cols - (nv - 1) * VL);
            MT mask = MASKN(valid);
            const FNN_T *at = a + k, *dzt = dz + j0;
            const ptrdiff_t ldat = lda, ldzt = ldz;
            if (bs >= FNN_DW_PREFETCH_ROWS) {
                /* the next tile's weights and slots (the next panel of these
                   rows, else the next rows' first panel), fetched during this
                   tile's batch loop: its epilogue otherwise waited on them
                   (the first layer's W is not in the caches) */
                ptrdiff_t nk = k, nj = j0 + P;
                if (nj >= n1)
                    nk = k + MRR, nj = n0;
                if (nk < k1)
                    FNN_NAME(prefetch_wtile)(w, s0, s1, ldw, nk, nj, k1 - nk < MRR ? k1 - nk : MRR,
                                             n1 - nj < P ? n1 - nj : P);
            }
            FNN_DW_TILE();
        }
    }
    return bad;
}

#undef FNN_DW_TILE
#undef FNN_DW_MORE_CASES

/* Bias gradient (column sums of dZ, rows in order) and its update, columns
 * j0:j1: the rules of dwtile without penalties or decay (s0, s1 as there).
 * Returns nonzero when an updated bias is not finite. */
static FNN_TARGET int
FNN_NAME(db_update)(ptrdiff_t bs, ptrdiff_t j0, ptrdiff_t j1, const FNN_T *dz,
                    ptrdiff_t ldz, FNN_T *b, FNN_T *s0, FNN_T *s1, const FNN_HP *hp)
{
    FNN_T g[64];
    FNN_T chk = 0;
    const FNN_T lr = hp->lr, mu = hp->mu;
    for (ptrdiff_t c0 = j0; c0 < j1; c0 += 64) {
        ptrdiff_t nc = j1 - c0 < 64 ? j1 - c0 : 64;
        for (ptrdiff_t j = 0; j < nc; j++)
            g[j] = dz[c0 + j];
        for (ptrdiff_t i = 1; i < bs; i++)
            for (ptrdiff_t j = 0; j < nc; j++)
                g[j] = g[j] + dz[i * ldz + c0 + j];
        if (hp->kind == FNN_OPT_ADAM) {
            const FNN_T b1 = hp->b1, c1 = hp->c1, b2 = hp->b2, c2 = hp->c2;
            const FNN_T at = hp->at, st = hp->st, eps = hp->eps;
            for (ptrdiff_t j = 0; j < nc; j++) {
                FNN_T m = b1 * s0[c0 + j] + c1 * g[j];
                FNN_T v = b2 * s1[c0 + j] + c2 * (g[j] * g[j]);
                s0[c0 + j] = m;
                s1[c0 + j] = v;
                b[c0 + j] = b[c0 + j] - (at * m) / (FNN_SQRT(v) * st + eps);
                chk = chk + b[c0 + j] * 0;
            }
        } else if (hp->nesterov) {
            for (ptrdiff_t j = 0; j < nc; j++) {
                FNN_T lrg = lr * g[j];
                FNN_T vi = mu * s0[c0 + j] - lrg;
                s0[c0 + j] = vi;
                b[c0 + j] = b[c0 + j] + (mu * vi - lrg);
                chk = chk + b[c0 + j] * 0;
            }
        } else {
            for (ptrdiff_t j = 0; j < nc; j++) {
                FNN_T vi = mu * s0[c0 + j] - lr * g[j];
                s0[c0 + j] = vi;
                b[c0 + j] = b[c0 + j] + vi;
                chk = chk + b[c0 + j] * 0;
            }
        }
    }
    return chk != chk;
}

/* Inverted dropout of the flat elements e0:e1 of a layer's batch (a[e],
 * e = i * width + j): element e is kept iff u16(e) >= thr, where
 * u16(e) = (mix64(key + (e >> 2)) >> (16 (e & 3))) & 0xFFFF; kept elements
 * are multiplied by scale, dropped ones set to 0, and mask[e] = kept (0/1).
 * a or mask may be NULL (no activations: the mask only; no mask: not stored).
 * thr > 0xFFFF drops every element. The mixes of a block are written as
 * uint64 and read back as their four uint16 lanes (little-endian order), so
 * the generation is a vectorisable loop of 64-bit multiplies. */
static FNN_TARGET void
FNN_NAME(drop)(FNN_T *a, uint8_t *mask, ptrdiff_t e0, ptrdiff_t e1, uint64_t key,
               uint32_t thr, FNN_T scale)
{
    uint16_t u[FNN_DROP_CHUNK + 8] FNN_ALIGNED64;
    const int none = thr > 0xFFFF;
    const uint16_t t16 = (uint16_t) (none ? 0 : thr);
    while (e0 < e1) {
        const ptrdiff_t g0 = e0 >> 2, off = e0 - (g0 << 2);
        const ptrdiff_t n = e1 - e0 < FNN_DROP_CHUNK ? e1 - e0 : FNN_DROP_CHUNK;
        const ptrdiff_t ng = (off + n + 3) >> 2;
        const uint64_t base = key + (uint64_t) g0;
#if FNN_MAY_ALIAS && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        fnn_u64a *h = (fnn_u64a *) u;
        for (ptrdiff_t k = 0; k < ng; k++)
            h[k] = fnn_mix64(base + (uint64_t) k);
#else
        for (ptrdiff_t k = 0; k < ng; k++) {
            uint64_t hk = fnn_mix64(base + (uint64_t) k);
            for (int q = 0; q < 4; q++)
                u[4 * k + q] = (uint16_t) (hk >> (16 * q));
        }
#endif
        const uint16_t *uu = u + off;
        if (none) {
            if (mask)
                memset(mask + e0, 0, (size_t) n);
            if (a)
                for (ptrdiff_t k = 0; k < n; k++)
                    a[e0 + k] = 0;
        } else {
            if (mask) {
                uint8_t *mk = mask + e0;
                for (ptrdiff_t k = 0; k < n; k++)
                    mk[k] = uu[k] >= t16;
            }
            if (a) {
                FNN_T *ak = a + e0;
                for (ptrdiff_t k = 0; k < n; k++)
                    ak[k] = uu[k] >= t16 ? ak[k] * scale : (FNN_T) 0;
            }
        }
        e0 += n;
    }
}

/* The backward of dropout on a hidden layer's dZ, rows 0:rows, columns j0:j1
 * (d, the layer's activations ad after dropout and its mask share the
 * leading dimension ld): d = mask ? d * act'(a) * scale : 0, where act' is
 * evaluated at the undropped activation a, recovered as ad * inv (inv =
 * 1 - rate; ReLU reads the sign of ad, which is exact). */
static FNN_TARGET void
FNN_NAME(dropbwd)(FNN_T *d, const FNN_T *ad, const uint8_t *mask, ptrdiff_t ld,
                  ptrdiff_t rows, ptrdiff_t j0, ptrdiff_t j1, int act, FNN_T scale,
                  FNN_T inv)
{
    for (ptrdiff_t i = 0; i < rows; i++) {
        FNN_T *dr = d + i * ld;
        const FNN_T *ar = ad + i * ld;
        const uint8_t *mr = mask + i * ld;
        if (act == FNN_RELU) {
            for (ptrdiff_t j = j0; j < j1; j++)
                dr[j] = mr[j] && ar[j] > 0 ? dr[j] * scale : (FNN_T) 0;
        } else if (act == FNN_TANH) {
            for (ptrdiff_t j = j0; j < j1; j++) {
                FNN_T u = ar[j] * inv;
                FNN_T x = dr[j] * ((FNN_T) 1 - u * u);
                dr[j] = mr[j] ? x * scale : (FNN_T) 0;
            }
        } else if (act == FNN_SIGMOID) {
            for (ptrdiff_t j = j0; j < j1; j++) {
                FNN_T u = ar[j] * inv;
                FNN_T x = dr[j] * (u * ((FNN_T) 1 - u));
                dr[j] = mr[j] ? x * scale : (FNN_T) 0;
            }
        } else {
            for (ptrdiff_t j = j0; j < j1; j++)
                dr[j] = mr[j] ? dr[j] * scale : (FNN_T) 0;
        }
    }
}

/* out[i, r] = s[r, i] * act'(ap[i, r]) for r < rows, i < bs (out and ap ldo
 * apart, s's rows bs apart): the C^T form's way back (_gemm_train.h), with
 * tile's FNN_EPI_DACT epilogue (dact; FNN_IDENTITY: a copy); VL x VL blocks of s transposed in registers into
 * t, then a vector of a row of out at a time */
static FNN_TARGET void
FNN_NAME(ct_dact)(const FNN_T *s, ptrdiff_t rows, ptrdiff_t bs, FNN_T *out, ptrdiff_t ldo,
                  const FNN_T *ap, int act)
{
    FNN_T t[VL * VL] FNN_ALIGNED64;
    for (ptrdiff_t i0 = 0; i0 < bs; i0 += VL) {
        const ptrdiff_t ni = bs - i0 < VL ? bs - i0 : VL;
        for (ptrdiff_t r0 = 0; r0 < rows; r0 += VL) {
            const ptrdiff_t nr = rows - r0 < VL ? rows - r0 : VL;
            const int part = nr < VL;
            const MT mask = MASKN((int) nr);
            (void) mask; /* (none in the generic kernels) */
            if (ni == VL && !part)
                VTRANS(s + r0 * bs + i0, bs, t, VL);
            else
                for (ptrdiff_t i = 0; i < ni; i++)
                    for (ptrdiff_t r = 0; r < nr; r++)
                        t[i * VL + r] = s[(r0 + r) * bs + i0 + i];
            for (ptrdiff_t i = 0; i < ni; i++) {
                VT x = part ? VLOADM(t + i * VL, mask) : VLOAD(t + i * VL);
                FNN_T *o = out + (i0 + i) * ldo + r0;
                if (act != FNN_IDENTITY) {
                    const FNN_T *p = ap + (i0 + i) * ldo + r0;
                    x = FNN_NAME(dact)(x, part ? VLOADM(p, mask) : VLOAD(p), act);
                }
                if (part)
                    VSTOREM(o, mask, x);
                else
                    VSTORE(o, x);
            }
        }
    }
}

#undef FNN_TILE_CASE
#undef FNN_TILE_CASES
#undef FNN_DW_CASE
#undef FNN_DW_CASES

/* This instantiation's entry of the micro-kernel registry (fnn_ukernels,
 * _gemm.h; the contract: _ukernel.h) */
static const FNN_F(fnn_kern_t) FNN_NAME(ukernel) = {
    FNN_STR(FNN_ISA), MRR, NRV, VL, NRV * VL,
    FNN_NAME(gemm), FNN_NAME(dw_update), FNN_NAME(db_update), FNN_NAME(drop), FNN_NAME(dropbwd),
    FNN_NAME(transpose), FNN_NAME(ct_dact)};
