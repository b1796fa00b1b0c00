/* The mini-batch SGD loop on fastnn's own kernels, one dtype per inclusion
 * (included twice by _gemm.h with FNN_T, FNN_SUF, FNN_HP, FNN_LOG,
 * FNN_EXP_NEG defined; no include guard on purpose). */

#define FNN_S2(a, b) a##_##b
#define FNN_S(a, b) FNN_S2(a, b)
#define FNN_F(x) FNN_S(x, FNN_SUF)

typedef struct {
    void (*gemm)(ptrdiff_t m, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t K,
                 const FNN_T *a, ptrdiff_t lda, const FNN_T *b, ptrdiff_t ldb,
                 FNN_T *c, ptrdiff_t ldc, const FNN_T *bias, int epi, int act,
                 const FNN_T *ap);
    void (*dw)(ptrdiff_t bs, ptrdiff_t k0, ptrdiff_t k1, ptrdiff_t n,
               const FNN_T *a, ptrdiff_t lda, const FNN_T *dz, ptrdiff_t ldz,
               FNN_T *w, FNN_T *vel, ptrdiff_t ldw, FNN_T *wt, ptrdiff_t ldwt,
               const FNN_HP *hp);
    void (*db)(ptrdiff_t bs, ptrdiff_t j0, ptrdiff_t j1, const FNN_T *dz,
               ptrdiff_t ldz, FNN_T *b, FNN_T *vel, const FNN_HP *hp);
    ptrdiff_t vl;
} FNN_F(fnn_kern_t);

static FNN_F(fnn_kern_t) FNN_F(fnn_kern);

/* out(batch x n_out) = act(x @ w + b) on fastnn's kernels, one thread. */
static void FNN_F(fnn_dense_forward)(const FNN_T *x, const FNN_T *w, const FNN_T *b,
                                     FNN_T *out, ptrdiff_t batch, ptrdiff_t n_in,
                                     ptrdiff_t n_out, int act)
{
    FNN_F(fnn_kern).gemm(batch, 0, n_out, n_in, x, n_in, w, n_out, out, n_out, b,
                         FNN_EPI_BIAS, act, NULL);
}

/* Softmax cross-entropy of one batch, as _kernels.pyx's _softmax_xent:
 * returns the mean loss, g = (softmax(z) - onehot(y)) / batch; n_correct -1
 * on a label outside [0, k). */
static double FNN_F(fnn_xent)(const FNN_T *z, const ptrdiff_t *y, FNN_T *g,
                              ptrdiff_t batch, ptrdiff_t k, ptrdiff_t *n_correct)
{
    const FNN_T inv_batch = (FNN_T) 1 / (FNN_T) batch;
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
        total += (double) FNN_LOG(s) - ((double) zr[label] - (double) m);
        FNN_T scale = inv_batch / s;
        for (ptrdiff_t j = 0; j < k; j++)
            gr[j] = gr[j] * scale;
        gr[label] = gr[label] - inv_batch;
        if (arg == label)
            correct++;
    }
    *n_correct = correct;
    return total / (double) batch;
}

typedef struct {
    const FNN_T *x;
    ptrdiff_t n_rows;
    const ptrdiff_t *y, *order;
    ptrdiff_t start, stop, batch_size;
    const ptrdiff_t *sizes;
    ptrdiff_t n_layers, n_w, max_width;
    int act;
    FNN_T *params, *wt, *vel, *acts, *deltas;
    ptrdiff_t *ybuf;
    const FNN_HP *hp;
    FNN_F(fnn_kern_t) K;
    int nt;
    fnn_barrier_t barrier;
    int status;            /* 1: corrupt index or label, 2: diverged */
    ptrdiff_t fail_s0;     /* batch start where it stopped */
    double *loss_sum;
    ptrdiff_t *n_correct;
} FNN_F(fnn_train_ctx);

typedef struct {
    FNN_F(fnn_train_ctx) *c;
    int tid;
} FNN_F(fnn_train_arg);

/* One thread's share of every step of the call (thread 0 also does the
 * softmax-xent and the small layers). */
static void FNN_F(fnn_train_body)(FNN_F(fnn_train_ctx) *c, int tid)
{
    const FNN_F(fnn_kern_t) K = c->K;
    const int nt = c->nt, act = c->act;
    const ptrdiff_t *sizes = c->sizes, n_layers = c->n_layers, batch_size = c->batch_size;
    const ptrdiff_t d = sizes[0], kcls = sizes[n_layers];
    FNN_T *params = c->params, *wt = c->wt, *vel = c->vel, *acts = c->acts;
    const FNN_HP *hp = c->hp;
#define barrier (c->barrier)
    for (ptrdiff_t s0 = c->start; s0 < c->stop; s0 += batch_size) {
        const ptrdiff_t bs = c->stop - s0 < batch_size ? c->stop - s0 : batch_size;
        ptrdiff_t lo, hi;
        /* gather */
        fnn_split(bs, 1, nt, tid, &lo, &hi);
        for (ptrdiff_t i = lo; i < hi; i++) {
            ptrdiff_t r = c->order[s0 + i];
            if (r < 0 || r >= c->n_rows) {
                __atomic_store_n(&c->fail_s0, s0, __ATOMIC_RELAXED);
                __atomic_store_n(&c->status, 1, __ATOMIC_RELAXED);
                break;
            }
            memcpy(acts + i * d, c->x + r * d, (size_t) d * sizeof(FNN_T));
            c->ybuf[i] = c->y[r];
        }
        FNN_BARRIER(nt);
        if (__atomic_load_n(&c->status, __ATOMIC_RELAXED))
            break;
        /* forward */
        ptrdiff_t woff = 0, boff = c->n_w, aoff = 0;
        int split = nt > 1 && bs * sizes[0] * sizes[1] >= FNN_PAR_MIN_MACS;
        for (ptrdiff_t l = 0; l < n_layers; l++) {
            const ptrdiff_t ni = sizes[l], no = sizes[l + 1];
            const FNN_T *a_in = acts + aoff;
            aoff += batch_size * ni;
            if (split)
                fnn_split(no, K.vl, nt, tid, &lo, &hi);
            else
                lo = 0, hi = tid == 0 ? no : 0;
            if (lo < hi)
                K.gemm(bs, lo, hi, ni, a_in, ni, params + woff, no, acts + aoff, no,
                       params + boff, FNN_EPI_BIAS, l < n_layers - 1 ? act : FNN_IDENTITY, NULL);
            int next = l + 1 < n_layers && nt > 1 && bs * no * sizes[l + 2] >= FNN_PAR_MIN_MACS;
            if (split || next)
                FNN_BARRIER(nt);
            split = next;
            woff += ni * no;
            boff += no;
        }
        /* loss and its gradient w.r.t. the logits */
        FNN_T *delta = c->deltas, *delta_prev = c->deltas + batch_size * c->max_width, *tmp;
        if (tid == 0) {
            ptrdiff_t nc;
            double loss = FNN_F(fnn_xent)(acts + aoff, c->ybuf, delta, bs, kcls, &nc);
            if (nc < 0 || !isfinite(loss)) {
                c->fail_s0 = s0;
                __atomic_store_n(&c->status, nc < 0 ? 1 : 2, __ATOMIC_RELAXED);
            } else {
                *c->loss_sum += loss * (double) bs;
                *c->n_correct += nc;
            }
        }
        FNN_BARRIER(nt);
        if (__atomic_load_n(&c->status, __ATOMIC_RELAXED))
            break;
        /* backward, last layer first: dZ_prev with the old W, then W's update */
        for (ptrdiff_t l = n_layers - 1; l >= 0; l--) {
            const ptrdiff_t ni = sizes[l], no = sizes[l + 1];
            woff -= ni * no;
            boff -= no;
            aoff -= batch_size * ni;
            split = nt > 1 && bs * ni * no * (l > 0 ? 2 : 1) >= FNN_PAR_MIN_MACS;
            if (split)
                fnn_split(ni, K.vl, nt, tid, &lo, &hi);
            else
                lo = 0, hi = tid == 0 ? ni : 0;
            if (lo < hi) {
                if (l > 0)
                    K.gemm(bs, lo, hi, no, delta, no, wt + woff, ni, delta_prev, ni, NULL,
                           FNN_EPI_DACT, act, acts + aoff);
                K.dw(bs, lo, hi, no, acts + aoff, ni, delta, no, params + woff, vel + woff, no,
                     l > 0 ? wt + woff : NULL, ni, hp);
            }
            if (tid == (split ? nt - 1 : 0))
                K.db(bs, 0, no, delta, no, params + boff, vel + boff, hp);
            int prev = l > 0 && nt > 1
                       && bs * sizes[l - 1] * ni * (l > 1 ? 2 : 1) >= FNN_PAR_MIN_MACS;
            if (l > 0 && (split || prev))
                FNN_BARRIER(nt);
            tmp = delta;
            delta = delta_prev;
            delta_prev = tmp;
        }
        FNN_BARRIER(nt);
    }
#undef barrier
}

#if FNN_PTHREADS
static void *FNN_F(fnn_train_thread)(void *p)
{
    FNN_F(fnn_train_arg) *a = (FNN_F(fnn_train_arg) *) p;
    FNN_F(fnn_train_body)(a->c, a->tid);
    return NULL;
}
#endif

/* Mini-batch SGD over rows order[start:stop] with fastnn's kernels on
 * n_threads threads; the same contract as _kernels.pyx's _train_batches
 * (layouts, diverged/corrupt, return value), plus:
 *   wt: n_params elements of workspace; wt[woff_l:] holds W_l^T for every
 *       layer but the first (refreshed from params at the start of a call).
 * Per batch: gather (rows split over threads) | forward layer by layer
 * (output columns split) | softmax-xent (thread 0) | backward layer by layer:
 * dZ_prev then the fused dW + update, both over the same block of W's rows
 * (= dZ_prev's columns) per thread, so a thread only ever reads the W^T
 * columns that it updates itself, after reading them. The threads live for
 * the call only (started here, joined before it returns). */
static ptrdiff_t FNN_F(fnn_train)(const FNN_T *x, ptrdiff_t n_rows, const ptrdiff_t *y,
                                  const ptrdiff_t *order, ptrdiff_t start, ptrdiff_t stop,
                                  ptrdiff_t batch_size, const ptrdiff_t *sizes,
                                  ptrdiff_t n_layers, int act, FNN_T *params, FNN_T *wt,
                                  FNN_T *vel, FNN_T *acts, FNN_T *deltas, ptrdiff_t *ybuf,
                                  const FNN_HP *hp, int n_threads, double *loss_sum,
                                  ptrdiff_t *n_correct, int *diverged, int *corrupt)
{
    if (FNN_F(fnn_kern).gemm == NULL)
        fnn_gemm_select(NULL);
    FNN_F(fnn_train_ctx) c;
    memset(&c, 0, sizeof c);
    c.x = x, c.n_rows = n_rows, c.y = y, c.order = order, c.start = start, c.stop = stop;
    c.batch_size = batch_size, c.sizes = sizes, c.n_layers = n_layers, c.act = act;
    c.params = params, c.wt = wt, c.vel = vel, c.acts = acts, c.deltas = deltas, c.ybuf = ybuf;
    c.hp = hp, c.K = FNN_F(fnn_kern), c.fail_s0 = stop, c.loss_sum = loss_sum;
    c.n_correct = n_correct;
    for (ptrdiff_t l = 0; l < n_layers; l++) {
        c.n_w += sizes[l] * sizes[l + 1];
        if (sizes[l + 1] > c.max_width)
            c.max_width = sizes[l + 1];
    }
    for (ptrdiff_t l = 1, woff = sizes[0] * sizes[1]; l < n_layers; l++) {
        const ptrdiff_t ni = sizes[l], no = sizes[l + 1];
        for (ptrdiff_t k = 0; k < ni; k++)
            for (ptrdiff_t j = 0; j < no; j++)
                wt[woff + j * ni + k] = params[woff + k * no + j];
        woff += ni * no;
    }
    /* no phase big enough to split: no second thread at all (its barriers
       would only cost) */
    int any_split = 0;
    for (ptrdiff_t l = 0; l < n_layers; l++)
        if (batch_size * sizes[l] * sizes[l + 1] >= FNN_PAR_MIN_MACS)
            any_split = 1;
    if (n_threads < 1 || !any_split || !FNN_PTHREADS)
        n_threads = 1;
    if (n_threads > 64)
        n_threads = 64;
    c.nt = 1;
#if FNN_PTHREADS
    pthread_t th[64];
    FNN_F(fnn_train_arg) args[64];
    int started = 0;
    if (n_threads > 1) {
        /* every thread must know the team size before it starts */
        c.nt = n_threads;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        for (int t = 1; t < n_threads; t++) {
            args[t].c = &c;
            args[t].tid = t;
        }
        for (int t = 1; t < n_threads; t++) {
            if (pthread_create(&th[t], &attr, FNN_F(fnn_train_thread), &args[t]) != 0)
                break;
            started++;
        }
        pthread_attr_destroy(&attr);
        if (started < n_threads - 1) {
            /* a thread could not be started: release the started ones at
               their first barrier (this thread arrives for itself and the
               missing ones) with a status that makes them return, then run
               the call alone */
            __atomic_store_n(&c.status, 3, __ATOMIC_RELAXED);
            fnn_barrier_arrive(&c.barrier, c.nt, n_threads - started);
            for (int t = 1; t <= started; t++)
                pthread_join(th[t], NULL);
            memset(&c.barrier, 0, sizeof c.barrier);
            c.status = 0;
            c.fail_s0 = stop;
            c.nt = 1;
            started = 0;
        }
    }
#endif
    FNN_F(fnn_train_body)(&c, 0);
#if FNN_PTHREADS
    for (int t = 1; t <= started; t++)
        pthread_join(th[t], NULL);
#endif
    if (c.status == 1)
        *corrupt = 1;
    else if (c.status == 2)
        *diverged = 1;
    return (c.status ? c.fail_s0 : stop) - start;
}

#undef FNN_S2
#undef FNN_S
#undef FNN_F
