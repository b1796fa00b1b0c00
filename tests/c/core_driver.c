/* A C-only check of fastnn's compiled core (_gemm.h), without Python: used
 * to compile and run the core with other compilers and C dialects than the
 * one that builds the extension (tests/c/check_core.sh: gcc -std=c11
 * -pedantic-errors on the portable path, clang, a mingw-w64 cross build run
 * under Wine). It trains a small synthetic network with fastnn's own
 * training loop on every kernel variant the CPU runs, on 1 and on 2 threads
 * with every phase split, and checks that the weights are the same bits on
 * both thread counts and finite, and that a diverging run stops at the same
 * batch on both and says so (the threads' atomics). Exit status 0 when all
 * holds. */
#include <stdio.h>
#include "_gemm.h"

enum { D = 37, H = 29, C = 10, ROWS = 96, BS = 16, STEPS = 6 };

/* rows consumed, or -1 (buffers, selection); *div: the call's diverged flag */
static ptrdiff_t run_lr(const char *isa, int nt, float *out, ptrdiff_t np_, double lr, int *div)
{
    static const ptrdiff_t sizes[3] = {D, H, C};
    size_t nf = (size_t) (3 * np_ + BS * (D + H + C) + 2 * BS * H + ROWS * D + BS);
    float *f = (float *) fnn_aligned_alloc(nf * sizeof(float));
    ptrdiff_t *ix = (ptrdiff_t *) calloc((size_t) (ROWS + BS * STEPS + BS), sizeof(ptrdiff_t));
    uint8_t *masks = (uint8_t *) calloc((size_t) BS * (D + H), 1);
    if (!f || !ix || !masks || fnn_gemm_select(isa) != 0)
        return -1;
    memset(f, 0, nf * sizeof(float));
    float *params = f, *slot = f + np_, *wt = f + 2 * np_, *acts = f + 3 * np_;
    float *deltas = acts + BS * (D + H + C), *x = deltas + 2 * BS * H, *wbuf = x + ROWS * D;
    for (ptrdiff_t i = 0; i < D * H + H * C; i++)
        params[i] = (float) ((int) ((i * 2654435761u) % 2001) - 1000) * 1e-3f;
    for (ptrdiff_t i = 0; i < ROWS * D; i++)
        x[i] = (float) ((i * 40503u) % 256) / 256.0f;
    ptrdiff_t *y = ix, *order = ix + ROWS, *ybuf = order + BS * STEPS;
    for (ptrdiff_t i = 0; i < ROWS; i++)
        y[i] = i % C;
    for (ptrdiff_t i = 0; i < BS * STEPS; i++)
        order[i] = (i * 7) % ROWS;
    fnn_bufs_t_f pb;
    memset(&pb, 0, sizeof pb);
    pb.x = x, pb.y = y, pb.order = order, pb.n_rows = ROWS, pb.sizes = sizes;
    pb.n_layers = 2, pb.act = FNN_TANH, pb.params = params, pb.wt = wt, pb.slot0 = slot;
    pb.acts = acts, pb.deltas = deltas, pb.wbuf = wbuf, pb.ybuf = ybuf, pb.masks = masks;
    pb.batch_size = BS, pb.start = 0, pb.stop = BS * STEPS;
    fnn_opt_t opt;
    memset(&opt, 0, sizeof opt);
    opt.kind = FNN_OPT_SGD, opt.lr = lr, opt.mu = 0.9, opt.l2 = 1e-4;
    double loss = 0;
    ptrdiff_t correct = 0;
    int diverged = 0, corrupt = 0;
    fnn_force_min_macs = nt > 1 ? 0 : 1e300; /* every phase split over the threads */
    ptrdiff_t done = fnn_train_f(&pb, &opt, nt, &loss, &correct, &diverged, &corrupt);
    fnn_force_min_macs = -1;
    memcpy(out, params, (size_t) np_ * sizeof(float));
    fnn_aligned_free(f);
    free(ix);
    free(masks);
    *div = diverged + 2 * corrupt;
    return done;
}

static int run(const char *isa, int nt, float *out, ptrdiff_t np_)
{
    int div = 0;
    return run_lr(isa, nt, out, np_, 0.05, &div) == BS * STEPS && div == 0 ? 0 : -2;
}

int main(void)
{
    const ptrdiff_t np_ = D * H + H * C + H + C;
    const char *isas[] = {"avx512", "avx2", "neon", "generic"};
    float *a = (float *) malloc((size_t) np_ * sizeof(float));
    float *b = (float *) malloc((size_t) np_ * sizeof(float));
    int ran = 0, bad = 0;
    fnn_gemm_select(NULL);
    printf("compiler: %s; best kernels: %s; threads: %d; simd built: %d\n", fnn_compiler(),
           fnn_gemm_isa(), fnn_threaded(), fnn_simd_built());
    for (int i = 0; i < 4; i++) {
        if (fnn_gemm_select(isas[i]) != 0)
            continue;
        int r1 = run(isas[i], 1, a, np_), r2 = run(isas[i], 2, b, np_);
        int same = memcmp(a, b, (size_t) np_ * sizeof(float)) == 0;
        int finite = 1;
        double sum = 0;
        for (ptrdiff_t k = 0; k < np_; k++) {
            finite &= a[k] == a[k] && a[k] - a[k] == 0;
            sum += a[k];
        }
        printf("%-8s 1 thread rc %d, 2 threads rc %d, same bits: %s, finite: %s, sum %.9g\n",
               isas[i], r1, r2, same ? "yes" : "NO", finite ? "yes" : "NO", sum);
        /* a learning rate that makes the loss overflow: the call stops at the
           same batch on both thread counts and says it diverged */
        int d1 = 0, d2 = 0;
        ptrdiff_t n1 = run_lr(isas[i], 1, a, np_, 1e30, &d1), n2 = run_lr(isas[i], 2, b, np_, 1e30, &d2);
        printf("%-8s diverging: rows %ld and %ld, diverged %d and %d\n", isas[i], (long) n1,
               (long) n2, d1, d2);
        bad |= r1 || r2 || !same || !finite || n1 != n2 || d1 != 1 || d2 != 1 || n1 <= 0
               || n1 >= BS * STEPS;
        ran++;
    }
    free(a);
    free(b);
    return ran > 0 && !bad ? 0 : 1;
}
