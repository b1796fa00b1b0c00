/* The micro-kernel contract, one dtype per inclusion (FNN_SFX f or d; no
 * include guard on purpose): what every instruction set's kernels provide,
 * as one registry entry (fnn_kern_t_f / _d). _gemm_isa.h makes each entry
 * (fnn_ukernel_<isa>_<f|d>), fnn_ukernels (_gemm.h) lists them best first,
 * and fnn_gemm_select copies the chosen one into fnn_kern_f / _d, which the
 * training loop (_gemm_train.h) and the Python-facing entry points call.
 *
 * The register tile: mr rows x nrv vectors of vl lanes, kept in registers
 * over the whole reduction; a packed panel row holds pw = nrv * vl columns.
 *   gemm     C[:, n0:n1] = epilogue(A @ B): FNN_EPI_BIAS adds the bias and
 *            applies the activation, FNN_EPI_DACT multiplies by the
 *            activation's derivative, before the tile leaves the registers;
 *            B packed into bp per panel when it pays (bt: B given as its
 *            transpose, W, for dZ W^T)
 *   dw       the weight gradient A^T dZ of rows k0:k1, columns n0:n1 of W,
 *            with the optimizer's update applied to each tile of W (and its
 *            slots s0, s1) in registers; nonzero when an update made a
 *            non-finite weight. With pk it may pack dZ's panels there (a
 *            chunk of nc columns), then A's columns (room for na of them);
 *            dz_ready says pk already holds dZ's (the previous call's, on
 *            the same dZ and columns, within one chunk of nc)
 *   db       the bias gradient (dZ's column sums) and its update
 *   drop     dropout masks (counter-based, any element from its index) and
 *            their application; dropbwd their backward with act'
 *   trans    a transpose (moves only), ct_dact the C^T form's transpose
 *            back with gemm's FNN_EPI_DACT epilogue (_gemm_train.h)
 * Each reduces every output element in one accumulator in index order, so
 * results are the same for every thread split and every SIMD variant. */
typedef struct {
    const char *isa;  /* "avx512", "avx2", "neon" or "generic" */
    int mr, nrv;      /* the register tile: mr rows x nrv vectors */
    ptrdiff_t vl;     /* lanes of a vector */
    ptrdiff_t pw;     /* columns of a register tile (nrv * vl): a packed panel's row */
    void (*gemm)(ptrdiff_t m, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t K,
                 const FNN_T *a, ptrdiff_t lda, const FNN_T *b, ptrdiff_t ldb,
                 FNN_T *c, ptrdiff_t ldc, const FNN_T *bias, int epi, int act,
                 const FNN_T *ap, FNN_T *bp, int bt);
    int (*dw)(ptrdiff_t bs, ptrdiff_t k0, ptrdiff_t k1, ptrdiff_t n0, ptrdiff_t n1,
              const FNN_T *a, ptrdiff_t lda, const FNN_T *dz, ptrdiff_t ldz,
              FNN_T *w, FNN_T *s0, FNN_T *s1, ptrdiff_t ldw, FNN_T *wt, ptrdiff_t ldwt,
              const FNN_HP *hp, FNN_T *pk, ptrdiff_t nc, ptrdiff_t na, int dz_ready);
    int (*db)(ptrdiff_t bs, ptrdiff_t j0, ptrdiff_t j1, const FNN_T *dz,
              ptrdiff_t ldz, FNN_T *b, FNN_T *s0, FNN_T *s1, const FNN_HP *hp);
    void (*drop)(FNN_T *a, uint8_t *mask, ptrdiff_t e0, ptrdiff_t e1, uint64_t key,
                 uint32_t thr, FNN_T scale);
    void (*dropbwd)(FNN_T *d, const FNN_T *ad, const uint8_t *mask, ptrdiff_t ld,
                    ptrdiff_t rows, ptrdiff_t j0, ptrdiff_t j1, int act, FNN_T scale,
                    FNN_T inv);
    void (*trans)(const FNN_T *src, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t lds, FNN_T *dst,
                  ptrdiff_t ldd);
    void (*ct_dact)(const FNN_T *s, ptrdiff_t rows, ptrdiff_t bs, FNN_T *out, ptrdiff_t ldo,
                    const FNN_T *ap, int act);
} FNN_F(fnn_kern_t);
