/* fastnn's own training products: packing-free register-blocked SIMD
 * micro-kernels with fused epilogues, and the mini-batch SGD loop that runs
 * them on fastnn's own POSIX threads (started per call; no OpenMP).
 *
 * Design (after BLIS/oneDNN micro-kernels, specialised to a training step):
 *  - forward  Z = act(A W + b): W stays row-major (n_in x n_out) as the model
 *    keeps it; a register tile of MRR batch rows x NRV vectors of output
 *    columns accumulates over the whole K loop; bias and activation are
 *    applied to the tile before it is stored (_gemm_isa.h: tile/gemm);
 *  - dZ_prev = (dZ W^T) * act'(A_prev): the same kernel reading W^T, a
 *    transposed copy of each layer but the first, which the update epilogue
 *    keeps equal to W (it is the OLD W when dZ_prev is computed, as the
 *    update of a layer comes after its dZ_prev);
 *  - dW + update: each register tile of the weight gradient is consumed by
 *    the optimizer's update where it is made (no dW array, no second pass
 *    over the parameters); biases likewise. Epilogues: SGD with momentum,
 *    SGD with Nesterov momentum, Adam/AdamW (L1/L2 on weights in all). The
 *    update reads the step's constants from a small struct (fnn_step_f/_d,
 *    derived once per step from the call's fnn_opt_t), so another optimizer
 *    is another epilogue, not another tiling.
 *  - dropout (inverted): counter-based splitmix64 masks, made without any
 *    state by the thread that owns the elements (fnn_mix64 below), applied
 *    to the gathered batch (input) and after a hidden layer's activation;
 *    the backward multiplies by the stored mask.
 *  - variants: AVX-512 (16 floats / 8 doubles a vector, 6 x 4 vector tile),
 *    AVX2+FMA (8 / 4, 6 x 2), NEON on aarch64 (4 / 2, 6 x 4: 32 registers)
 *    and generic C (scalar, 6 x 2), chosen once at load (fnn_gemm_select) by
 *    __builtin_cpu_supports; the x86 variants are compiled with function
 *    target attributes, so the build stays portable (NEON is every aarch64
 *    CPU's baseline).
 *  - threads: started per call (a chunk of batches; no pool survives the
 *    call, so a fork never inherits one), a spinning barrier between the
 *    phases of a step; each phase is split over blocks of columns (forward) or rows of W
 *    (backward), and each output element is reduced in index order by one
 *    thread, so the weights are bit-identical for any thread count.
 */
#ifndef FASTNN_GEMM_H
#define FASTNN_GEMM_H

#include <math.h>
#include <time.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h> /* the caches, from sysfs (fnn_caches) */
#if defined(__linux__)
#include <unistd.h> /* and from sysconf, when sysfs is silent */
#endif
#include "_fastmath.h" /* and the compiler portability macros (FNN_GNUC, ...) */

/* Threads: POSIX threads, or Win32 threads on Windows (FNN_PTHREADS: the
 * build has threads at all; without, every call runs on the caller's
 * thread). fnn_thread_start/fnn_thread_join are the two calls the training
 * loop makes; fnn_yield and fnn_sleep_us the barrier's and the tests'. */
#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#include <process.h>
#include <malloc.h>
#define FNN_PTHREADS 1
typedef HANDLE fnn_thread_t;
typedef struct {
    void *(*fn)(void *);
    void *arg;
} fnn_thread_call_t;
static unsigned __stdcall fnn_thread_tramp(void *p)
{
    fnn_thread_call_t call = *(fnn_thread_call_t *) p;
    free(p);
    call.fn(call.arg);
    return 0;
}
static inline int fnn_thread_start(fnn_thread_t *t, void *(*fn)(void *), void *arg)
{
    fnn_thread_call_t *call = (fnn_thread_call_t *) malloc(sizeof *call);
    if (call == NULL)
        return -1;
    call->fn = fn;
    call->arg = arg;
    uintptr_t h = _beginthreadex(NULL, 0, fnn_thread_tramp, call, 0, NULL);
    if (h == 0) {
        free(call);
        return -1;
    }
    *t = (HANDLE) h;
    return 0;
}
static inline void fnn_thread_join(fnn_thread_t t)
{
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
}
static inline void fnn_yield(void) { SwitchToThread(); }
static inline void fnn_sleep_us(int us) { Sleep((DWORD) ((us + 999) / 1000)); }
static inline double fnn_now_ns(void)
{
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double) c.QuadPart * (1e9 / (double) f.QuadPart);
}
#elif defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#define FNN_PTHREADS 1
typedef pthread_t fnn_thread_t;
static inline int fnn_thread_start(fnn_thread_t *t, void *(*fn)(void *), void *arg)
{
    return pthread_create(t, NULL, fn, arg);
}
static inline void fnn_thread_join(fnn_thread_t t) { pthread_join(t, NULL); }
static inline void fnn_yield(void) { sched_yield(); }
static inline void fnn_sleep_us(int us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}
static inline double fnn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}
#else
#define FNN_PTHREADS 0
static inline void fnn_yield(void) {}
static inline void fnn_sleep_us(int us) { (void) us; }
static inline double fnn_now_ns(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}
#endif

/* Atomics of the training threads' shared ints (and the calibration's
 * double): GCC/clang's __atomic builtins; Win32 Interlocked functions (full
 * barriers, so every order holds); or C11 <stdatomic.h> (its functions on
 * plain objects, same size and alignment as their _Atomic types on the
 * compilers that take this branch). O: RELAXED, ACQUIRE, RELEASE, ACQ_REL or
 * SEQ_CST. Ints throughout, but FNN_STORE also takes the 64-bit ptrdiff_t
 * fail_s0 of the training loop. */
#if FNN_GNUC
#define FNN_LOAD(p, O) __atomic_load_n(p, __ATOMIC_##O)
#define FNN_STORE(p, v, O) __atomic_store_n(p, v, __ATOMIC_##O)
#define FNN_ADD_FETCH(p, v, O) __atomic_add_fetch(p, v, __ATOMIC_##O)
#define FNN_XCHG(p, v, O) __atomic_exchange_n(p, v, __ATOMIC_##O)
static inline double fnn_load_dbl(double *p)
{
    double v;
    __atomic_load(p, &v, __ATOMIC_ACQUIRE);
    return v;
}
static inline void fnn_store_dbl(double *p, double v) { __atomic_store(p, &v, __ATOMIC_RELEASE); }
#elif defined(_WIN32)
#define FNN_LOAD(p, O) ((int) InterlockedOr((volatile LONG *) (p), 0))
#define FNN_STORE(p, v, O)                                                    \
    (sizeof(*(p)) == 8 ? (void) InterlockedExchange64((volatile LONG64 *) (p), (LONG64) (v)) \
                       : (void) InterlockedExchange((volatile LONG *) (p), (LONG) (v)))
#define FNN_ADD_FETCH(p, v, O) ((int) InterlockedAdd((volatile LONG *) (p), (LONG) (v)))
#define FNN_XCHG(p, v, O) ((int) InterlockedExchange((volatile LONG *) (p), (LONG) (v)))
static inline double fnn_load_dbl(double *p)
{
    LONG64 b = InterlockedOr64((volatile LONG64 *) p, 0);
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}
static inline void fnn_store_dbl(double *p, double v)
{
    LONG64 b;
    memcpy(&b, &v, sizeof b);
    InterlockedExchange64((volatile LONG64 *) p, b);
}
#else
#include <stdatomic.h>
#define FNN_MO_RELAXED memory_order_relaxed
#define FNN_MO_ACQUIRE memory_order_acquire
#define FNN_MO_RELEASE memory_order_release
#define FNN_MO_ACQ_REL memory_order_acq_rel
#define FNN_MO_SEQ_CST memory_order_seq_cst
#define FNN_LOAD(p, O) atomic_load_explicit((_Atomic int *) (p), FNN_MO_##O)
#define FNN_STORE(p, v, O)                                                    \
    (sizeof(*(p)) == 8                                                        \
         ? atomic_store_explicit((_Atomic long long *) (p), (long long) (v), FNN_MO_##O) \
         : atomic_store_explicit((_Atomic int *) (p), (int) (v), FNN_MO_##O))
#define FNN_ADD_FETCH(p, v, O) (atomic_fetch_add_explicit((_Atomic int *) (p), v, FNN_MO_##O) + (v))
#define FNN_XCHG(p, v, O) atomic_exchange_explicit((_Atomic int *) (p), v, FNN_MO_##O)
static inline double fnn_load_dbl(double *p)
{
    return atomic_load_explicit((_Atomic double *) p, memory_order_acquire);
}
static inline void fnn_store_dbl(double *p, double v)
{
    atomic_store_explicit((_Atomic double *) p, v, memory_order_release);
}
#endif

enum { FNN_IDENTITY = 0, FNN_RELU = 1, FNN_TANH = 2, FNN_SIGMOID = 3 };
enum { FNN_EPI_BIAS = 0, FNN_EPI_DACT = 1 };

enum { FNN_OPT_SGD = 0, FNN_OPT_ADAM = 1 };

/* The optimizer of one training call, as the Python wrapper validated it
 * (fastnn.kernels.Hyper): kind, Nesterov flag, learning rate, momentum,
 * L1, L2, Adam's beta1, beta2, eps, decoupled weight decay, and t, the
 * Adam steps taken before the call (its k-th batch is step t + k). */
typedef struct {
    int kind, nesterov;
    double lr, mu, l1, l2, beta1, beta2, eps, wd;
    int64_t t;
} fnn_opt_t;

/* One step's constants of the fused update epilogues, in the model dtype
 * (fnn_step_make): SGD uses lr, mu, l1, l2; Adam uses b1, c1 = 1 - b1,
 * b2, c2 = 1 - b2, eps, at = lr / (1 - b1^t), st = 1 / sqrt(1 - b2^t),
 * decay = 1 - lr * wd, and l1, l2 (each computed in double, then rounded). */
typedef struct {
    int kind, nesterov;
    float lr, mu, l1, l2, b1, c1, b2, c2, eps, at, st, decay;
} fnn_step_f;
typedef struct {
    int kind, nesterov;
    double lr, mu, l1, l2, b1, c1, b2, c2, eps, at, st, decay;
} fnn_step_d;

#define FNN_STEP_MAKE(NAME, T, STEP)                                          \
    static inline void NAME(STEP *s, const fnn_opt_t *o, int64_t step)       \
    {                                                                         \
        s->kind = o->kind;                                                    \
        s->nesterov = o->nesterov;                                            \
        s->lr = (T) o->lr;                                                    \
        s->mu = (T) o->mu;                                                    \
        s->l1 = (T) o->l1;                                                    \
        s->l2 = (T) o->l2;                                                    \
        s->b1 = (T) o->beta1;                                                 \
        s->c1 = (T) (1.0 - o->beta1);                                         \
        s->b2 = (T) o->beta2;                                                 \
        s->c2 = (T) (1.0 - o->beta2);                                         \
        s->eps = (T) o->eps;                                                  \
        s->decay = (T) (1.0 - o->lr * o->wd);                                 \
        if (o->kind == FNN_OPT_ADAM) {                                        \
            s->at = (T) (o->lr / (1.0 - pow(o->beta1, (double) step)));       \
            s->st = (T) (1.0 / sqrt(1.0 - pow(o->beta2, (double) step)));     \
        } else {                                                              \
            s->at = 0;                                                        \
            s->st = 0;                                                        \
        }                                                                     \
    }
FNN_STEP_MAKE(fnn_step_make_f, float, fnn_step_f)
FNN_STEP_MAKE(fnn_step_make_d, double, fnn_step_d)
#undef FNN_STEP_MAKE

/* splitmix64's finaliser (Steele, Lea, Flood 2014): the dropout masks are
 * counter-based, u16(e) = 16-bit lane e & 3 of mix(key + (e >> 2)), so any
 * thread makes any element's bit without state (fastnn.reference.dropout_mask
 * is the specification). */
static inline uint64_t fnn_mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The key of layer l's masks in the batch at step `step` of epoch `epoch`. */
static inline uint64_t fnn_drop_key(uint64_t seed, uint64_t epoch, uint64_t step, uint64_t l)
{
    return fnn_mix64(fnn_mix64(fnn_mix64(fnn_mix64(seed) ^ epoch) ^ step) ^ l);
}

#include "_augment.h"

/* uint64 stores that may alias the uint16 lanes they are read back as (GNU
 * C; elsewhere drop's masks are made lane by lane, FNN_MAY_ALIAS 0) */
#if FNN_MAY_ALIAS
typedef uint64_t fnn_u64a __attribute__((may_alias));
#endif

/* When the products pack (measured crossovers; they assume 4 KiB pages and
 * an L1 whose way is 4 KiB, 64 sets of 64 B, as on current x86 and ARM
 * cores: rows a multiple of 4 KiB apart fall in one L1 set, and rows 2 KiB
 * or more apart each on a page of their own). Measured on 2 vCPUs of an Intel
 * Xeon (AVX-512, 48 KiB L1d, 2 MiB L2), one thread, MNIST, s per 6,400 rows:
 *  - B panels (FNN_PACK_B, by B's row stride in bytes): [784, 1000, 1000, 10]
 *    batch 32 0.618 packed / 0.699 not, batch 128 0.433 / 0.452; [784, 1024,
 *    1024, 10] batch 128 0.635 / 0.936; but [784, 128, 10] (512 B rows)
 *    batch 10 0.069 / 0.056, batch 128 0.034 / 0.033 (s per 12,800 rows);
 *  - dW's operands (FNN_PACK_DW, by A's and dZ's row strides): [784, 1024,
 *    1024, 10] batch 128 0.410 / 0.439 with the rest packed; [784, 1000,
 *    1000, 10] batch 32 0.563 / 0.540, batch 128 0.377 / 0.376; [784, 128,
 *    10] batch 128 0.038 / 0.033.
 * Either way the arithmetic, and so every bit, is the same. */
#define FNN_PACK_B(ldb_bytes) ((ldb_bytes) >= 2048)
#define FNN_PACK_DW(lda_bytes, ldz_bytes) ((lda_bytes) % 4096 == 0 || (ldz_bytes) % 4096 == 0)
/* What the training products may pack, bits: 1 B panels, 2 dW's operands,
 * 4 W^T panels (else a transposed copy of W), 8 all of A's columns kept
 * for dW's chunks (fnn_dw_a_cols), 16 a B panel copied by its first tile of
 * rows as that tile computes (gemm; else in a pass of its own first), 32
 * dZ_prev in the C^T form where it transposes less (fnn_ct_form); 63,
 * all, by default: a switch for measurements and tests
 * (fastnn._kernels._pack_panels); the results are the same bits either way.
 * The first tile asks for W's row k + FNN_PACK_AHEAD while it multiplies row
 * k. Measured (Zen 4, [784, 1024, 1024, 10], epochs A/B in one process): at
 * batch 32 the separate copy was 15.6 % of the products' samples, the
 * copying tile 22 % against 28 % for copy and tile before, 0.95-0.98x the
 * epoch; at batch 128, where a panel serves 22 tiles, no change. */
static volatile int fnn_pack_mode = 63;
#define FNN_PACK_AHEAD 8
/* The caches the blocking assumes, read once from the OS: Linux's sysfs (in
 * standard C), else, where sysfs says nothing (some containers and sandboxes
 * hide its cache folder), glibc's sysconf (CPUID on x86-64); elsewhere, or
 * when neither says something plausible, the defaults below, an L1d of 32
 * KiB and an L2 of 1 MiB, the smallest of current x86-64 and 64-bit ARM
 * cores. fnn_cache[0] is the L1d, fnn_cache[1] the L2 per core, in bytes
 * (fastnn._kernels._cache_sizes); fnn_cache_src says where each came from
 * (fastnn._kernels._cache_sources; _detect_caches, which tests point at
 * other folders). */
#define FNN_L1D_DEFAULT (32 * 1024)
#define FNN_L2_DEFAULT (1024 * 1024)
enum { FNN_CACHE_DEFAULT = 0, FNN_CACHE_SYSFS = 1, FNN_CACHE_SYSCONF = 2 };
static ptrdiff_t fnn_cache[2];
static int fnn_cache_src[2];
#define FNN_SYSFS_CACHE_DIR "/sys/devices/system/cpu/cpu0/cache"

/* The first line of <dir>/index<index>/<name> into buf; 0 when there is
 * none. */
static int fnn_sysfs_line(const char *dir, int index, const char *name, char *buf, int size)
{
    char path[1024];
    int n = snprintf(path, sizeof path, "%s/index%d/%s", dir, index, name);
    if (n < 0 || n >= (int) sizeof path)
        return 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int ok = fgets(buf, size, f) != NULL;
    fclose(f);
    return ok;
}

/* The size in bytes of the cache folder's index, with its level and whether
 * it holds data (Data or Unified); 0 when the folder does not say. */
static ptrdiff_t fnn_sysfs_cache(const char *dir, int index, int *level, int *data)
{
    char buf[32], *end;
    *level = 0, *data = 0;
    if (!fnn_sysfs_line(dir, index, "level", buf, sizeof buf))
        return 0;
    *level = atoi(buf);
    if (!fnn_sysfs_line(dir, index, "type", buf, sizeof buf))
        return 0;
    *data = buf[0] == 'D' || buf[0] == 'U';
    if (!fnn_sysfs_line(dir, index, "size", buf, sizeof buf))
        return 0;
    ptrdiff_t v = (ptrdiff_t) strtol(buf, &end, 10);
    return *end == 'K' ? v * 1024 : *end == 'M' ? v * 1024 * 1024 : v;
}

/* whether a size is one a core's L1d (level 1) or L2 (level 2) may have: an
 * implausible answer (a VM's, a parser's) counts as none */
static int fnn_cache_plausible(int level, ptrdiff_t v)
{
    return level == 1 ? v >= 8 * 1024 && v <= 1024 * 1024
                      : v >= 128 * 1024 && v <= 64 * 1024 * 1024;
}

/* dir: sysfs's cache folder (NULL: cpu0's), or one laid out as it (tests) */
static void fnn_detect_caches(const char *dir)
{
    ptrdiff_t c[2] = {0, 0};
    int src[2] = {FNN_CACHE_DEFAULT, FNN_CACHE_DEFAULT};
    for (int i = 0; i < 8; i++) {
        int level, data;
        ptrdiff_t v = fnn_sysfs_cache(dir ? dir : FNN_SYSFS_CACHE_DIR, i, &level, &data);
        if (data && (level == 1 || level == 2) && c[level - 1] == 0
            && fnn_cache_plausible(level, v))
            c[level - 1] = v, src[level - 1] = FNN_CACHE_SYSFS;
    }
#if defined(__linux__) && defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
    const int names[2] = {_SC_LEVEL1_DCACHE_SIZE, _SC_LEVEL2_CACHE_SIZE};
    for (int l = 0; l < 2; l++)
        if (c[l] == 0) {
            long v = sysconf(names[l]);
            if (v > 0 && fnn_cache_plausible(l + 1, (ptrdiff_t) v))
                c[l] = (ptrdiff_t) v, src[l] = FNN_CACHE_SYSCONF;
        }
#endif
    fnn_cache[0] = c[0] ? c[0] : FNN_L1D_DEFAULT;
    fnn_cache[1] = c[1] ? c[1] : FNN_L2_DEFAULT;
    fnn_cache_src[0] = src[0], fnn_cache_src[1] = src[1];
}

static const ptrdiff_t *fnn_caches(void)
{
    if (fnn_cache[1] == 0)
        fnn_detect_caches(NULL);
    return fnn_cache;
}

/* Rows of W per block of dw_update's packed loop (whole tiles of MRR = 6
 * rows on every instruction set): the block's columns of A (bs x 48) are
 * packed once per chunk of columns, and its rows of W and the slots are
 * read and written while they are in L1 and L2. */
#define FNN_DW_BLOCK_ROWS 48

/* The batch size from which dw_update's in-place loop prefetches the next
 * tile's weights and slots: a tile's batch loop (bs x MRR x NRV FMAs) then
 * hides the fetch and outweighs its 2-3 x MRR x NRV prefetches. Zen 4, two
 * threads, epochs A/B (the same bits): [784, 800, 10] and [784, 1500, 1000,
 * 500, 10] at batch 128 0.92-0.94x the time; [784, 128, 10] at batches 10 and
 * 32 1.01-1.02x (within the noise), hence not there. */
#define FNN_DW_PREFETCH_ROWS 64

/* Columns of W per chunk of dw_update's packed loop (a multiple of the
 * widest register tile, 64 columns): the chunk's dZ panels, packed once
 * (bs x nc elements), take at most half of the L2, so they stay there while
 * every block of W's rows passes over them; at least one panel, at most
 * the layer's width (cols). */
static ptrdiff_t fnn_dw_chunk_cols(ptrdiff_t bs, ptrdiff_t cols, size_t elem)
{
    ptrdiff_t nc = fnn_caches()[1] / 2 / (bs * (ptrdiff_t) elem);
    nc = nc / 64 * 64;
    if (nc < 64)
        nc = 64;
    ptrdiff_t all = (cols + 63) / 64 * 64;
    return nc < all ? nc : all;
}

/* Columns of A that dw_update's packing buffer holds, after its chunk of nc
 * columns of dZ: when a layer takes more than one chunk (the widest layer
 * wider than nc), all a thread's columns, packed at the first chunk and
 * read again (in order, from the L3) by the others, instead of gathered
 * again from A's rows for every chunk ([784, 1500, 1000, 500, 10] at batch
 * 512: 4 chunks of 256 columns for the 1000-wide layer), while they take at
 * most FNN_DW_KEEP_A_BYTES; else one block of FNN_DW_BLOCK_ROWS columns. */
#define FNN_DW_KEEP_A_BYTES (16 << 20)
static ptrdiff_t fnn_dw_a_cols(ptrdiff_t bs, ptrdiff_t widest, ptrdiff_t nc, size_t elem)
{
    const ptrdiff_t all = (widest + FNN_DW_BLOCK_ROWS - 1) / FNN_DW_BLOCK_ROWS * FNN_DW_BLOCK_ROWS;
    if (widest > nc && bs * all * (ptrdiff_t) elem <= FNN_DW_KEEP_A_BYTES)
        return all;
    return FNN_DW_BLOCK_ROWS;
}

/* 64-byte aligned buffers (a cache line; the packed panels' vectors) */
static inline void *fnn_aligned_alloc(size_t bytes)
{
#if defined(_WIN32)
    return _aligned_malloc(bytes ? bytes : 1, 64);
#else
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? bytes : 1) == 0 ? p : NULL;
#endif
}

static inline void fnn_aligned_free(void *p)
{
#if defined(_WIN32)
    _aligned_free(p);
#else
    free(p);
#endif
}

/* Elements per block of mask generation (its uint16 lanes live on the stack). */
#define FNN_DROP_CHUNK 512

/* A layer phase (forward of a layer, or its backward) is split across the
 * threads only from fnn_par_min_macs() multiply-adds per batch on (unless
 * the call fixes its own threshold: fnn_bufs_t's split_fixed, which
 * fastnn.training.tuning sets after timing the plans on a fit's first
 * batches): below
 * it, thread 0 does it alone and the barrier it would need is skipped. The
 * threshold is measured by the process at its first threaded call
 * (fnn_calibrate below: the barrier's round trip against one thread's
 * multiply-add rate), as the barrier's cost differs from CPU to CPU and VM
 * to VM: a fixed 400k, measured on 2 vCPUs of an AMD EPYC (Zen 5, KVM),
 * made two threads 1.20-1.25x slower than one on an Intel Xeon at batch 10
 * of [784, 128, 10]. -DFNN_PAR_MIN_MACS=N fixes it at build time. */

/* The SIMD variants: x86-64 (AVX-512, AVX2 + FMA) with GCC or clang, whose
 * target attributes compile them into a portable build; aarch64 (NEON) with
 * any compiler that has arm_neon.h. FASTNN_PORTABLE_C (or a compiler without
 * GNU C) builds the generic C kernels only. */
#if defined(__x86_64__) && FNN_GNUC && !defined(FASTNN_NO_SIMD)
#include <immintrin.h>
#define FNN_HAVE_X86 1
static const int32_t fnn_mtab_f[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int64_t fnn_mtab_d[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
#else
#define FNN_HAVE_X86 0
#endif
#if (defined(__aarch64__) || defined(_M_ARM64)) && !defined(FASTNN_NO_SIMD) \
    && (FNN_GNUC || defined(_MSC_VER))
#include <arm_neon.h>
#define FNN_HAVE_NEON 1
#else
#define FNN_HAVE_NEON 0
#endif

#define FNN_CAT2(a, b) a##_##b
#define FNN_XCAT2(a, b) FNN_CAT2(a, b)
#define FNN_CAT4(a, b, c, d) a##_##b##_##c##_##d
#define FNN_XCAT4(a, b, c, d) FNN_CAT4(a, b, c, d)
#define FNN_PASTE3(a, b, c) a##b##c
#define FNN_XPASTE3(a, b, c) FNN_PASTE3(a, b, c)
#define FNN_STR2(x) #x
#define FNN_STR(x) FNN_STR2(x)

/* The templates (_ukernel.h, _gemm_isa.h, _gemm_train.h) are instantiated
 * once per dtype by defining FNN_SFX (f: float, d: double), and _gemm_isa.h
 * once per instruction set too (FNN_ISA, _ukernels_<isa>.h); every name that
 * depends on them follows from them here, expanded where it is used. */
#define FNN_T FNN_XCAT2(fnn_real, FNN_SFX)
#define FNN_F(x) FNN_XCAT2(x, FNN_SFX)
#define FNN_HP FNN_XCAT2(fnn_step, FNN_SFX)
#define FNN_SQRT FNN_XCAT2(fnn_sqrt, FNN_SFX)
#define FNN_LOG FNN_XCAT2(fnn_log, FNN_SFX)
#define FNN_EXP_NEG FNN_XCAT2(fnn_exp_neg, FNN_SFX)
#define FNN_BIAS_TANH FNN_XCAT2(fnn_bias_tanh, FNN_SFX)
#define FNN_BIAS_SIGMOID FNN_XCAT2(fnn_bias_sigmoid, FNN_SFX)
#define FNN_NAME(x) FNN_XCAT4(fnn, x, FNN_ISA, FNN_SFX)

/* The micro-kernel contract, a registry entry's type: fnn_kern_t_f, _d */
#define FNN_SFX f
#include "_ukernel.h"
#undef FNN_SFX
#define FNN_SFX d
#include "_ukernel.h"
#undef FNN_SFX

/* The micro-kernels of each instruction set this build can hold, generic
 * first (every build), each registered in fnn_ukernels below */
#include "_ukernels_generic.h"

/* A build that defines FASTNN_SIMD_BUILD_FAILS refuses to compile the SIMD
 * variants, as a compiler without their intrinsics would: the check of
 * setup.py's portable retry (CFLAGS=-DFASTNN_SIMD_BUILD_FAILS pip install .
 * installs the portable core; the retry defines FASTNN_NO_SIMD). */
#if (FNN_HAVE_X86 || FNN_HAVE_NEON) && defined(FASTNN_SIMD_BUILD_FAILS)
#error "FASTNN_SIMD_BUILD_FAILS: the SIMD variants refused (a check of the portable retry)"
#endif

#if FNN_HAVE_X86
/* The frame of an N x N in-register transpose NAME(s, ls, d, ld), d[i * ld
 * + j] = s[j * ls + i] (pack_panel_t's VTRANS): N rows of s loaded into r[],
 * the shuffle network (the variadic argument, on r[] and t[]), and N rows of
 * OUT[] (r or t, where the network leaves the result) stored into d. */
#define FNN_TRANSPOSE(NAME, TARGET, T, VTYPE, N, LOAD, STORE, OUT, ...)      \
    TARGET static inline void NAME(const T *s, ptrdiff_t ls, T *d, ptrdiff_t ld) \
    {                                                                         \
        VTYPE r[N], t[N];                                                     \
        for (int i = 0; i < (N); i++)                                         \
            r[i] = LOAD(s + i * ls);                                          \
        __VA_ARGS__                                                           \
        for (int i = 0; i < (N); i++)                                         \
            STORE(d + i * ld, OUT[i]);                                        \
    }
#define FNN_X86_f ps
#define FNN_X86_d pd
#define FNN_PSD FNN_XCAT2(FNN_X86, FNN_SFX) /* the intrinsics' ps / pd */
#include "_ukernels_avx512.h"
#include "_ukernels_avx2.h"
#undef FNN_TRANSPOSE
#endif
#if FNN_HAVE_NEON
#include "_ukernels_neon.h"
#endif

/* ------------------------------------------------------ dispatch and loop */
static inline void fnn_split(ptrdiff_t n, ptrdiff_t unit, int nt, int t,
                             ptrdiff_t *lo, ptrdiff_t *hi)
{
    ptrdiff_t nu = (n + unit - 1) / unit;
    ptrdiff_t a = nu * t / nt * unit, b = nu * (t + 1) / nt * unit;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

/* The barrier of the threads of one training call: spin briefly, then
 * sleep (a futex on Linux, else yield), so waiting threads do not burn a
 * core that another process needs (libgomp's barrier measured 45 us a step
 * under KVM with the other vCPU busy, as its waiters fall asleep at once;
 * spinning first keeps the common short waits in user space).
 *
 * A barrier also publishes the call's status: the thread that completes a
 * generation copies `status` (written by any thread before it arrived) into
 * `stop`, and every thread returns that one value, so all threads take the
 * same decision (carry on, or leave the call) at the same barrier, whatever
 * the timing. No thread may read `status` itself to decide: a thread that
 * reads it between two barriers can see a value set later in the step by
 * another thread and leave while that one waits for it at the next barrier
 * (the hang of fastnn 0.1). */
typedef struct {
    int count;
    int gen;
    int stop;
    int sleepers;
} fnn_barrier_t;

/* Spins (x86 `pause`, about 40-140 cycles each) before a waiting thread
 * sleeps: about 30-100 us at 2-3 GHz, longer than most phases of a small step. */
#ifndef FNN_SPIN_LIMIT
#define FNN_SPIN_LIMIT 2000
#endif
static volatile long fnn_spin_limit = FNN_SPIN_LIMIT; /* _kernels._spin_limit */

static inline void fnn_cpu_relax(void)
{
#if FNN_HAVE_X86
    _mm_pause();
#elif defined(__aarch64__) && FNN_GNUC
    __asm__ __volatile__("yield");
#elif defined(_WIN32)
    YieldProcessor();
#endif
}

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
static inline void fnn_futex_wait(int *addr, int val)
{
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static inline void fnn_futex_wake_all(int *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}
#define FNN_FUTEX 1
#else
#define FNN_FUTEX 0
#endif

/* Arrive for m threads (m = 1: an ordinary wait; more: stand in for threads
 * that could not be started) and wait for the others; returns the status
 * published by this generation (0: carry on). */
static inline int fnn_barrier_sync(fnn_barrier_t *b, int nt, int m, const int *status)
{
    if (nt <= 1)
        return FNN_LOAD(status, RELAXED);
    int g = FNN_LOAD(&b->gen, ACQUIRE);
    if (FNN_ADD_FETCH(&b->count, m, ACQ_REL) == nt) {
        /* the arrivals' acq_rel chain makes every status written before an
           arrival visible here */
        FNN_STORE(&b->count, 0, RELAXED);
        int st = FNN_LOAD(status, RELAXED);
        FNN_STORE(&b->stop, st, RELAXED);
        FNN_STORE(&b->gen, g + 1, SEQ_CST);
        if (FNN_LOAD(&b->sleepers, SEQ_CST) > 0) {
#if FNN_FUTEX
            fnn_futex_wake_all(&b->gen);
#endif
        }
        return st;
    }
    for (long spins = 0; FNN_LOAD(&b->gen, ACQUIRE) == g; spins++) {
        if (spins < fnn_spin_limit) {
            fnn_cpu_relax();
            continue;
        }
        /* sleepers before the generation check, and the releaser's generation
           before its sleepers check (both sequentially consistent): either it
           sees this sleeper, or this thread sees the new generation (and
           FUTEX_WAIT returns at once when gen no longer equals g) */
        (void) FNN_ADD_FETCH(&b->sleepers, 1, SEQ_CST);
        while (FNN_LOAD(&b->gen, SEQ_CST) == g) {
#if FNN_FUTEX
            fnn_futex_wait(&b->gen, g);
#else
            fnn_yield();
#endif
        }
        (void) FNN_ADD_FETCH(&b->sleepers, -1, SEQ_CST);
        break;
    }
    return FNN_LOAD(&b->stop, RELAXED);
}

/* Subnormal numbers flushed to zero inside a training call (FTZ and DAZ on
 * x86, FPCR.FZ on aarch64), set by every training thread for the call and
 * restored on return. Measured on 2 vCPUs of an Intel Xeon (AVX-512, KVM),
 * one thread, 30,000 MNIST images of [784, 128, 10], batch 10, SGD momentum
 * 0.9: 0.264 s with subnormals, 0.135 s flushed (velocities of weights whose
 * gradient vanishes decay through the subnormal range, and each such
 * arithmetic operation takes a microcode assist on Intel); random inputs:
 * 0.688 s against 0.136 s. Results change only where a value would have
 * been below 1.2e-38 (float32) or 2.2e-308 (float64), the same on every
 * thread count and instruction set. */
#if FNN_HAVE_X86 || defined(_M_X64) || defined(__x86_64__) || defined(__SSE__)
#include <xmmintrin.h>
typedef unsigned int fnn_fpmode_t;
static inline fnn_fpmode_t fnn_flush_begin(void)
{
    unsigned int m = _mm_getcsr();
    _mm_setcsr(m | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return m;
}
static inline void fnn_flush_end(fnn_fpmode_t m) { _mm_setcsr(m); }
#elif defined(__aarch64__) && FNN_GNUC
typedef uint64_t fnn_fpmode_t;
static inline fnn_fpmode_t fnn_flush_begin(void)
{
    uint64_t m;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(m));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(m | (1ull << 24)));
    return m;
}
static inline void fnn_flush_end(fnn_fpmode_t m) { __asm__ __volatile__("msr fpcr, %0" : : "r"(m)); }
#else
typedef int fnn_fpmode_t;
static inline fnn_fpmode_t fnn_flush_begin(void) { return 0; }
static inline void fnn_flush_end(fnn_fpmode_t m) { (void) m; }
#endif

/* The step plan: whether a phase of a batch of bs rows is split over the
 * nt threads (else thread 0 does it alone). The one place that decides it:
 * the training loop asks it for every phase, and for its barriers (there is
 * a barrier between two consecutive phases iff either is split; always one
 * after the gather, after the loss and at the step's end), and the call asks
 * it whether a second thread is worth starting at all. A phase is split
 *  - when it is big: at least min_macs multiply-adds (fnn_par_min_macs, the
 *    measured crossover)
 *      forward of layer l:  bs * n_in * n_out;
 *      backward of layer l: twice that (dZ_prev and dW), once for layer 0;
 *    or, under the measured threshold only, every phase when the network's
 *    weights and optimizer slots exceed one core's L2 (state_big): then
 *    each step streams them from L3 or memory, at a small batch for longer
 *    than its multiply-adds take, and two cores stream two halves, each
 *    held by its own L2 where they fit there. The probe that measures
 *    min_macs ([784, 128, 10], 800 KB of weights and velocity) never sees
 *    such a step. Zen 4, 2 vCPUs (1 MiB L2), epochs interleaved in one
 *    process, every phase split against the measured threshold alone:
 *    [784, 800, 10] at batch 10 (6.3M multiply-adds a phase, 5 MB), which
 *    a 6.4M threshold kept on one thread, 0.65x its time; [784, 256, 256,
 *    256, 10] at batch 10 (2.6 MB) 0.85x, where splitting only the first
 *    layer (1.6 MB, the one above the L2) did not beat one thread;
 *  - or when splitting it adds no barrier: the phases on both sides of it are
 *    big (or a fixed barrier is there). Such a phase is small, but as
 *    the step waits at its barriers anyway, splitting it saves half its time,
 *    and each thread then makes the columns it reads next (the backward of
 *    an output layer of 10: thread 0 made all of dZ for the first layer's
 *    dW, whose columns the other thread then fetched from its core). On 2
 *    vCPUs of Zen 4, fit epochs interleaved with the switch off and on
 *    (_kernels._free_splits): medians 0.92-1.02x, most 0.94-0.98x, on
 *    [784, 128, 10] at batches 64-512, [784, 800, 10] and [784, 1024, 1024,
 *    10] at 128; never slower beyond the VM's noise. */
/* 1: the split phases that add no barrier (the default); 0: big phases
   only, for measurements and tests (fastnn._kernels._free_splits); the
   results are the same bits either way */
static volatile int fnn_free_splits = 1;

static inline double fnn_fwd_macs(const ptrdiff_t *sizes, ptrdiff_t l, ptrdiff_t bs)
{
    return (double) bs * (double) sizes[l] * (double) sizes[l + 1];
}

/* The split rule of a call: phases of min_macs multiply-adds, or every
   phase (state_big: see above) */
typedef struct {
    double min_macs;
    int state_big;
} fnn_split_rule_t;

static inline int fnn_big_fwd(const ptrdiff_t *sizes, ptrdiff_t l, ptrdiff_t bs,
                              const fnn_split_rule_t *r)
{
    return r->state_big || fnn_fwd_macs(sizes, l, bs) >= r->min_macs;
}

static inline int fnn_big_bwd(const ptrdiff_t *sizes, ptrdiff_t l, ptrdiff_t bs,
                              const fnn_split_rule_t *r)
{
    return r->state_big || fnn_fwd_macs(sizes, l, bs) * (l > 0 ? 2 : 1) >= r->min_macs;
}

/* The rule for one phase: big, or (free splits on) both barriers around it
   there anyway */
static inline int fnn_split_phase(int nt, int big, int barrier_before, int barrier_after)
{
    return nt > 1 && (big || (fnn_free_splits && barrier_before && barrier_after));
}

static inline int fnn_split_fwd(const ptrdiff_t *sizes, ptrdiff_t n_layers, ptrdiff_t l,
                                ptrdiff_t bs, int nt, const fnn_split_rule_t *r)
{
    /* before: the gather's barrier, or the previous layer's; after: the next
       layer's (the last layer's is followed by the loss, on thread 0) */
    return fnn_split_phase(nt, fnn_big_fwd(sizes, l, bs, r),
                           l == 0 || fnn_big_fwd(sizes, l - 1, bs, r),
                           l + 1 < n_layers && fnn_big_fwd(sizes, l + 1, bs, r));
}

static inline int fnn_split_bwd(const ptrdiff_t *sizes, ptrdiff_t n_layers, ptrdiff_t l,
                                ptrdiff_t bs, int nt, const fnn_split_rule_t *r)
{
    /* before: the loss's barrier, or the layer above's; after: the layer
       below's, or the step's last barrier */
    return fnn_split_phase(nt, fnn_big_bwd(sizes, l, bs, r),
                           l + 1 == n_layers || fnn_big_bwd(sizes, l + 1, bs, r),
                           l == 0 || fnn_big_bwd(sizes, l - 1, bs, r));
}

/* Test-only fault injection (fastnn._kernels._test_delay): thread `tid`
 * sleeps `us` microseconds at point `point` of every step (1: after the
 * gather barrier; 2: before the loss barrier; 3: before the step's last
 * barrier), so tests can provoke a race deterministically. Off (tid -1)
 * unless a test sets it. */
static volatile int fnn_test_delay_tid = -1, fnn_test_delay_point = 0, fnn_test_delay_us = 0;

static inline void fnn_test_delay(int tid, int point)
{
    if (FNN_UNLIKELY(fnn_test_delay_tid == tid) && fnn_test_delay_point == point)
        fnn_sleep_us(fnn_test_delay_us);
}

/* The backward's panels of W's rows (fnn_fuse_rows_of): -1, sized from the
 * L2 (default); 0, one per thread (no one pass); n, n rows (rounded up to a
 * whole panel of the products), for measurements and tests
 * (fastnn._kernels._fuse_rows); the results are the same bits either way. */
static volatile ptrdiff_t fnn_fuse_rows = -1;


/* dw_update packs its operands for batches of up to this many rows (its
 * buffer grows with the batch); larger batches read them in place. */
#define FNN_DW_PACK_MAX_ROWS 4096

/* Batches of at least this many rows compute dZ_prev from W^T panels packed
 * from W; smaller ones keep a transposed copy of W (see fnn_train). */
#ifndef FNN_BT_MIN_ROWS
#define FNN_BT_MIN_ROWS 8
#endif

static const char *fnn_gemm_isa_name = "generic";
static int fnn_gemm_select(const char *name);
static double fnn_par_min_macs(int is_double);
static fnn_split_rule_t fnn_split_rule(int n_threads, int fixed, double macs, double n_w,
                                       double state, int is_double);
/* the calibration's own calls force a threshold (this thread only; < 0: none) */
static FNN_TLS double fnn_force_min_macs = -1;

/* the double kernels' entry, which the float loop's exact sums call too
   (a tentative definition; _gemm_train.h's d inclusion repeats it) */
static fnn_kern_t_d fnn_kern_d;
#define FNN_SFX f
#include "_gemm_train.h"
#undef FNN_SFX
#define FNN_SFX d
#include "_gemm_train.h"
#undef FNN_SFX

/* The split threshold of the training loop, measured once per process at
 * its first threaded call, on the training loop itself: steps of a
 * synthetic [784, 128, 10] (float, SGD momentum) at batches 8, 16, ..., 256
 * on one thread and on two with every phase split, best of 3 runs of 12
 * steps each; the threshold is the first layer's multiply-adds per batch
 * (bs x 784 x 128) at the smallest batch where two threads take less than
 * 0.9x the one-thread time, and 256 x 784 x 128 x 2 when none does (about
 * 60 ms, once; when none does, up to two more passes 20 ms apart, and
 * again 30 s later, as a core busy with another process during the
 * measurement also makes two threads lose). A barrier's round trip alone does not predict it: on 2 vCPUs
 * of an Intel Xeon (KVM) the barrier of two spinning threads took about
 * 0.3 us, yet two threads were 3x slower than one at batch 10 (each thread's
 * half of a step took 2.4x the whole step alone: the lines each step passes
 * between the cores), and 1.2x faster at batch 128. Double's rate is half
 * float's: its threshold is half. fnn_calib: the two times at the crossover
 * batch (ns a step) and the threshold. */
static double fnn_calib[3]; /* t1 ns/step, t2 ns/step at the crossover, threshold (0: not yet) */
static double fnn_calib_at; /* when it was measured (fnn_now_ns) */

#if FNN_PTHREADS
/* ns per step of `steps` steps of the probe at batch bs on nt threads. */
static double fnn_probe_steps(fnn_bufs_t_f *pb, fnn_opt_t *opt, ptrdiff_t bs, int nt, int steps)
{
    double loss = 0;
    ptrdiff_t correct = 0;
    int diverged = 0, corrupt = 0;
    pb->batch_size = bs;
    pb->start = 0;
    pb->stop = bs * steps;
    double t0 = fnn_now_ns();
    fnn_train_f(pb, opt, nt, &loss, &correct, &diverged, &corrupt);
    return (fnn_now_ns() - t0) / steps;
}
#endif

static double fnn_par_min_macs(int is_double)
{
#ifdef FNN_PAR_MIN_MACS
    return (double) FNN_PAR_MIN_MACS / (is_double ? 2 : 1);
#else
    double done = fnn_load_dbl(&fnn_calib[2]);
    enum { D = 784, H = 128, C = 10, MAXB = 256, STEPS = 12, ROWS = 512 };
    const double none = 2.0 * MAXB * D * H; /* the threshold when two threads never win */
    /* no crossover found (two threads never won, as when another process
       held a core during the measurement): measured again 30 s later */
    if (done > 0 && (done < none || fnn_now_ns() < fnn_calib_at + 30e9))
        return done / (is_double ? 2 : 1);
    /* one measurement at a time (two at once would measure each other): a
       call that finds one running uses the last threshold, or 400k */
    static int busy = 0;
    if (FNN_XCHG(&busy, 1, ACQUIRE))
        return (done > 0 ? done : 4e5) / (is_double ? 2 : 1);
    const ptrdiff_t sizes[3] = {D, H, C};
    const ptrdiff_t np_ = D * H + H * C + H + C;
    double min_macs = none, t1s = 0, t2s = 0;
#if FNN_PTHREADS
    /* buffers: params, slot, wt, acts, deltas, x, y, order, ybuf, wbuf, masks */
    size_t nf = (size_t) (3 * np_ + MAXB * (D + H + C) + 2 * MAXB * H + ROWS * D + MAXB);
    float *f = NULL;
    ptrdiff_t *ix = (ptrdiff_t *) calloc((size_t) (ROWS + MAXB * STEPS + MAXB), sizeof(ptrdiff_t));
    uint8_t *masks = (uint8_t *) calloc((size_t) MAXB * (D + H), 1);
    f = (float *) fnn_aligned_alloc(nf * sizeof(float));
    if (f && ix && masks) {
        memset(f, 0, nf * sizeof(float));
        float *params = f, *slot = f + np_, *wt = f + 2 * np_, *acts = f + 3 * np_;
        float *deltas = acts + MAXB * (D + H + C), *x = deltas + 2 * MAXB * H;
        float *wbuf = x + ROWS * D;
        for (ptrdiff_t i = 0; i < D * H + H * C; i++) /* small weights, inputs in [0, 1) */
            params[i] = (float) ((int) ((i * 2654435761u) % 2001) - 1000) * 1e-5f;
        for (ptrdiff_t i = 0; i < ROWS * D; i++)
            x[i] = (float) ((i * 40503u) % 256) / 256.0f;
        ptrdiff_t *y = ix, *order = ix + ROWS, *ybuf = order + MAXB * STEPS;
        for (ptrdiff_t i = 0; i < ROWS; i++)
            y[i] = i % C;
        for (ptrdiff_t i = 0; i < MAXB * STEPS; i++)
            order[i] = i % ROWS;
        fnn_bufs_t_f pb;
        memset(&pb, 0, sizeof pb);
        pb.x = x, pb.y = y, pb.order = order, pb.n_rows = ROWS, pb.sizes = sizes;
        pb.n_layers = 2, pb.act = FNN_RELU, pb.params = params, pb.wt = wt, pb.slot0 = slot;
        pb.acts = acts, pb.deltas = deltas, pb.wbuf = wbuf, pb.ybuf = ybuf, pb.masks = masks;
        fnn_opt_t opt;
        memset(&opt, 0, sizeof opt);
        opt.kind = FNN_OPT_SGD, opt.lr = 1e-3, opt.mu = 0.9;
        /* up to three passes over the batches, 20 ms apart, until one finds
           the crossover: a core taken by another process, the kernel or the
           hypervisor for the 20-60 ms of a pass makes two threads lose at
           every batch (on 2 vCPUs of Zen 4 after loading MNIST, 3 first
           passes in 5) */
        for (int pass = 0; pass < 3 && min_macs == none; pass++) {
            if (pass)
                fnn_sleep_us(20000);
            for (ptrdiff_t bs = 8; bs <= MAXB; bs *= 2) {
                double t1 = 1e30, t2 = 1e30;
                for (int rep = 0; rep < 3; rep++) {
                    fnn_force_min_macs = 1e300;
                    double a = fnn_probe_steps(&pb, &opt, bs, 1, STEPS);
                    fnn_force_min_macs = 0;
                    double b2 = fnn_probe_steps(&pb, &opt, bs, 2, STEPS);
                    t1 = a < t1 ? a : t1;
                    t2 = b2 < t2 ? b2 : t2;
                }
                fnn_force_min_macs = -1;
                t1s = t1, t2s = t2;
                if (t2 < 0.9 * t1) {
                    min_macs = (double) bs * D * H;
                    break;
                }
            }
        }
    }
    fnn_force_min_macs = -1;
    fnn_aligned_free(f);
    free(ix);
    free(masks);
#endif
    fnn_calib[0] = t1s;
    fnn_calib[1] = t2s;
    fnn_calib_at = fnn_now_ns();
    fnn_store_dbl(&fnn_calib[2], min_macs);
    FNN_STORE(&busy, 0, RELEASE);
    return min_macs / (is_double ? 2 : 1);
#endif
}

/* The split rule of a training call on n_threads threads (fnn_train's; see
 * fnn_split_fwd): the threshold the caller fixed (fixed: macs, a step plan
 * or a test), or the one a calibration forces, is the whole rule; else the
 * measured threshold, and the state rule for a network of n_w weights of
 * `state` bytes each (the weight and its optimizer slots) against the L2 of
 * one core. */
static fnn_split_rule_t fnn_split_rule(int n_threads, int fixed, double macs, double n_w,
                                       double state, int is_double)
{
    fnn_split_rule_t r = {1e300, 0};
    if (n_threads <= 1)
        return r;
    if (fixed)
        r.min_macs = macs;
    else if (fnn_force_min_macs >= 0)
        r.min_macs = fnn_force_min_macs;
    else {
        r.min_macs = fnn_par_min_macs(is_double);
        r.state_big = n_w * state > (double) fnn_caches()[1];
    }
    return r;
}

#if FNN_HAVE_X86
static int fnn_cpu_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
           && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
}

static int fnn_cpu_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

/* The micro-kernel registry: one entry per instruction set this build holds,
 * its float and double kernels (each an fnn_kern_t, _ukernel.h, made by
 * _gemm_isa.h as fnn_ukernel_<isa>_<f|d>), best first; usable: whether this
 * CPU runs them (NULL: every CPU of the architecture). */
typedef struct {
    int (*usable)(void);
    const fnn_kern_t_f *f;
    const fnn_kern_t_d *d;
} fnn_ukernel_entry_t;

static const fnn_ukernel_entry_t fnn_ukernels[] = {
#if FNN_HAVE_X86
    {fnn_cpu_avx512, &fnn_ukernel_avx512_f, &fnn_ukernel_avx512_d},
    {fnn_cpu_avx2, &fnn_ukernel_avx2_f, &fnn_ukernel_avx2_d},
#endif
#if FNN_HAVE_NEON
    {NULL, &fnn_ukernel_neon_f, &fnn_ukernel_neon_d},
#endif
    {NULL, &fnn_ukernel_generic_f, &fnn_ukernel_generic_d},
};
#define FNN_N_UKERNELS ((int) (sizeof fnn_ukernels / sizeof fnn_ukernels[0]))

/* Entry i of the registry (fastnn._kernels._ukernels): its float and double
 * kernels, and whether this CPU runs them; NULL past the end. */
static const fnn_ukernel_entry_t *fnn_ukernel_at(int i, int *usable)
{
    if (i < 0 || i >= FNN_N_UKERNELS)
        return NULL;
    *usable = fnn_ukernels[i].usable == NULL || fnn_ukernels[i].usable();
    return &fnn_ukernels[i];
}

/* Select the kernels: name NULL (or "") for the first entry of the registry
 * the CPU runs, else the entry of that instruction set ("avx512", "avx2",
 * "neon" or "generic"). Returns 0, or -1 if the CPU (or the build) lacks it. */
static int fnn_gemm_select(const char *name)
{
    const int want_best = name == NULL || name[0] == '\0';
    for (int i = 0; i < FNN_N_UKERNELS; i++) {
        int usable;
        const fnn_ukernel_entry_t *e = fnn_ukernel_at(i, &usable);
        if (!want_best && strcmp(name, e->f->isa) != 0)
            continue;
        if (!usable) {
            if (want_best)
                continue;
            return -1;
        }
        fnn_kern_f = *e->f;
        fnn_kern_d = *e->d;
        fnn_gemm_isa_name = e->f->isa;
        return 0;
    }
    return -1;
}

static const char *fnn_gemm_isa(void) { return fnn_gemm_isa_name; }

/* The dropout mask of n elements (mask[e] = u16(e) >= thr, 0/1 bytes) on the
 * selected kernels: the public dropout_mask. */
static void fnn_dropout_mask(uint8_t *mask, ptrdiff_t n, uint64_t key, uint32_t thr)
{
    if (fnn_kern_f.drop == NULL)
        fnn_gemm_select(NULL);
    fnn_kern_f.drop(NULL, mask, 0, n, key, thr, 1.0f);
}

/* The standalone Adam step on n elements (the public adam_update), with the
 * penalties and the decoupled decay on every element:
 *   g = grad + l2 w + l1 sign(w);  m = b1 m + c1 g;  v = b2 v + c2 g g;
 *   w = w decay - (at m) / (sqrt(v) st + eps). */
#define FNN_ADAM_UPDATE(NAME, T, STEP, SQRT)                                  \
    FNN_CLONES static void NAME(T *w, const T *g, T *m, T *v, ptrdiff_t n,    \
                                const STEP *hp)                               \
    {                                                                         \
        const T b1 = hp->b1, c1 = hp->c1, b2 = hp->b2, c2 = hp->c2;           \
        const T at = hp->at, st = hp->st, eps = hp->eps, decay = hp->decay;   \
        const T l1 = hp->l1, l2 = hp->l2;                                     \
        const int use_decay = decay != 1;                                     \
        for (ptrdiff_t i = 0; i < n; i++) {                                   \
            T wi = w[i];                                                      \
            T gi = g[i] + l2 * wi;                                            \
            gi = wi > 0 ? gi + l1 : (wi < 0 ? gi - l1 : gi);                  \
            T mi = b1 * m[i] + c1 * gi;                                       \
            T vi = b2 * v[i] + c2 * (gi * gi);                                \
            m[i] = mi;                                                        \
            v[i] = vi;                                                        \
            T wd = use_decay ? wi * decay : wi;                               \
            w[i] = wd - (at * mi) / (SQRT(vi) * st + eps);                    \
        }                                                                     \
    }
FNN_ADAM_UPDATE(fnn_adam_f, float, fnn_step_f, FNN_SQRTF)
FNN_ADAM_UPDATE(fnn_adam_d, double, fnn_step_d, FNN_SQRTD)
#undef FNN_ADAM_UPDATE

static int fnn_threaded(void) { return FNN_PTHREADS; }

/* The compiler that built the core, and whether the elementwise passes are
 * cloned per instruction set (FNN_CLONES_ACTIVE, _fastmath.h). */
static const char *fnn_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#elif defined(_MSC_VER)
    return "msvc";
#else
    return "c";
#endif
}
static int fnn_clones_active(void) { return FNN_CLONES_ACTIVE; }
/* 1: the SIMD variants of this architecture are built; 0: the C kernels only
 * (FASTNN_PORTABLE_C or FASTNN_NO_SIMD, as setup.py's portable retry) */
static int fnn_simd_built(void) { return FNN_HAVE_X86 || FNN_HAVE_NEON; }

#endif
