/* The mini-batch training loop on fastnn's own kernels, one dtype per inclusion
 * (included twice by _gemm.h with FNN_SFX f or d, from which FNN_T, FNN_F,
 * FNN_HP, FNN_LOG and FNN_EXP_NEG follow; no include guard on purpose). It
 * calls the micro-kernels of the selected registry entry (fnn_kern_f / _d,
 * the contract: _ukernel.h). */

/* A buffer for one packed panel of K rows (K x pw elements, 64-byte
 * aligned), or NULL when it cannot be had (the products then read B in
 * place). */
static FNN_T *FNN_F(fnn_pack_alloc)(ptrdiff_t K, ptrdiff_t pw, int copies)
{
    size_t bytes = (size_t) K * (size_t) pw * sizeof(FNN_T);
    bytes = (bytes + 63) / 64 * 64;
    return (FNN_T *) fnn_aligned_alloc(bytes * (size_t) copies);
}

static FNN_F(fnn_kern_t) FNN_F(fnn_kern);

#include "_sparse.h"

/* The optimizer's update of W[0:d, n0:n1] (rows ld apart; slots s0, s1 alike;
 * wt, when not NULL, W's transposed copy, ldwt apart, kept equal) from a
 * gradient G made beforehand (d rows, ld apart): by the CSR products (every
 * row of W_0, touched by the batch or not, as on the dense path: a zero
 * gradient still moves a row by momentum, penalties, decay and Adam's
 * moments) and by the exact sums. It is dw's fused update on a batch of one
 * row whose A is 1, so g = 1 * G exactly: row by row, or, for whole rows
 * without wt (a contiguous block), as one row of d * ld elements (the same
 * elementwise update; short rows would cost a call each). */
static int FNN_F(fnn_update_rows)(const FNN_F(fnn_kern_t) *K, ptrdiff_t d, ptrdiff_t n0,
                                  ptrdiff_t n1, const FNN_T *g, FNN_T *w, FNN_T *s0, FNN_T *s1,
                                  ptrdiff_t ld, FNN_T *wt, ptrdiff_t ldwt, const FNN_HP *hp)
{
    const FNN_T one = 1;
    if (n0 == 0 && n1 == ld && wt == NULL)
        return K->dw(1, 0, 1, 0, d * ld, &one, 1, g, d * ld, w, s0, s1, d * ld, NULL, 0, hp,
                     NULL, 0, 0, 0);
    int bad = 0;
    for (ptrdiff_t k = 0; k < d; k++)
        bad |= K->dw(1, 0, 1, n0, n1, &one, 1, g + k * ld, ld, w + k * ld, s0 + k * ld,
                     s1 ? s1 + k * ld : NULL, ld, wt ? wt + k : NULL, ldwt, hp, NULL, 0, 0, 0);
    return bad;
}

/* out(batch x n_out) = act(x @ w + b) on fastnn's kernels, one thread. */
static void FNN_F(fnn_dense_forward)(const FNN_T *x, const FNN_T *w, const FNN_T *b,
                                     FNN_T *out, ptrdiff_t batch, ptrdiff_t n_in,
                                     ptrdiff_t n_out, int act)
{
    if (FNN_F(fnn_kern).gemm == NULL)
        fnn_gemm_select(NULL);
    /* a packing buffer only where the product packs (see FNN_PACK_B) */
    FNN_T *bp = batch > 1 && FNN_PACK_B(n_out * (ptrdiff_t) sizeof(FNN_T))
                    ? FNN_F(fnn_pack_alloc)(n_in, FNN_F(fnn_kern).pw, 1) : NULL;
    FNN_F(fnn_kern).gemm(batch, 0, n_out, n_in, x, n_in, w, n_out, out, n_out, b,
                         FNN_EPI_BIAS, act, NULL, bp, 0);
    fnn_aligned_free(bp);
}

#ifndef FNN_LOSS_CODES
#define FNN_LOSS_CODES
/* The output layer's loss (fnn_bufs_t.loss; fastnn.kernels.LOSSES) */
enum { FNN_LOSS_XENT = 0, FNN_LOSS_BXENT = 1, FNN_LOSS_SQERR = 2 };
#endif

/* The per-row factor of a batch's loss and gradient: 1/batch, or with wnorm
 * (and weights) 1/sum(w) of the batch (0 where every weight is 0: the batch
 * then contributes nothing). *denom gets the divisor in double (the loss's). */
static FNN_T FNN_F(fnn_loss_inv)(const FNN_T *sw, ptrdiff_t batch, int wnorm, double *denom)
{
    if (!(wnorm && sw)) {
        *denom = (double) batch;
        return (FNN_T) 1 / (FNN_T) batch;
    }
    double s = 0;
    for (ptrdiff_t i = 0; i < batch; i++)
        s += (double) sw[i];
    *denom = s > 0 ? s : 1.0;
    return s > 0 ? (FNN_T) (1.0 / s) : (FNN_T) 0;
}

/* Softmax cross-entropy of one batch, as _kernels.pyx's _softmax_xent:
 * returns the mean loss sum_i w_i CE_i / batch, g_i = w_i (softmax(z_i) -
 * onehot(y_i)) / batch (sw NULL: every w_i = 1, with exactly the unweighted
 * arithmetic; wnorm: divided by sum_i w_i instead of batch); n_correct
 * (unweighted) -1 on a label outside [0, k). gw 0 (the _w variants of the
 * three losses): the weights stay out of g (g_i as with w_i = 1, still
 * divided by sum_i w_i with wnorm), for the exact sums, which apply them. */
static double FNN_F(fnn_xent_w)(const FNN_T *z, const ptrdiff_t *y, const FNN_T *sw, FNN_T *g,
                                ptrdiff_t batch, ptrdiff_t k, int wnorm, ptrdiff_t *n_correct,
                                int gw)
{
    double denom;
    const FNN_T inv_batch = FNN_F(fnn_loss_inv)(sw, batch, wnorm, &denom);
    double total = 0;
    ptrdiff_t correct = 0;
    for (ptrdiff_t i = 0; i < batch; i++) {
        const FNN_T *zr = z + i * k;
        FNN_T *gr = g + i * k;
        FNN_T m = zr[0], s = 0;
        ptrdiff_t arg = 0;
        for (ptrdiff_t j = 1; j < k; j++)
            if (zr[j] > m) {
                m = zr[j];
                arg = j;
            }
        for (ptrdiff_t j = 0; j < k; j++)
            gr[j] = FNN_EXP_NEG(zr[j] - m);
        for (ptrdiff_t j = 0; j < k; j++)
            s = s + gr[j];
        ptrdiff_t label = y[i];
        if (label < 0 || label >= k) {
            *n_correct = -1;
            return 0;
        }
        double ce = (double) FNN_LOG(s) - ((double) zr[label] - (double) m);
        FNN_T wi = inv_batch;
        if (sw) {
            if (gw)
                wi = sw[i] * inv_batch;
            ce = (double) sw[i] * ce;
        }
        total += ce;
        FNN_T scale = wi / s;
        for (ptrdiff_t j = 0; j < k; j++)
            gr[j] = gr[j] * scale;
        gr[label] = gr[label] - wi;
        if (arg == label)
            correct++;
    }
    *n_correct = correct;
    return total / denom;
}

/* Binary cross-entropy of one logistic output (z: batch x 1, y in {0, 1}):
 * returns sum_i w_i BCE_i / batch with BCE = log(1 + e^-|z|) + max(z, 0) -
 * y z (in double: finite for any finite z), g_i = w_i (sigmoid(z_i) - y_i) /
 * batch (wnorm: divided by sum_i w_i); n_correct counts (z > 0) == y
 * (unweighted), -1 on a label outside {0, 1}. */
static double FNN_F(fnn_bxent_w)(const FNN_T *z, const ptrdiff_t *y, const FNN_T *sw, FNN_T *g,
                                 ptrdiff_t batch, int wnorm, ptrdiff_t *n_correct, int gw)
{
    double denom;
    const FNN_T inv = FNN_F(fnn_loss_inv)(sw, batch, wnorm, &denom);
    double total = 0;
    ptrdiff_t correct = 0;
    for (ptrdiff_t i = 0; i < batch; i++) {
        const FNN_T zi = z[i];
        const ptrdiff_t label = y[i];
        if (label < 0 || label > 1) {
            *n_correct = -1;
            return 0;
        }
        const FNN_T e = FNN_EXP_NEG(zi < 0 ? zi : -zi);
        const FNN_T p = zi >= 0 ? (FNN_T) 1 / ((FNN_T) 1 + e) : e / ((FNN_T) 1 + e);
        double l = log1p((double) e) + (zi > 0 ? (double) zi : 0.0)
                   - (label ? (double) zi : 0.0);
        FNN_T wi = inv;
        if (sw) {
            if (gw)
                wi = sw[i] * inv;
            l = (double) sw[i] * l;
        }
        total += l;
        g[i] = (p - (FNN_T) label) * wi;
        if ((zi > 0) == (label == 1))
            correct++;
    }
    *n_correct = correct;
    return total / denom;
}

static double FNN_F(fnn_bxent)(const FNN_T *z, const ptrdiff_t *y, const FNN_T *sw, FNN_T *g,
                               ptrdiff_t batch, int wnorm, ptrdiff_t *n_correct)
{
    return FNN_F(fnn_bxent_w)(z, y, sw, g, batch, wnorm, n_correct, 1);
}

/* Squared error of one batch against the targets t (rows: the row of t of
 * each batch row, NULL: row i): returns sum_i w_i (1/2) sum_j (z_ij -
 * t_ij)^2 / batch, g_ij = w_i (z_ij - t_ij) / batch (wnorm: divided by
 * sum_i w_i), scikit-learn's convention (its squared_error's gradient). */
static double FNN_F(fnn_sqerr_w)(const FNN_T *z, const FNN_T *t, const ptrdiff_t *rows,
                                 const FNN_T *sw, FNN_T *g, ptrdiff_t batch, ptrdiff_t k,
                                 int wnorm, int gw)
{
    double denom;
    const FNN_T inv = FNN_F(fnn_loss_inv)(sw, batch, wnorm, &denom);
    double total = 0;
    for (ptrdiff_t i = 0; i < batch; i++) {
        const FNN_T *zr = z + i * k;
        const FNN_T *tr = t + (rows ? rows[i] : i) * k;
        FNN_T *gr = g + i * k;
        const FNN_T wi = sw && gw ? sw[i] * inv : inv;
        double l = 0;
        for (ptrdiff_t j = 0; j < k; j++) {
            const FNN_T d = zr[j] - tr[j];
            l += (double) d * (double) d;
            gr[j] = d * wi;
        }
        l *= 0.5;
        total += sw ? (double) sw[i] * l : l;
    }
    return total / denom;
}

static double FNN_F(fnn_sqerr)(const FNN_T *z, const FNN_T *t, const ptrdiff_t *rows,
                               const FNN_T *sw, FNN_T *g, ptrdiff_t batch, ptrdiff_t k,
                               int wnorm)
{
    return FNN_F(fnn_sqerr_w)(z, t, rows, sw, g, batch, k, wnorm, 1);
}

/* The buffers and data of one training call (the Python wrapper validated
 * them: shapes, dtypes, disjointness). Flat layouts (offsets from sizes):
 *   params, slot0, slot1, wt: [W_0, ..., W_{L-1}, b_0, ..., b_{L-1}]; wt
 *       holds W_l^T for every layer but the first (work space);
 *   slot0: SGD's velocity or Adam's m; slot1: Adam's v (NULL for SGD);
 *   acts: A_0 (the gathered batch), A_1, ..., A_L, each batch_size x sizes[l];
 *   masks: the dropout masks of A_1..A_{L-1}, at A_l's offset in acts
 *       (0/1 bytes; A_0's part is not written: nothing flows back to X);
 *   deltas: two batch_size x max(sizes[1:]) ping-pong buffers;
 *   ybuf, wbuf: the batch's labels (loss FNN_LOSS_SQERR: its rows of X and
 *       t) and sample weights (sw NULL: unweighted);
 *   t: the targets (n_rows x sizes[n_layers]) of FNN_LOSS_SQERR (y unused);
 *   x_indptr, x_indices (NULL: X dense): X in CSR, x its x_nnz values; a
 *       batch's rows are scattered into A_0 (dense), duplicates summed; or,
 *       with x_csr (and no input dropout), A_0 is not made: the first
 *       layer's forward and weight gradient read the CSR rows in place
 *       (_sparse.h), the gradient made in wt's first-layer part (W_0's size,
 *       otherwise unused: zeroed by the call, kept 0 between batches) and
 *       every row of W_0 then updated from it (fnn_update_rows).
 * loss: FNN_LOSS_*; wnorm: a batch's loss is divided by its weight sum
 * rather than its number of rows.
 * drop: NULL, or n_layers rates in [0, 1) (drop[0]: the input) with their
 * thresholds drop_thr[l] = round(rate * 65536).
 * aug: NULL, or the deformation of every gathered row (_augment.h), keyed by
 * (seed, epoch, the row's index in x).
 * exact: the weight and bias gradients' batch sums in double with the sample
 * weights applied there, not in the loss's gradient (fnn_dw_exact): an
 * integer weight then trains as repeated rows, to the last bit but for a
 * double rounding; slower (the double products), and never the CSR products. */
typedef struct {
    const FNN_T *x, *sw;
    const ptrdiff_t *y, *order;
    ptrdiff_t n_rows, start, stop, batch_size;
    const ptrdiff_t *sizes;
    ptrdiff_t n_layers;
    int act;
    FNN_T *params, *wt, *slot0, *slot1, *acts, *deltas, *wbuf;
    ptrdiff_t *ybuf;
    uint8_t *masks;
    const double *drop;
    const uint32_t *drop_thr;
    const fnn_aug_t *aug;
    uint64_t seed, epoch;
    const FNN_T *t;
    int loss, wnorm;
    const ptrdiff_t *x_indptr, *x_indices;
    ptrdiff_t x_nnz;
    int x_csr;
    int exact;
    /* the step plan's split threshold for this call (fnn_split_fwd/bwd's
       min_macs) when split_fixed, as chosen by the caller (fastnn.training's
       plan tuner); split_fixed 0: the measured one (fnn_par_min_macs) */
    int split_fixed;
    double split_macs;
} FNN_F(fnn_bufs_t);

/* Row r of a CSR X scattered into the dense row out (d columns; duplicates
 * summed, as scipy's toarray). The caller validated the structure; it is
 * checked again as it is read (another thread could change it): returns 0,
 * with out unspecified, on an index outside its range. */
static int FNN_F(fnn_csr_row)(const FNN_F(fnn_bufs_t) *B, ptrdiff_t r, FNN_T *out, ptrdiff_t d)
{
    const ptrdiff_t k0 = B->x_indptr[r], k1 = B->x_indptr[r + 1];
    if (k0 < 0 || k1 < k0 || k1 > B->x_nnz)
        return 0;
    memset(out, 0, (size_t) d * sizeof(FNN_T));
    for (ptrdiff_t k = k0; k < k1; k++) {
        const ptrdiff_t j = B->x_indices[k];
        if (j < 0 || j >= d)
            return 0;
        out[j] = out[j] + B->x[k];
    }
    return 1;
}

typedef struct {
    const FNN_F(fnn_bufs_t) *b;
    const fnn_opt_t *opt;
    ptrdiff_t n_w, max_width;
    FNN_T *pack;            /* nt packing buffers of pack_stride elements, or NULL */
    int use_wt;             /* dZ_prev reads wt, kept equal to W (else W^T panels) */
    int pack_gemm, pack_dw; /* the products pack B panels; dw_update its operands */
    int col_split0;         /* the first layer's backward split by columns (see body) */
    ptrdiff_t pack_stride;
    ptrdiff_t dw_nc;        /* dw_update's columns of W per chunk (fnn_dw_chunk_cols) */
    ptrdiff_t dw_na;        /* dw_update's room for A's columns (fnn_dw_a_cols) */
    ptrdiff_t gemm_stride;  /* a packing buffer's part for the products' panels */
    float *aug_work;        /* nt work spaces of aug_stride floats (elastic) */
    ptrdiff_t aug_stride;
    FNN_F(fnn_kern_t) K;
    int nt;
    fnn_split_rule_t split_rule; /* fnn_split_fwd/bwd's rule (fnn_split_rule) */
    fnn_barrier_t barrier;
    int status;            /* 1: corrupt index or label, 2: diverged, 3: no team */
    ptrdiff_t fail_s0;     /* batch start where it stopped */
    double *loss_sum;
    ptrdiff_t *n_correct;
    double pen_scale;      /* wnorm: the batch's bs / sum(w) (thread 0 sets it) */
    double *xsum;          /* exact: nt work spaces of xsum_stride doubles */
    ptrdiff_t xsum_stride;
    FNN_T *ct;             /* nt work spaces of ct_stride for dZ_prev's C^T form */
    ptrdiff_t ct_stride;   /* (fnn_ct_form), or NULL */
} FNN_F(fnn_train_ctx);

typedef struct {
    FNN_F(fnn_train_ctx) *c;
    int tid;
} FNN_F(fnn_train_arg);

/* Dropout of layer l's block of columns lo:hi (all of a batch's bs rows),
 * by the thread that made them. */
static inline void FNN_F(fnn_drop_block)(const FNN_F(fnn_kern_t) *K, FNN_T *a, uint8_t *mask,
                                         ptrdiff_t bs, ptrdiff_t width, ptrdiff_t lo,
                                         ptrdiff_t hi, uint64_t key, uint32_t thr, FNN_T scale)
{
    if (lo == 0 && hi == width) {
        K->drop(a, mask, 0, bs * width, key, thr, scale);
        return;
    }
    for (ptrdiff_t i = 0; i < bs; i++)
        K->drop(a, mask, i * width + lo, i * width + hi, key, thr, scale);
}

/* dZ_prev's columns of W's rows k (a thread's `rows` of them) in the
 * transposed form: C^T = W[k, :] dZ^T (the products' kernel with W's rows as
 * its A, read in place, and dZ^T as its B, transposed once per layer), then
 * C^T transposed into dZ_prev with act' applied. Every element is the same
 * sum, in the same order, of the same products (an FMA's two factors
 * commute): the same bits as the W^T panels. It transposes dZ (bs x no) and
 * C^T (rows x bs) instead of the thread's rows of W (rows x no): chosen when
 * that moves fewer elements, bs (no + rows) < rows no (batch 128 of a
 * 1024-wide layer on two threads, not batch 512), from FNN_CT_MIN_ROWS rows.
 * _pack_panels bit 32. */
#define FNN_CT_MIN_ROWS 16
static inline int FNN_F(fnn_ct_form)(ptrdiff_t bs, ptrdiff_t rows, ptrdiff_t no)
{
    return (fnn_pack_mode & 32) && bs >= FNN_CT_MIN_ROWS && bs * (no + rows) < rows * no;
}

/* Rows of W per panel of the backward's one pass over a layer (span rows:
 * this thread's): a panel of W (rows x n_out) takes a quarter of the L2, so
 * it is still there when its dW and update follow dZ_prev's product, beside
 * dZ's packed panels (at most half the L2, fnn_dw_chunk_cols) and the
 * optimizer's slots streaming through; whole panels of the products' tile
 * (K.pw columns of dZ_prev). One panel (no pass split) when dZ takes more
 * than one chunk (its packing could not be reused), or as
 * fnn_fuse_rows says (tests and measurements). */
static ptrdiff_t FNN_F(fnn_fuse_rows_of)(const FNN_F(fnn_train_ctx) *c, ptrdiff_t n_out,
                                         ptrdiff_t span)
{
    ptrdiff_t r = fnn_fuse_rows; /* read once (a volatile switch) */
    if (r == 0 || (r < 0 && n_out > c->dw_nc))
        return span;
    if (r < 0)
        r = fnn_caches()[1] / 4 / (n_out * (ptrdiff_t) sizeof(FNN_T)) / c->K.pw * c->K.pw;
    r = r < c->K.pw ? c->K.pw : r;
    return r < span ? r : span;
}

/* The exact sums (fnn_bufs_t.exact), on one thread's work space xw (see
 * fnn_train: dZ's weighted double copy, then FNN_EXACT_ROWS rows of A^T and
 * of G in double, then as many of G rounded to FNN_T; rows ld apart, dZ's
 * and W's). */
#define FNN_EXACT_ROWS 24
#define FNN_EXACT_NARROW 8
/* the work space's part for A^T's rows (or G^T's narrow block) */
#define FNN_EXACT_AT(bs) (FNN_EXACT_ROWS * ((bs) > FNN_EXACT_NARROW ? (bs) : FNN_EXACT_NARROW))

/* dzw (bs x n, double) = w_i dZ[i, :] (w NULL: dZ): exact for a float dZ and
 * small integer weights (27 significant bits). (The conversions are
 * elementwise, so FNN_CLONES's variants give the same bits.) */
FNN_CLONES static void FNN_F(fnn_exact_dz)(double *restrict dzw, const FNN_T *restrict dz,
                                           const FNN_T *restrict w, ptrdiff_t bs, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < bs; i++) {
        const double wi = w ? (double) w[i] : 1.0;
        for (ptrdiff_t j = 0; j < n; j++)
            dzw[i * n + j] = wi * (double) dz[i * n + j];
    }
}

/* at (m x bs, double) = A[:, k0:k0+m]^T, read a row of A at a time. */
FNN_CLONES static void FNN_F(fnn_exact_at)(double *restrict at, const FNN_T *restrict a,
                                           ptrdiff_t lda, ptrdiff_t bs, ptrdiff_t k0,
                                           ptrdiff_t m)
{
    for (ptrdiff_t i = 0; i < bs; i++) {
        const FNN_T *ar = a + i * lda + k0;
        for (ptrdiff_t r = 0; r < m; r++)
            at[r * bs + i] = (double) ar[r];
    }
}

/* gt (n1 - n0 x m, double) = G[k0:k0+m, n0:n1]^T = sum_i dzw[i, j] A[i, k]:
 * for the narrow layers (n1 - n0 < FNN_EXACT_NARROW), where the double
 * products' tile would compute one column in a vector; here the rows of A
 * are the vectors. For float data, the same bits as the products' kernel
 * (exact products, each element's sum in row order). */
FNN_CLONES static void FNN_F(fnn_exact_gt)(double *restrict gt, const FNN_T *restrict a,
                                           ptrdiff_t lda, const double *restrict dzw,
                                           ptrdiff_t ldzw, ptrdiff_t bs, ptrdiff_t k0,
                                           ptrdiff_t m, ptrdiff_t n0, ptrdiff_t n1)
{
    for (ptrdiff_t q = 0; q < (n1 - n0) * m; q++)
        gt[q] = 0;
    for (ptrdiff_t i = 0; i < bs; i++) {
        const FNN_T *ar = a + i * lda + k0;
        for (ptrdiff_t j = n0; j < n1; j++) {
            const double d = dzw[i * ldzw + j];
            double *gr = gt + (j - n0) * m;
            for (ptrdiff_t r = 0; r < m; r++)
                gr[r] += (double) ar[r] * d;
        }
    }
}

/* s[j0:j1] = dzw's column sums, every column in row order; gf the same
 * rounded to FNN_T. */
FNN_CLONES static void FNN_F(fnn_exact_colsum)(double *restrict s, FNN_T *restrict gf,
                                               const double *restrict dzw, ptrdiff_t ld,
                                               ptrdiff_t bs, ptrdiff_t j0, ptrdiff_t j1)
{
    for (ptrdiff_t j = j0; j < j1; j++)
        s[j] = 0;
    for (ptrdiff_t i = 0; i < bs; i++)
        for (ptrdiff_t j = j0; j < j1; j++)
            s[j] += dzw[i * ld + j];
    for (ptrdiff_t j = j0; j < j1; j++)
        gf[j] = (FNN_T) s[j];
}

/* The gradient of W[k0:k1, n0:n1], sum_i A[i, k] dzw[i, j] with the double
 * products' kernel (each product of a float A and a dzw exact, the sum in
 * row order; narrow layers: fnn_exact_gt), rounded to FNN_T, then the
 * optimizer's update from it (fnn_update_rows), FNN_EXACT_ROWS rows of W at
 * a time. Nonzero when an update made a non-finite weight. */
static int FNN_F(fnn_dw_exact)(const FNN_F(fnn_kern_t) *K, double *xw, ptrdiff_t bs,
                               ptrdiff_t ld, ptrdiff_t k0, ptrdiff_t k1, ptrdiff_t n0,
                               ptrdiff_t n1, const FNN_T *a, ptrdiff_t lda, FNN_T *w, FNN_T *s0,
                               FNN_T *s1, FNN_T *wt, ptrdiff_t ldwt, const FNN_HP *hp)
{
    const double *dzw = xw;
    double *at = xw + bs * ld, *g = at + FNN_EXACT_AT(bs);
    FNN_T *gf = (FNN_T *) (g + FNN_EXACT_ROWS * ld);
    int bad = 0;
    for (ptrdiff_t kb = k0; kb < k1; kb += FNN_EXACT_ROWS) {
        const ptrdiff_t m = k1 - kb < FNN_EXACT_ROWS ? k1 - kb : FNN_EXACT_ROWS;
        if (n1 - n0 < FNN_EXACT_NARROW) {
            /* G^T's block where A^T's would be, rounded into gf's rows */
            FNN_F(fnn_exact_gt)(at, a, lda, dzw, ld, bs, kb, m, n0, n1);
            for (ptrdiff_t r = 0; r < m; r++)
                for (ptrdiff_t j = n0; j < n1; j++)
                    gf[r * ld + j] = (FNN_T) at[(j - n0) * m + r];
        } else {
            FNN_F(fnn_exact_at)(at, a, lda, bs, kb, m);
            fnn_kern_d.gemm(m, n0, n1, bs, at, bs, dzw, ld, g, ld, NULL, FNN_EPI_DACT,
                            FNN_IDENTITY, NULL, NULL, 0);
            for (ptrdiff_t r = 0; r < m; r++)
                for (ptrdiff_t j = n0; j < n1; j++)
                    gf[r * ld + j] = (FNN_T) g[r * ld + j];
        }
        bad |= FNN_F(fnn_update_rows)(K, m, n0, n1, gf, w + kb * ld, s0 + kb * ld,
                                      s1 ? s1 + kb * ld : NULL, ld, wt ? wt + kb : NULL, ldwt,
                                      hp);
    }
    return bad;
}

/* The bias's gradient on columns j0:j1, dzw's column sums in double (row
 * order) rounded to FNN_T, and its update (db on a batch of that one row). */
static int FNN_F(fnn_db_exact)(const FNN_F(fnn_kern_t) *K, double *xw, ptrdiff_t bs,
                               ptrdiff_t ld, ptrdiff_t j0, ptrdiff_t j1, FNN_T *b, FNN_T *s0,
                               FNN_T *s1, const FNN_HP *hp)
{
    const double *dzw = xw;
    double *s = xw + bs * ld + FNN_EXACT_AT(bs); /* G's first row */
    FNN_T *gf = (FNN_T *) (s + FNN_EXACT_ROWS * ld);
    FNN_F(fnn_exact_colsum)(s, gf, dzw, ld, bs, j0, j1);
    return K->db(1, j0, j1, gf, ld, b, s0, s1, hp);
}

/* One thread's share of every step of the call (thread 0 also does the
 * loss and the phases too small to split). Every decision to leave
 * the loop is the value returned by a barrier, the same for all threads;
 * which phases are split (and so where the barriers are) comes from
 * fnn_split_fwd/fnn_split_bwd alone. */
static void FNN_F(fnn_train_body)(FNN_F(fnn_train_ctx) *c, int tid)
{
    const FNN_F(fnn_bufs_t) *B = c->b;
    const FNN_F(fnn_kern_t) K = c->K;
    const int nt = c->nt, act = B->act;
    const fnn_split_rule_t *rule = &c->split_rule;
    const ptrdiff_t *sizes = B->sizes, n_layers = B->n_layers, batch_size = B->batch_size;
    const ptrdiff_t d = sizes[0], kcls = sizes[n_layers];
    FNN_T *params = B->params, *wt = B->wt, *acts = B->acts;
    FNN_T *s0 = B->slot0, *s1 = B->slot1;
    uint8_t *masks = B->masks;
    const double *drop = B->drop;
    const uint32_t *thr = B->drop_thr;
    FNN_T *bp = c->pack ? c->pack + tid * c->pack_stride : NULL;
    /* the unit of a split by columns: a cache line (and a vector) */
    const ptrdiff_t cu = (ptrdiff_t) (64 / sizeof(FNN_T)) > K.vl ? (ptrdiff_t) (64 / sizeof(FNN_T)) : K.vl;
    FNN_HP hp;
    /* the first layer's products on X's CSR rows (see fnn_bufs_t) */
    const int csr = B->x_indptr != NULL && B->x_csr && !B->exact && !(drop && drop[0] > 0);
    /* the exact sums' work space (fnn_dw_exact) */
    double *xw = B->exact ? c->xsum + tid * c->xsum_stride : NULL;
#define FNN_SYNC() fnn_barrier_sync(&c->barrier, nt, 1, &c->status)
    for (ptrdiff_t pos = B->start; pos < B->stop; pos += batch_size) {
        const ptrdiff_t bs = B->stop - pos < batch_size ? B->stop - pos : batch_size;
        /* the step's optimizer constants (Adam: step t + k for the k-th batch
           of the call) and dropout's step counter: a batch's position in the
           epoch, whatever the call */
        FNN_F(fnn_step_make)(&hp, c->opt, c->opt->t + 1 + (pos - B->start) / batch_size);
        const uint64_t step = (uint64_t) (pos / batch_size);
        ptrdiff_t lo, hi;
        /* gather (deformed, when augmenting; and input dropout on the
           gathered copy) */
        fnn_split(bs, 1, nt, tid, &lo, &hi);
        int ok = 1;
        for (ptrdiff_t i = lo; i < hi; i++) {
            ptrdiff_t r = B->order[pos + i];
            if (r < 0 || r >= B->n_rows) {
                FNN_STORE(&c->fail_s0, pos, RELAXED);
                FNN_STORE(&c->status, 1, RELAXED);
                ok = 0;
                break;
            }
            if (B->x_indptr == NULL) {
                if (B->aug) {
                    /* the next image's source, fetched while this one is
                       deformed: the bilinear sampling reads a row of X in a
                       deformed order, which the hardware prefetchers do not
                       follow (its first loads missed the caches) */
                    if (i + 1 < hi) {
                        const ptrdiff_t rn = B->order[pos + i + 1];
                        if (rn >= 0 && rn < B->n_rows)
                            fnn_prefetch_span(B->x + rn * d, (size_t) d * sizeof(FNN_T));
                    }
                    FNN_F(fnn_aug_row)(B->aug, B->x + r * d, acts + i * d,
                                       fnn_aug_key(B->seed, B->epoch, (uint64_t) r),
                                       c->aug_work ? c->aug_work + tid * c->aug_stride : NULL);
                } else
                    memcpy(acts + i * d, B->x + r * d, (size_t) d * sizeof(FNN_T));
            } else if (!csr && !FNN_F(fnn_csr_row)(B, r, acts + i * d, d)) {
                FNN_STORE(&c->fail_s0, pos, RELAXED);
                FNN_STORE(&c->status, 1, RELAXED);
                ok = 0;
                break;
            }
            B->ybuf[i] = B->loss == FNN_LOSS_SQERR ? r : B->y[r];
            if (B->sw)
                B->wbuf[i] = B->sw[r];
        }
        if (ok && drop && drop[0] > 0 && lo < hi)
            K.drop(acts, NULL, lo * d, hi * d, fnn_drop_key(B->seed, B->epoch, step, 0), thr[0],
                   (FNN_T) (1.0 / (1.0 - drop[0])));
        if (FNN_SYNC())
            break;
        fnn_test_delay(tid, 1);
        /* forward (hidden dropout after the activation, on the columns this
           thread made) */
        ptrdiff_t woff = 0, boff = c->n_w, aoff = 0;
        int split = fnn_split_fwd(sizes, n_layers, 0, bs, nt, rule);
        for (ptrdiff_t l = 0; l < n_layers; l++) {
            const ptrdiff_t ni = sizes[l], no = sizes[l + 1];
            const FNN_T *a_in = acts + aoff;
            aoff += batch_size * ni;
            if (split)
                fnn_split(no, cu, nt, tid, &lo, &hi);
            else
                lo = 0, hi = tid == 0 ? no : 0;
            if (lo < hi) {
                if (l == 0 && csr) {
                    if (!FNN_F(fnn_csr_forward)(bs, B->order + pos, B->n_rows, B->x_indptr,
                                                B->x_indices, B->x, B->x_nnz, d, params, no,
                                                params + boff, acts + aoff, no, lo, hi,
                                                n_layers > 1 ? act : FNN_IDENTITY)) {
                        FNN_STORE(&c->fail_s0, pos, RELAXED);
                        FNN_STORE(&c->status, 1, RELAXED);
                    }
                } else
                    K.gemm(bs, lo, hi, ni, a_in, ni, params + woff, no, acts + aoff, no,
                           params + boff, FNN_EPI_BIAS, l < n_layers - 1 ? act : FNN_IDENTITY,
                           NULL, c->pack_gemm ? bp : NULL, 0);
                if (drop && l < n_layers - 1 && drop[l + 1] > 0)
                    FNN_F(fnn_drop_block)(&K, acts + aoff, masks + aoff, bs, no, lo, hi,
                                          fnn_drop_key(B->seed, B->epoch, step,
                                                       (uint64_t) (l + 1)),
                                          thr[l + 1], (FNN_T) (1.0 / (1.0 - drop[l + 1])));
            }
            /* the next phase: the next layer's forward, or the loss (thread 0) */
            int next = l + 1 < n_layers && fnn_split_fwd(sizes, n_layers, l + 1, bs, nt, rule);
            if (split || next)
                (void) FNN_SYNC();
            split = next;
            woff += ni * no;
            boff += no;
        }
        /* loss and its gradient w.r.t. the logits */
        FNN_T *delta = B->deltas, *delta_prev = B->deltas + batch_size * c->max_width, *tmp;
        if (tid == 0) {
            ptrdiff_t nc = 0;
            const FNN_T *wb = B->sw ? B->wbuf : NULL;
            const int gw = !B->exact; /* exact: the weights go into the sums */
            double loss;
            if (B->loss == FNN_LOSS_SQERR)
                loss = FNN_F(fnn_sqerr_w)(acts + aoff, B->t, B->ybuf, wb, delta, bs, kcls,
                                          B->wnorm, gw);
            else if (B->loss == FNN_LOSS_BXENT)
                loss = FNN_F(fnn_bxent_w)(acts + aoff, B->ybuf, wb, delta, bs, B->wnorm, &nc,
                                          gw);
            else
                loss = FNN_F(fnn_xent_w)(acts + aoff, B->ybuf, wb, delta, bs, kcls, B->wnorm,
                                         &nc, gw);
            if (B->wnorm && B->sw) {
                /* the penalties per unit of weight, as the loss: l1, l2 times
                   bs / sum(w) (none on a batch of weight 0) */
                double sw = 0;
                for (ptrdiff_t i = 0; i < bs; i++)
                    sw += (double) B->wbuf[i];
                c->pen_scale = sw > 0 ? (double) bs / sw : 0.0;
            }
            if (nc < 0 || !isfinite(loss)) {
                FNN_STORE(&c->fail_s0, pos, RELAXED);
                FNN_STORE(&c->status, nc < 0 ? 1 : 2, RELAXED);
            } else {
                *c->loss_sum += loss * (double) bs;
                *c->n_correct += nc;
            }
        }
        fnn_test_delay(tid, 2);
        if (FNN_SYNC())
            break;
        if (B->wnorm && B->sw) {
            hp.l1 = (FNN_T) (c->opt->l1 * c->pen_scale);
            hp.l2 = (FNN_T) (c->opt->l2 * c->pen_scale);
        }
        /* backward, last layer first: dZ_prev with the old W (times the
           dropout mask), then W's update; a non-finite weight or bias made
           by the update is flagged (the call stops after this step) */
        int bad = 0;
        split = fnn_split_bwd(sizes, n_layers, n_layers - 1, bs, nt, rule);
        for (ptrdiff_t l = n_layers - 1; l >= 0; l--) {
            const ptrdiff_t ni = sizes[l], no = sizes[l + 1];
            woff -= ni * no;
            boff -= no;
            aoff -= batch_size * ni;
            /* the first layer (no dZ_prev) is split by columns as its forward
               is, when its rows are whole cache lines (col_split0): each thread
               updates the weights it read there, which stay in its core's
               cache, and no line is written by two threads; else, and for the
               other layers, by rows of W (dZ_prev's columns, whose W rows each
               thread reads before it updates them) */
            const int by_cols = l == 0 && (c->col_split0 || csr);
            const ptrdiff_t extent = by_cols ? no : ni;
            if (split)
                fnn_split(extent, by_cols ? cu : K.vl, nt, tid, &lo, &hi);
            else
                lo = 0, hi = tid == 0 ? extent : 0;
            const int does_db = !by_cols && tid == (split ? nt - 1 : 0);
            if (xw && (lo < hi || does_db))
                FNN_F(fnn_exact_dz)(xw, delta, B->sw ? B->wbuf : NULL, bs, no);
            if (lo < hi && by_cols && xw) {
                bad |= FNN_F(fnn_dw_exact)(&K, xw, bs, no, 0, ni, lo, hi, acts + aoff, ni,
                                           params + woff, s0 + woff, s1 ? s1 + woff : NULL,
                                           NULL, ni, &hp);
                bad |= FNN_F(fnn_db_exact)(&K, xw, bs, no, lo, hi, params + boff, s0 + boff,
                                           s1 ? s1 + boff : NULL, &hp);
            } else if (lo < hi && by_cols && csr) {
                /* G = X_b^T dZ on this thread's columns (in wt's first-layer
                   part, 0 outside the rows the batch touches), every row's
                   update, then the touched rows back to 0 */
                FNN_T *g = wt;
                int ok = FNN_F(fnn_csr_wgrad)(bs, B->order + pos, B->n_rows, B->x_indptr,
                                              B->x_indices, B->x, B->x_nnz, d, delta, no, g,
                                              no, lo, hi, 0);
                bad |= FNN_F(fnn_update_rows)(&K, d, lo, hi, g, params, s0, s1, no, NULL, 0, &hp);
                ok &= FNN_F(fnn_csr_wgrad)(bs, B->order + pos, B->n_rows, B->x_indptr,
                                           B->x_indices, B->x, B->x_nnz, d, delta, no, g, no,
                                           lo, hi, 1);
                if (!ok) {
                    FNN_STORE(&c->fail_s0, pos, RELAXED);
                    FNN_STORE(&c->status, 1, RELAXED);
                }
                bad |= K.db(bs, lo, hi, delta, no, params + boff, s0 + boff,
                            s1 ? s1 + boff : NULL, &hp);
            } else if (lo < hi && by_cols) {
                bad |= K.dw(bs, 0, ni, lo, hi, acts + aoff, ni, delta, no, params + woff,
                            s0 + woff, s1 ? s1 + woff : NULL, no, NULL, ni,
                            &hp, c->pack_dw && bs > 1 ? bp : NULL, c->dw_nc, c->dw_na, 0);
                bad |= K.db(bs, lo, hi, delta, no, params + boff, s0 + boff,
                            s1 ? s1 + boff : NULL, &hp);
            } else if (lo < hi) {
                const int dl = l > 0 && drop && drop[l] > 0;
                /* dZ_prev = dZ W^T with the old W (times the activation's
                   derivative, or the dropout mask's backward), then W's dW
                   and update, in one pass over this thread's rows lo:hi: per
                   panel of fnn_fuse_rows_of rows, dZ_prev's columns from the
                   panel's old rows (W^T's panels packed from W's rows,
                   transposed in registers), then the panel's dW and update
                   while the rows are still in the L2 (dZ's packed panels, in
                   the second part of the buffer, reused from panel to panel).
                   Small batches read the transposed copy wt instead, kept
                   equal to W by dW's updates: one panel. */
                const int bt = l > 0 && !c->use_wt;
                const int ct = bt && c->ct != NULL && FNN_F(fnn_ct_form)(bs, hi - lo, no)
                               && bs * (no + hi - lo) <= c->ct_stride; /* (a last, smaller batch) */
                FNN_T *dzt = ct ? c->ct + tid * c->ct_stride : NULL, *sct = ct ? dzt + no * bs : NULL;
                if (ct)
                    K.trans(delta, bs, no, no, dzt, bs);
                FNN_T *pk = c->pack_dw && bs > 1 ? bp : NULL;
                const ptrdiff_t pr = bt && pk ? FNN_F(fnn_fuse_rows_of)(c, no, hi - lo) : hi - lo;
                if (pr < hi - lo)
                    pk += c->gemm_stride;
                for (ptrdiff_t k0 = lo; k0 < hi; k0 += pr) {
                    const ptrdiff_t k1 = hi - k0 < pr ? hi : k0 + pr;
                    if (l > 0) {
                        if (ct) {
                            K.gemm(k1 - k0, 0, bs, no, params + woff + k0 * no, no, dzt, bs, sct,
                                   bs, NULL, FNN_EPI_DACT, FNN_IDENTITY, NULL, NULL, 0);
                            K.ct_dact(sct, k1 - k0, bs, delta_prev + k0, ni,
                                      acts + aoff + k0, dl ? FNN_IDENTITY : act);
                        } else if (bt)
                            K.gemm(bs, k0, k1, no, delta, no, params + woff, no, delta_prev, ni,
                                   NULL, FNN_EPI_DACT, dl ? FNN_IDENTITY : act, acts + aoff, bp, 1);
                        else
                            K.gemm(bs, k0, k1, no, delta, no, wt + woff, ni, delta_prev, ni,
                                   NULL, FNN_EPI_DACT, dl ? FNN_IDENTITY : act, acts + aoff,
                                   c->pack_gemm ? bp : NULL, 0);
                        if (dl)
                            K.dropbwd(delta_prev, acts + aoff, masks + aoff, ni, bs, k0, k1,
                                      act, (FNN_T) (1.0 / (1.0 - drop[l])),
                                      (FNN_T) (1.0 - drop[l]));
                    }
                    if (xw)
                        bad |= FNN_F(fnn_dw_exact)(&K, xw, bs, no, k0, k1, 0, no, acts + aoff,
                                                   ni, params + woff, s0 + woff,
                                                   s1 ? s1 + woff : NULL,
                                                   l > 0 && c->use_wt ? wt + woff : NULL, ni,
                                                   &hp);
                    else
                        bad |= K.dw(bs, k0, k1, 0, no, acts + aoff, ni, delta, no,
                                    params + woff, s0 + woff, s1 ? s1 + woff : NULL, no,
                                    l > 0 && c->use_wt ? wt + woff : NULL, ni, &hp, pk,
                                    c->dw_nc, c->dw_na, k0 > lo);
                }
            }
            if (does_db && xw)
                bad |= FNN_F(fnn_db_exact)(&K, xw, bs, no, 0, no, params + boff, s0 + boff,
                                           s1 ? s1 + boff : NULL, &hp);
            else if (does_db)
                bad |= K.db(bs, 0, no, delta, no, params + boff, s0 + boff,
                            s1 ? s1 + boff : NULL, &hp);
            int prev = l > 0 && fnn_split_bwd(sizes, n_layers, l - 1, bs, nt, rule);
            if (l > 0 && (split || prev))
                (void) FNN_SYNC();
            split = prev;
            tmp = delta;
            delta = delta_prev;
            delta_prev = tmp;
        }
        if (bad) {
            /* this batch's update was made: the rows consumed include it */
            FNN_STORE(&c->fail_s0, pos + bs, RELAXED);
            FNN_STORE(&c->status, 2, RELAXED);
        }
        fnn_test_delay(tid, 3);
        if (FNN_SYNC())
            break;
    }
#undef FNN_SYNC
}

#if FNN_PTHREADS
static void *FNN_F(fnn_train_thread)(void *p)
{
    FNN_F(fnn_train_arg) *a = (FNN_F(fnn_train_arg) *) p;
    fnn_fpmode_t fp = fnn_flush_begin();
    FNN_F(fnn_train_body)(a->c, a->tid);
    fnn_flush_end(fp);
    return NULL;
}
#endif

/* Mini-batch training over rows order[start:stop] with fastnn's kernels on
 * n_threads threads (buffers: fnn_bufs_t above; optimizer: fnn_opt_t).
 * Per batch: gather (rows split over threads; input dropout on the gathered
 * rows) | forward layer by layer (output columns split; hidden dropout on
 * each thread's columns) | the loss (thread 0) | backward layer by
 * layer: dZ_prev (times the mask) then the fused dW + update, both over the
 * same block of W's rows (= dZ_prev's columns) per thread, so a thread only
 * ever reads the W^T columns that it updates itself, after reading them;
 * panel by panel of those rows (one pass over W: fnn_fuse_rows_of).
 * Stops before updating on a batch whose loss is not finite (sets
 * diverged); row indices and labels, validated by the caller, are checked
 * again as they are read (sets corrupt and stops). Returns the rows
 * consumed. The threads live for the call only (started here, joined
 * before it returns). */
static ptrdiff_t FNN_F(fnn_train)(const FNN_F(fnn_bufs_t) *b, const fnn_opt_t *opt,
                                  int n_threads, double *loss_sum, ptrdiff_t *n_correct,
                                  int *diverged, int *corrupt)
{
    if (FNN_F(fnn_kern).gemm == NULL)
        fnn_gemm_select(NULL);
    const ptrdiff_t *sizes = b->sizes, n_layers = b->n_layers, stop = b->stop;
    FNN_F(fnn_train_ctx) c;
    memset(&c, 0, sizeof c);
    c.b = b, c.opt = opt, c.K = FNN_F(fnn_kern), c.fail_s0 = stop, c.loss_sum = loss_sum;
    c.n_correct = n_correct;
    for (ptrdiff_t l = 0; l < n_layers; l++) {
        c.n_w += sizes[l] * sizes[l + 1];
        if (sizes[l + 1] > c.max_width)
            c.max_width = sizes[l + 1];
    }
    /* no phase of a full batch big enough to split: no second thread at all
       (its barriers would only cost); a partial last batch splits less */
    c.split_rule = fnn_split_rule(n_threads, b->split_fixed, b->split_macs, (double) c.n_w,
                                  (double) sizeof(FNN_T)
                                      * (1 + (b->slot0 != NULL) + (b->slot1 != NULL)),
                                  sizeof(FNN_T) == sizeof(double));
    int any_split = 0;
    for (ptrdiff_t l = 0; l < n_layers; l++)
        if (fnn_big_fwd(sizes, l, b->batch_size, &c.split_rule)
            || fnn_big_bwd(sizes, l, b->batch_size, &c.split_rule))
            any_split = 1;
    if (n_threads < 1 || !any_split || !FNN_PTHREADS)
        n_threads = 1;
    if (n_threads > 64)
        n_threads = 64;
    c.nt = 1;
    /* a packing buffer per thread, for panels of up to the widest layer's rows
       (the forward's K is n_in, the backward's n_out) */
    ptrdiff_t widest = 0;
    for (ptrdiff_t l = 0; l <= n_layers; l++)
        widest = sizes[l] > widest ? sizes[l] : widest;
    c.gemm_stride = (widest * c.K.pw + 63) / 64 * 64;
    c.pack_stride = c.gemm_stride;
    if (b->batch_size <= FNN_DW_PACK_MAX_ROWS) {
        /* dw_update's, after the products' (the backward's panels use both at
           once): a chunk of dw_nc columns of dZ, then A's columns (a block,
           or all a thread's when they are kept for every chunk) */
        c.dw_nc = fnn_dw_chunk_cols(b->batch_size, widest, sizeof(FNN_T));
        c.dw_na = fnn_pack_mode & 8 ? fnn_dw_a_cols(b->batch_size, widest, c.dw_nc, sizeof(FNN_T))
                                    : FNN_DW_BLOCK_ROWS;
        c.pack_stride += b->batch_size * (c.dw_nc + c.dw_na);
    }
    c.pack_stride = (c.pack_stride + 63) / 64 * 64;
    c.pack = b->batch_size > 1 && fnn_pack_mode ? FNN_F(fnn_pack_alloc)(c.pack_stride, 1, n_threads) : NULL;
    c.pack_gemm = c.pack != NULL && (fnn_pack_mode & 1);
    if (b->aug && fnn_aug_work(b->aug) > 0) {
        c.aug_stride = (fnn_aug_work(b->aug) + 15) / 16 * 16;
        c.aug_work = (float *) fnn_aligned_alloc((size_t) (c.aug_stride * n_threads)
                                                 * sizeof(float));
        if (c.aug_work == NULL) {
            fnn_aligned_free(c.pack);
            *corrupt = 2; /* out of memory */
            return 0;
        }
    }
    if (b->exact) {
        /* dZ's weighted copy, FNN_EXACT_ROWS rows of A^T and of G, and of G
           rounded to FNN_T (no larger than doubles) */
        const ptrdiff_t bs = b->batch_size, n = c.max_width;
        c.xsum_stride = (bs * n + FNN_EXACT_AT(bs) + FNN_EXACT_ROWS * 2 * n + 7) / 8 * 8;
        c.xsum = (double *) fnn_aligned_alloc((size_t) (c.xsum_stride * n_threads)
                                              * sizeof(double));
        if (c.xsum == NULL) {
            fnn_aligned_free(c.pack);
            fnn_aligned_free(c.aug_work);
            *corrupt = 2; /* out of memory */
            return 0;
        }
    }
    if (b->x_indptr != NULL && b->x_csr && !b->exact && !(b->drop && b->drop[0] > 0))
        /* the CSR products' gradient buffer, 0 between batches */
        memset(b->wt, 0, (size_t) (sizes[0] * sizes[1]) * sizeof(FNN_T));
    c.col_split0 = ((uintptr_t) b->params % 64 == 0) && ((uintptr_t) b->slot0 % 64 == 0)
                   && (b->slot1 == NULL || (uintptr_t) b->slot1 % 64 == 0)
                   && ((size_t) sizes[1] * sizeof(FNN_T)) % 64 == 0;
    c.pack_dw = c.pack != NULL && (fnn_pack_mode & 2) && b->batch_size <= FNN_DW_PACK_MAX_ROWS;
    /* dZ_prev from W^T panels packed from W (no transposed copy), from
       FNN_BT_MIN_ROWS rows a batch; below, a transposed copy wt of W, made
       here and kept equal to W by the updates (its cost is per weight, as a
       panel's transposition, but it is not repeated for every block of rows) */
    c.use_wt = c.pack == NULL || !(fnn_pack_mode & 4) || b->batch_size < FNN_BT_MIN_ROWS;
    if (c.use_wt)
        for (ptrdiff_t l = 1, woff = sizes[0] * sizes[1]; l < n_layers; l++) {
            c.K.trans(b->params + woff, sizes[l], sizes[l + 1], sizes[l + 1], b->wt + woff,
                      sizes[l]);
            woff += sizes[l] * sizes[l + 1];
        }
    else {
        /* dZ_prev's C^T form (fnn_ct_form): dZ^T and C^T, for any layer where
           a thread with all its rows would choose it (fewer rows only make it
           less likely); without the memory, the W^T panels */
        ptrdiff_t need = 0;
        for (ptrdiff_t l = 1; l < n_layers; l++)
            if (FNN_F(fnn_ct_form)(b->batch_size, sizes[l], sizes[l + 1])
                && b->batch_size * (sizes[l] + sizes[l + 1]) > need)
                need = b->batch_size * (sizes[l] + sizes[l + 1]);
        if (need > 0) {
            c.ct_stride = (need + 15) / 16 * 16;
            c.ct = (FNN_T *) fnn_aligned_alloc((size_t) (c.ct_stride * n_threads)
                                               * sizeof(FNN_T));
        }
    }
#if FNN_PTHREADS
    fnn_thread_t th[64];
    FNN_F(fnn_train_arg) args[64];
    int started = 0;
    if (n_threads > 1) {
        /* every thread must know the team size before it starts */
        c.nt = n_threads;
        for (int t = 1; t < n_threads; t++) {
            args[t].c = &c;
            args[t].tid = t;
        }
        for (int t = 1; t < n_threads; t++) {
            if (fnn_thread_start(&th[t], FNN_F(fnn_train_thread), &args[t]) != 0)
                break;
            started++;
        }
        if (started < n_threads - 1) {
            /* a thread could not be started: release the started ones at
               their first barrier (this thread arrives for itself and the
               missing ones) with a status that makes them return, then run
               the call alone */
            FNN_STORE(&c.status, 3, RELAXED);
            (void) fnn_barrier_sync(&c.barrier, c.nt, n_threads - started, &c.status);
            for (int t = 1; t <= started; t++)
                fnn_thread_join(th[t]);
            memset(&c.barrier, 0, sizeof c.barrier);
            c.status = 0;
            c.fail_s0 = stop;
            c.nt = 1;
            started = 0;
        }
    }
#endif
    fnn_fpmode_t fp = fnn_flush_begin();
    FNN_F(fnn_train_body)(&c, 0);
    fnn_flush_end(fp);
#if FNN_PTHREADS
    for (int t = 1; t <= started; t++)
        fnn_thread_join(th[t]);
#endif
    fnn_aligned_free(c.pack);
    fnn_aligned_free(c.aug_work);
    fnn_aligned_free(c.xsum);
    fnn_aligned_free(c.ct);
    if (c.status == 1)
        *corrupt = 1;
    else if (c.status == 2)
        *diverged = 1;
    return (c.status ? c.fail_s0 : stop) - b->start;
}

