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
/* The caches the blocking assumes, read once from the OS (Linux: sysfs, in
 * standard C; elsewhere, or when it says nothing, the defaults below, an
 * L1d of 32 KiB and an L2 of 1 MiB, the smallest of current x86-64 and
 * 64-bit ARM cores). fnn_cache[0] is the L1d, fnn_cache[1] the L2 per core,
 * in bytes (fastnn._kernels._cache_sizes). */
#define FNN_L1D_DEFAULT (32 * 1024)
#define FNN_L2_DEFAULT (1024 * 1024)
static ptrdiff_t fnn_cache[2];

/* The first line of cpu0's cache/index<index>/<name> in sysfs into buf;
 * 0 when there is none. */
static int fnn_sysfs_line(int index, const char *name, char *buf, int size)
{
    char path[96];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", index, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int ok = fgets(buf, size, f) != NULL;
    fclose(f);
    return ok;
}

/* The size in bytes of sysfs's cache index, with its level and whether it
 * holds data (Data or Unified); 0 when sysfs does not say. */
static ptrdiff_t fnn_sysfs_cache(int index, int *level, int *data)
{
    char buf[32], *end;
    *level = 0, *data = 0;
    if (!fnn_sysfs_line(index, "level", buf, sizeof buf))
        return 0;
    *level = atoi(buf);
    if (!fnn_sysfs_line(index, "type", buf, sizeof buf))
        return 0;
    *data = buf[0] == 'D' || buf[0] == 'U';
    if (!fnn_sysfs_line(index, "size", buf, sizeof buf))
        return 0;
    ptrdiff_t v = (ptrdiff_t) strtol(buf, &end, 10);
    return *end == 'K' ? v * 1024 : *end == 'M' ? v * 1024 * 1024 : v;
}

static const ptrdiff_t *fnn_caches(void)
{
    if (fnn_cache[1] == 0) {
        ptrdiff_t c[2] = {0, 0};
        for (int i = 0; i < 8; i++) {
            int level, data;
            ptrdiff_t v = fnn_sysfs_cache(i, &level, &data);
            if (data && (level == 1 || level == 2) && c[level - 1] == 0)
                c[level - 1] = v;
        }
        /* implausible answers (a VM's, a parser's) fall back to the defaults */
        fnn_cache[0] = c[0] >= 8 * 1024 && c[0] <= 1024 * 1024 ? c[0] : FNN_L1D_DEFAULT;
        fnn_cache[1] = c[1] >= 128 * 1024 && c[1] <= 64 * 1024 * 1024 ? c[1] : FNN_L2_DEFAULT;
    }
    return fnn_cache;
}

/* Rows of W per block of dw_update's packed loop (whole tiles of MRR = 6
 * rows on every instruction set): the block's columns of A (bs x 48) are
 * packed once per chunk of columns, and its rows of W and the slots are
 * read and written while they are in L1 and L2. */
#define FNN_DW_BLOCK_ROWS 48

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
 * threads only from fnn_par_min_macs() multiply-adds per batch on: below
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
static const int32_t fnn_mtab32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int64_t fnn_mtab64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
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

#define FNN_CAT4(a, b, c, d) a##_##b##_##c##_##d
#define FNN_XCAT4(a, b, c, d) FNN_CAT4(a, b, c, d)

/* ----------------------------------------------------------------- generic */
#define MRR 6
#define NRV 2
#define VL 1
#define MT int
#define MASKN(r) 0
#define VZERO 0
#define VSET1(x) (x)
#define VLOAD(p) (*(p))
#define VLOADM(p, m) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VSTOREM(p, m, v) (*(p) = (v))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VRELU(x) ((x) < 0 ? 0 : (x))
#define VSELPOS(x, a) ((a) > 0 ? (x) : 0)
#define VADDPOS(s, w, l) ((w) > 0 ? (s) + (l) : (s))
#define VSUBNEG(s, w, l) ((w) < 0 ? (s) - (l) : (s))
#define VDIV(a, b) ((a) / (b))
#define VSQRT(x) FNN_SQRT(x)
#define VTRANS(s, ls, d, ld) (*(d) = *(s))
#define FNN_TARGET

#define FNN_T float
#define VT float
#define FNN_SQRT FNN_SQRTF
#define FNN_HP fnn_step_f
#define FNN_BIAS_TANH fnn_bias_tanh_f
#define FNN_BIAS_SIGMOID fnn_bias_sigmoid_f
#define FNN_NAME(x) FNN_XCAT4(fnn, x, gen, f)
#include "_gemm_isa.h"
#undef FNN_T
#undef VT
#undef FNN_SQRT
#undef FNN_HP
#undef FNN_BIAS_TANH
#undef FNN_BIAS_SIGMOID
#undef FNN_NAME

#define FNN_T double
#define VT double
#define FNN_SQRT FNN_SQRTD
#define FNN_HP fnn_step_d
#define FNN_BIAS_TANH fnn_bias_tanh_d
#define FNN_BIAS_SIGMOID fnn_bias_sigmoid_d
#define FNN_NAME(x) FNN_XCAT4(fnn, x, gen, d)
#include "_gemm_isa.h"
#include "_gemm_undef.h"
#undef MRR
#undef NRV
#undef FNN_TARGET

/* A build that defines FASTNN_SIMD_BUILD_FAILS refuses to compile the SIMD
 * variants, as a compiler without their intrinsics would: the check of
 * setup.py's portable retry (CFLAGS=-DFASTNN_SIMD_BUILD_FAILS pip install .
 * installs the portable core; the retry defines FASTNN_NO_SIMD). */
#if (FNN_HAVE_X86 || FNN_HAVE_NEON) && defined(FASTNN_SIMD_BUILD_FAILS)
#error "FASTNN_SIMD_BUILD_FAILS: the SIMD variants refused (a check of the portable retry)"
#endif

#if FNN_HAVE_X86
/* VL x VL in-register transposes, d[i * ld + j] = s[j * ls + i], for the
 * packing of W^T panels (pack_panel_t in _gemm_isa.h) */
__attribute__((target("avx512f"))) static inline void
fnn_trans_avx512_f(const float *s, ptrdiff_t ls, float *d, ptrdiff_t ld)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(s + i * ls);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
    for (int i = 0; i < 16; i++)
        _mm512_storeu_ps(d + i * ld, r[i]);
}

__attribute__((target("avx512f"))) static inline void
fnn_trans_avx512_d(const double *s, ptrdiff_t ls, double *d, ptrdiff_t ld)
{
    __m512d r[8], t[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm512_loadu_pd(s + i * ls);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
    }
    for (int g = 0; g < 8; g += 4)
        for (int i = g; i < g + 2; i++) {
            r[i] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0x88);
            r[i + 2] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0xdd);
        }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f64x2(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f64x2(r[i], r[i + 4], 0xdd);
    }
    for (int i = 0; i < 8; i++)
        _mm512_storeu_pd(d + i * ld, t[i]);
}

__attribute__((target("avx2"))) static inline void
fnn_trans_avx2_f(const float *s, ptrdiff_t ls, float *d, ptrdiff_t ld)
{
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(s + i * ls);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 8; g += 4) {
        r[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        r[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
        r[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        r[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; i++)
        _mm256_storeu_ps(d + i * ld, t[i]);
}

__attribute__((target("avx2"))) static inline void
fnn_trans_avx2_d(const double *s, ptrdiff_t ls, double *d, ptrdiff_t ld)
{
    __m256d r[4], t[4];
    for (int i = 0; i < 4; i++)
        r[i] = _mm256_loadu_pd(s + i * ls);
    t[0] = _mm256_unpacklo_pd(r[0], r[1]);
    t[1] = _mm256_unpackhi_pd(r[0], r[1]);
    t[2] = _mm256_unpacklo_pd(r[2], r[3]);
    t[3] = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t[0], t[2], 0x20);
    r[1] = _mm256_permute2f128_pd(t[1], t[3], 0x20);
    r[2] = _mm256_permute2f128_pd(t[0], t[2], 0x31);
    r[3] = _mm256_permute2f128_pd(t[1], t[3], 0x31);
    for (int i = 0; i < 4; i++)
        _mm256_storeu_pd(d + i * ld, r[i]);
}

/* ------------------------------------------------------------------ AVX-512 */
#define FNN_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define MRR 6
#define NRV 4

#define FNN_T float
#define FNN_SQRT FNN_SQRTF
#define FNN_HP fnn_step_f
#define FNN_BIAS_TANH fnn_bias_tanh_f
#define FNN_BIAS_SIGMOID fnn_bias_sigmoid_f
#define FNN_NAME(x) FNN_XCAT4(fnn, x, avx512, f)
#define VT __m512
#define VL 16
#define MT __mmask16
#define MASKN(r) ((__mmask16) ((1u << (r)) - 1u))
#define VZERO _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_loadu_ps(p)
#define VLOADM(p, m) _mm512_maskz_loadu_ps(m, p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSTOREM(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VDIV(a, b) _mm512_div_ps(a, b)
#define VSQRT(x) _mm512_sqrt_ps(x)
#define VTRANS(s, ls, d, ld) fnn_trans_avx512_f(s, ls, d, ld)
#define VRELU(x) _mm512_max_ps(_mm512_setzero_ps(), x)
#define VSELPOS(x, a) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ), x)
#define VADDPOS(s, w, l) _mm512_mask_add_ps(s, _mm512_cmp_ps_mask(w, _mm512_setzero_ps(), _CMP_GT_OQ), s, l)
#define VSUBNEG(s, w, l) _mm512_mask_sub_ps(s, _mm512_cmp_ps_mask(w, _mm512_setzero_ps(), _CMP_LT_OQ), s, l)
#include "_gemm_isa.h"
#include "_gemm_undef.h"

#define FNN_T double
#define FNN_SQRT FNN_SQRTD
#define FNN_HP fnn_step_d
#define FNN_BIAS_TANH fnn_bias_tanh_d
#define FNN_BIAS_SIGMOID fnn_bias_sigmoid_d
#define FNN_NAME(x) FNN_XCAT4(fnn, x, avx512, d)
#define VT __m512d
#define VL 8
#define MT __mmask8
#define MASKN(r) ((__mmask8) ((1u << (r)) - 1u))
#define VZERO _mm512_setzero_pd()
#define VSET1(x) _mm512_set1_pd(x)
#define VLOAD(p) _mm512_loadu_pd(p)
#define VLOADM(p, m) _mm512_maskz_loadu_pd(m, p)
#define VSTORE(p, v) _mm512_storeu_pd(p, v)
#define VSTOREM(p, m, v) _mm512_mask_storeu_pd(p, m, v)
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define VMUL(a, b) _mm512_mul_pd(a, b)
#define VADD(a, b) _mm512_add_pd(a, b)
#define VSUB(a, b) _mm512_sub_pd(a, b)
#define VDIV(a, b) _mm512_div_pd(a, b)
#define VSQRT(x) _mm512_sqrt_pd(x)
#define VTRANS(s, ls, d, ld) fnn_trans_avx512_d(s, ls, d, ld)
#define VRELU(x) _mm512_max_pd(_mm512_setzero_pd(), x)
#define VSELPOS(x, a) _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(a, _mm512_setzero_pd(), _CMP_GT_OQ), x)
#define VADDPOS(s, w, l) _mm512_mask_add_pd(s, _mm512_cmp_pd_mask(w, _mm512_setzero_pd(), _CMP_GT_OQ), s, l)
#define VSUBNEG(s, w, l) _mm512_mask_sub_pd(s, _mm512_cmp_pd_mask(w, _mm512_setzero_pd(), _CMP_LT_OQ), s, l)
#include "_gemm_isa.h"
#include "_gemm_undef.h"
#undef FNN_TARGET
#undef MRR
#undef NRV

/* --------------------------------------------------------------- AVX2 + FMA */
#define FNN_TARGET __attribute__((target("avx2,fma")))
#define MRR 6
#define NRV 2

#define FNN_T float
#define FNN_SQRT FNN_SQRTF
#define FNN_HP fnn_step_f
#define FNN_BIAS_TANH fnn_bias_tanh_f
#define FNN_BIAS_SIGMOID fnn_bias_sigmoid_f
#define FNN_NAME(x) FNN_XCAT4(fnn, x, avx2, f)
#define VT __m256
#define VL 8
#define MT __m256i
#define MASKN(r) _mm256_loadu_si256((const __m256i *) (fnn_mtab32 + 8 - (r)))
#define VZERO _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_loadu_ps(p)
#define VLOADM(p, m) _mm256_maskload_ps(p, m)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSTOREM(p, m, v) _mm256_maskstore_ps(p, m, v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VDIV(a, b) _mm256_div_ps(a, b)
#define VSQRT(x) _mm256_sqrt_ps(x)
#define VTRANS(s, ls, d, ld) fnn_trans_avx2_f(s, ls, d, ld)
#define VRELU(x) _mm256_max_ps(_mm256_setzero_ps(), x)
#define VSELPOS(x, a) _mm256_and_ps(x, _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ))
#define VADDPOS(s, w, l) _mm256_blendv_ps(s, _mm256_add_ps(s, l), _mm256_cmp_ps(w, _mm256_setzero_ps(), _CMP_GT_OQ))
#define VSUBNEG(s, w, l) _mm256_blendv_ps(s, _mm256_sub_ps(s, l), _mm256_cmp_ps(w, _mm256_setzero_ps(), _CMP_LT_OQ))
#include "_gemm_isa.h"
#include "_gemm_undef.h"

#define FNN_T double
#define FNN_SQRT FNN_SQRTD
#define FNN_HP fnn_step_d
#define FNN_BIAS_TANH fnn_bias_tanh_d
#define FNN_BIAS_SIGMOID fnn_bias_sigmoid_d
#define FNN_NAME(x) FNN_XCAT4(fnn, x, avx2, d)
#define VT __m256d
#define VL 4
#define MT __m256i
#define MASKN(r) _mm256_loadu_si256((const __m256i *) (fnn_mtab64 + 4 - (r)))
#define VZERO _mm256_setzero_pd()
#define VSET1(x) _mm256_set1_pd(x)
#define VLOAD(p) _mm256_loadu_pd(p)
#define VLOADM(p, m) _mm256_maskload_pd(p, m)
#define VSTORE(p, v) _mm256_storeu_pd(p, v)
#define VSTOREM(p, m, v) _mm256_maskstore_pd(p, m, v)
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define VMUL(a, b) _mm256_mul_pd(a, b)
#define VADD(a, b) _mm256_add_pd(a, b)
#define VSUB(a, b) _mm256_sub_pd(a, b)
#define VDIV(a, b) _mm256_div_pd(a, b)
#define VSQRT(x) _mm256_sqrt_pd(x)
#define VTRANS(s, ls, d, ld) fnn_trans_avx2_d(s, ls, d, ld)
#define VRELU(x) _mm256_max_pd(_mm256_setzero_pd(), x)
#define VSELPOS(x, a) _mm256_and_pd(x, _mm256_cmp_pd(a, _mm256_setzero_pd(), _CMP_GT_OQ))
#define VADDPOS(s, w, l) _mm256_blendv_pd(s, _mm256_add_pd(s, l), _mm256_cmp_pd(w, _mm256_setzero_pd(), _CMP_GT_OQ))
#define VSUBNEG(s, w, l) _mm256_blendv_pd(s, _mm256_sub_pd(s, l), _mm256_cmp_pd(w, _mm256_setzero_pd(), _CMP_LT_OQ))
#include "_gemm_isa.h"
#include "_gemm_undef.h"
#undef FNN_TARGET
#undef MRR
#undef NRV
#endif /* FNN_HAVE_X86 */

/* -------------------------------------------------------------- NEON (arm64) */
/* Advanced SIMD is part of every aarch64 CPU (Apple M-series, Graviton,
 * Ampere, Cortex-A): 128-bit vectors (4 floats, 2 doubles), 32 vector
 * registers and a fused multiply-add (fmla), so the kernels need no target
 * attribute and no run-time test; "generic" can still be selected. The
 * register tile is AVX-512's shape, 6 rows x 4 vectors: 24 accumulators, 4
 * vectors of B and a broadcast of A (29 of the 32 registers), 24 fmla per k
 * step (96 float or 48 double multiply-adds). NEON has no masked loads: the
 * last vector of a panel is loaded whole when it is full, else lane by lane
 * into zeros, all inline (MT: the count of valid lanes; a memcpy here was a
 * call in the K loop, around which the accumulators were spilled).
 * arm_neon.h intrinsics only (GCC, clang and Apple clang; MSVC's arm64
 * compiler has them too). */
#if FNN_HAVE_NEON
static inline float32x4_t fnn_neon_loadm_f(const float *p, int n)
{
    if (n >= 4)
        return vld1q_f32(p);
    float32x4_t v = vld1q_lane_f32(p, vdupq_n_f32(0.0f), 0);
    if (n > 1)
        v = vld1q_lane_f32(p + 1, v, 1);
    if (n > 2)
        v = vld1q_lane_f32(p + 2, v, 2);
    return v;
}
static inline void fnn_neon_storem_f(float *p, int n, float32x4_t v)
{
    if (n >= 4) {
        vst1q_f32(p, v);
        return;
    }
    vst1q_lane_f32(p, v, 0);
    if (n > 1)
        vst1q_lane_f32(p + 1, v, 1);
    if (n > 2)
        vst1q_lane_f32(p + 2, v, 2);
}
static inline float64x2_t fnn_neon_loadm_d(const double *p, int n)
{
    return n >= 2 ? vld1q_f64(p) : vld1q_lane_f64(p, vdupq_n_f64(0.0), 0);
}
static inline void fnn_neon_storem_d(double *p, int n, float64x2_t v)
{
    if (n >= 2)
        vst1q_f64(p, v);
    else
        vst1q_lane_f64(p, v, 0);
}
/* 4 x 4 and 2 x 2 in-register transposes, d[i * ld + j] = s[j * ls + i] */
static inline void fnn_trans_neon_f(const float *s, ptrdiff_t ls, float *d, ptrdiff_t ld)
{
    float32x4_t r0 = vld1q_f32(s), r1 = vld1q_f32(s + ls);
    float32x4_t r2 = vld1q_f32(s + 2 * ls), r3 = vld1q_f32(s + 3 * ls);
    float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1));
    float64x2_t t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
    float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3));
    float64x2_t t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
    vst1q_f32(d, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
    vst1q_f32(d + ld, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
    vst1q_f32(d + 2 * ld, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
    vst1q_f32(d + 3 * ld, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
}
static inline void fnn_trans_neon_d(const double *s, ptrdiff_t ls, double *d, ptrdiff_t ld)
{
    float64x2_t r0 = vld1q_f64(s), r1 = vld1q_f64(s + ls);
    vst1q_f64(d, vtrn1q_f64(r0, r1));
    vst1q_f64(d + ld, vtrn2q_f64(r0, r1));
}

#define FNN_TARGET
#define MRR 6
#define NRV 4

#define FNN_T float
#define FNN_SQRT FNN_SQRTF
#define FNN_HP fnn_step_f
#define FNN_BIAS_TANH fnn_bias_tanh_f
#define FNN_BIAS_SIGMOID fnn_bias_sigmoid_f
#define FNN_NAME(x) FNN_XCAT4(fnn, x, neon, f)
#define VT float32x4_t
#define VL 4
#define MT int
#define MASKN(r) (r)
#define VZERO vdupq_n_f32(0.0f)
#define VSET1(x) vdupq_n_f32(x)
#define VLOAD(p) vld1q_f32(p)
#define VLOADM(p, m) fnn_neon_loadm_f(p, m)
#define VSTORE(p, v) vst1q_f32(p, v)
#define VSTOREM(p, m, v) fnn_neon_storem_f(p, m, v)
#define VFMA(a, b, c) vfmaq_f32(c, a, b)
#define VMUL(a, b) vmulq_f32(a, b)
#define VADD(a, b) vaddq_f32(a, b)
#define VSUB(a, b) vsubq_f32(a, b)
#define VDIV(a, b) vdivq_f32(a, b)
#define VSQRT(x) vsqrtq_f32(x)
#define VTRANS(s, ls, d, ld) fnn_trans_neon_f(s, ls, d, ld)
/* as the x86 variants: x < 0 ? 0 : x (NaN and -0 kept), a > 0 ? x : 0 */
#define VRELU(x) vbslq_f32(vcltzq_f32(x), vdupq_n_f32(0.0f), x)
#define VSELPOS(x, a) vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(x), vcgtzq_f32(a)))
#define VADDPOS(s, w, l) vbslq_f32(vcgtzq_f32(w), vaddq_f32(s, l), s)
#define VSUBNEG(s, w, l) vbslq_f32(vcltzq_f32(w), vsubq_f32(s, l), s)
#include "_gemm_isa.h"
#include "_gemm_undef.h"

#define FNN_T double
#define FNN_SQRT FNN_SQRTD
#define FNN_HP fnn_step_d
#define FNN_BIAS_TANH fnn_bias_tanh_d
#define FNN_BIAS_SIGMOID fnn_bias_sigmoid_d
#define FNN_NAME(x) FNN_XCAT4(fnn, x, neon, d)
#define VT float64x2_t
#define VL 2
#define MT int
#define MASKN(r) (r)
#define VZERO vdupq_n_f64(0.0)
#define VSET1(x) vdupq_n_f64(x)
#define VLOAD(p) vld1q_f64(p)
#define VLOADM(p, m) fnn_neon_loadm_d(p, m)
#define VSTORE(p, v) vst1q_f64(p, v)
#define VSTOREM(p, m, v) fnn_neon_storem_d(p, m, v)
#define VFMA(a, b, c) vfmaq_f64(c, a, b)
#define VMUL(a, b) vmulq_f64(a, b)
#define VADD(a, b) vaddq_f64(a, b)
#define VSUB(a, b) vsubq_f64(a, b)
#define VDIV(a, b) vdivq_f64(a, b)
#define VSQRT(x) vsqrtq_f64(x)
#define VTRANS(s, ls, d, ld) fnn_trans_neon_d(s, ls, d, ld)
#define VRELU(x) vbslq_f64(vcltzq_f64(x), vdupq_n_f64(0.0), x)
#define VSELPOS(x, a) vreinterpretq_f64_u64(vandq_u64(vreinterpretq_u64_f64(x), vcgtzq_f64(a)))
#define VADDPOS(s, w, l) vbslq_f64(vcgtzq_f64(w), vaddq_f64(s, l), s)
#define VSUBNEG(s, w, l) vbslq_f64(vcltzq_f64(w), vsubq_f64(s, l), s)
#include "_gemm_isa.h"
#include "_gemm_undef.h"
#undef FNN_TARGET
#undef MRR
#undef NRV
#endif /* FNN_HAVE_NEON */

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
#if FNN_HAVE_X86
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
#elif defined(_M_X64) || defined(__x86_64__) || defined(__SSE__)
#include <xmmintrin.h>
typedef unsigned int fnn_fpmode_t;
static inline fnn_fpmode_t fnn_flush_begin(void)
{
    unsigned int m = _mm_getcsr();
    _mm_setcsr(m | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return m;
}
static inline void fnn_flush_end(fnn_fpmode_t m) { _mm_setcsr(m); }
#else
typedef int fnn_fpmode_t;
static inline fnn_fpmode_t fnn_flush_begin(void) { return 0; }
static inline void fnn_flush_end(fnn_fpmode_t m) { (void) m; }
#endif

/* The step plan: whether a phase of a batch of bs rows is split over the
 * nt threads (else thread 0 does it alone). The one place that decides it:
 * the training loop asks it for every phase, and for its barriers (there is
 * a barrier between two consecutive phases iff either is split), and the
 * call asks it whether a second thread is worth starting at all.
 *   forward of layer l:  bs * n_in * n_out multiply-adds;
 *   backward of layer l: twice that (dZ_prev and dW), once for layer 0. */
static inline int fnn_split_fwd(const ptrdiff_t *sizes, ptrdiff_t l, ptrdiff_t bs, int nt,
                                double min_macs)
{
    return nt > 1 && (double) bs * (double) sizes[l] * (double) sizes[l + 1] >= min_macs;
}

static inline int fnn_split_bwd(const ptrdiff_t *sizes, ptrdiff_t l, ptrdiff_t bs, int nt,
                                double min_macs)
{
    return nt > 1
           && (double) bs * (double) sizes[l] * (double) sizes[l + 1] * (l > 0 ? 2 : 1)
                  >= min_macs;
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

/* What the training products may pack, bits: 1 B panels, 2 dW's operands,
 * 4 W^T panels (else a transposed copy of W); 7, all, by default: a switch
 * for measurements and tests (fastnn._kernels._pack_panels); the results are
 * the same bits either way. */
static volatile int fnn_pack_mode = 7;


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
/* the calibration's own calls force a threshold (this thread only; < 0: none) */
static FNN_TLS double fnn_force_min_macs = -1;

#define FNN_T float
#define FNN_SUF f
#define FNN_HP fnn_step_f
#define FNN_LOG logf
#define FNN_EXP_NEG fnn_exp_neg_f
#include "_gemm_train.h"
#undef FNN_T
#undef FNN_SUF
#undef FNN_HP
#undef FNN_LOG
#undef FNN_EXP_NEG

#define FNN_T double
#define FNN_SUF d
#define FNN_HP fnn_step_d
#define FNN_LOG log
#define FNN_EXP_NEG fnn_exp_neg_d
#include "_gemm_train.h"
#undef FNN_T
#undef FNN_SUF
#undef FNN_HP
#undef FNN_LOG
#undef FNN_EXP_NEG

/* The split threshold of the training loop, measured once per process at
 * its first threaded call, on the training loop itself: steps of a
 * synthetic [784, 128, 10] (float, SGD momentum) at batches 8, 16, ..., 256
 * on one thread and on two with every phase split, best of 3 runs of 12
 * steps each; the threshold is the first layer's multiply-adds per batch
 * (bs x 784 x 128) at the smallest batch where two threads take less than
 * 0.9x the one-thread time, and 256 x 784 x 128 x 2 when none does (about
 * 60 ms, once; when none does, again 30 s later, as a core busy with
 * another process during the measurement also makes two threads lose). A barrier's round trip alone does not predict it: on 2 vCPUs
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
    /* no crossover found (two threads never won, as when another process
       held a core during the measurement): measured again 30 s later */
    if (done > 0 && (done < 2.0 * MAXB * D * H || fnn_now_ns() < fnn_calib_at + 30e9))
        return done / (is_double ? 2 : 1);
    /* one measurement at a time (two at once would measure each other): a
       call that finds one running uses the last threshold, or 400k */
    static int busy = 0;
    if (FNN_XCHG(&busy, 1, ACQUIRE))
        return (done > 0 ? done : 4e5) / (is_double ? 2 : 1);
    const ptrdiff_t sizes[3] = {D, H, C};
    const ptrdiff_t np_ = D * H + H * C + H + C;
    double min_macs = 2.0 * MAXB * D * H, t1s = 0, t2s = 0;
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

/* Select the kernels: name NULL (or "") for the best the CPU runs, else
 * "avx512", "avx2", "neon" or "generic". Returns 0, or -1 if the CPU (or
 * the build) lacks it. */
static int fnn_gemm_select(const char *name)
{
    int want_best = name == NULL || name[0] == '\0';
#if FNN_HAVE_X86
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
                 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if ((want_best && has512) || (!want_best && strcmp(name, "avx512") == 0)) {
        if (!has512)
            return -1;
        fnn_kern_f = (fnn_kern_t_f){fnn_gemm_avx512_f, fnn_dw_update_avx512_f, fnn_db_update_avx512_f,
                                    fnn_drop_avx512_f, fnn_dropbwd_avx512_f, 16, 64};
        fnn_kern_d = (fnn_kern_t_d){fnn_gemm_avx512_d, fnn_dw_update_avx512_d, fnn_db_update_avx512_d,
                                    fnn_drop_avx512_d, fnn_dropbwd_avx512_d, 8, 32};
        fnn_gemm_isa_name = "avx512";
        return 0;
    }
    if ((want_best && has2) || (!want_best && strcmp(name, "avx2") == 0)) {
        if (!has2)
            return -1;
        fnn_kern_f = (fnn_kern_t_f){fnn_gemm_avx2_f, fnn_dw_update_avx2_f, fnn_db_update_avx2_f,
                                    fnn_drop_avx2_f, fnn_dropbwd_avx2_f, 8, 16};
        fnn_kern_d = (fnn_kern_t_d){fnn_gemm_avx2_d, fnn_dw_update_avx2_d, fnn_db_update_avx2_d,
                                    fnn_drop_avx2_d, fnn_dropbwd_avx2_d, 4, 8};
        fnn_gemm_isa_name = "avx2";
        return 0;
    }
#endif
#if FNN_HAVE_NEON
    if (want_best || strcmp(name, "neon") == 0) {
        fnn_kern_f = (fnn_kern_t_f){fnn_gemm_neon_f, fnn_dw_update_neon_f, fnn_db_update_neon_f,
                                    fnn_drop_neon_f, fnn_dropbwd_neon_f, 4, 16};
        fnn_kern_d = (fnn_kern_t_d){fnn_gemm_neon_d, fnn_dw_update_neon_d, fnn_db_update_neon_d,
                                    fnn_drop_neon_d, fnn_dropbwd_neon_d, 2, 8};
        fnn_gemm_isa_name = "neon";
        return 0;
    }
#endif
    if (!want_best && strcmp(name, "generic") != 0)
        return -1;
    fnn_kern_f = (fnn_kern_t_f){fnn_gemm_gen_f, fnn_dw_update_gen_f, fnn_db_update_gen_f,
                                    fnn_drop_gen_f, fnn_dropbwd_gen_f, 1, 2};
    fnn_kern_d = (fnn_kern_t_d){fnn_gemm_gen_d, fnn_dw_update_gen_d, fnn_db_update_gen_d,
                                    fnn_drop_gen_d, fnn_dropbwd_gen_d, 1, 2};
    fnn_gemm_isa_name = "generic";
    return 0;
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
