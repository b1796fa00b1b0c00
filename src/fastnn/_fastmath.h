/* Branch-free exp, tanh and sigmoid for the elementwise passes of fastnn's kernels.
 *
 * libm's expf/tanhf are scalar calls (about 10 ns each for tanhf), which made
 * the fused activation pass slower than NumPy's SIMD ufuncs. These inline
 * versions are straight-line code (selects, no calls, no branches), so gcc
 * vectorises the loops that use them at -O3 on any x86-64 or arm64 target.
 *
 * Method: Cephes (S. Moshier). exp: Cody-Waite reduction x = n ln2 + r, a
 * polynomial (float) or Pade form (double) for exp(r), 2^n built in the
 * exponent bits. tanh: an odd polynomial/rational for |x| < 0.625, else
 * 1 - 2 / (exp(2|x|) + 1) through exp(-2|x|). Accuracy: a few ulp (tests
 * compare with NumPy). NaN propagates (ordered comparisons are false for NaN,
 * so selects keep it); the exp helpers are for x <= 0, where they never
 * overflow (the kernels only need exp of non-positive arguments).
 */
#ifndef FASTNN_FASTMATH_H
#define FASTNN_FASTMATH_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <math.h>

/* Compiler portability of fastnn's C core (here, as every C file of the core
 * includes this header first): GNU C (GCC, clang, Apple clang) gets its
 * attributes and builtins; another C11 compiler (MSVC), or any compiler with
 * -DFASTNN_PORTABLE_C (how the tests compile the portable path with
 * gcc -std=c11 -pedantic-errors), gets standard C, with MSVC's spellings
 * where it has them. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(FASTNN_PORTABLE_C)
#define FNN_GNUC 1
#define FNN_ALWAYS_INLINE inline __attribute__((always_inline))
#define FNN_NOINLINE __attribute__((noinline))
#define FNN_ALIGNED64 __attribute__((aligned(64)))
#define FNN_MAY_ALIAS 1 /* fnn_u64a (_gemm.h) */
#define FNN_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define FNN_PREFETCH_W(p) __builtin_prefetch((p), 1)
#define FNN_PREFETCH_R(p) __builtin_prefetch((p), 0)
#define FNN_SQRTF __builtin_sqrtf
#define FNN_SQRTD __builtin_sqrt
#define FNN_TLS __thread
#else
#define FNN_GNUC 0
#if defined(_MSC_VER)
#define FNN_ALWAYS_INLINE __forceinline
#define FNN_NOINLINE __declspec(noinline)
#define FNN_TLS __declspec(thread)
#else
#define FNN_ALWAYS_INLINE inline
#define FNN_NOINLINE
#define FNN_TLS _Thread_local
#endif
#define FNN_ALIGNED64
#define FNN_MAY_ALIAS 0
#define FNN_UNLIKELY(x) (x)
#define FNN_PREFETCH_W(p) ((void) (p))
#define FNN_PREFETCH_R(p) ((void) (p))
#define FNN_SQRTF sqrtf
#define FNN_SQRTD sqrt
#endif

/* The names a template instantiated per dtype reaches through its suffix
 * (FNN_SFX f or d: FNN_T, FNN_SQRT, FNN_LOG in _gemm.h) */
typedef float fnn_real_f;
typedef double fnn_real_d;
#define fnn_sqrt_f FNN_SQRTF
#define fnn_sqrt_d FNN_SQRTD
#define fnn_log_f logf
#define fnn_log_d log

/* 2^n from t = x / ln2 + 1.5 * 2^(mantissa bits), whose low mantissa bits
 * hold n = round(x / ln2): shifting (t's bits + the exponent bias) left by
 * the mantissa width builds 2^n (the high bits fall off), with integer ops
 * that vectorise on SSE2. */
#define FNN_POW2(NAME, T, U, BIAS, SHIFT)                                     \
    static inline T NAME(T t)                                                 \
    {                                                                         \
        U b;                                                                  \
        memcpy(&b, &t, sizeof b);                                             \
        b = (b + (BIAS)) << (SHIFT);                                          \
        memcpy(&t, &b, sizeof t);                                             \
        return t;                                                             \
    }
FNN_POW2(fnn_pow2_f, float, uint32_t, 127u, 23)
FNN_POW2(fnn_pow2_d, double, uint64_t, 1023u, 52)
#undef FNN_POW2

/* exp(x) for x <= 0 (float); 0 below -87.34 (no subnormals). */
static inline float fnn_exp_neg_f(float x)
{
    const float lo = -87.3365447504019f;
    float xc = x < lo ? lo : x;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (round to nearest) */
    float t = xc * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    return x < lo ? 0.0f : y * fnn_pow2_f(t);
}

/* exp(x) for x <= 0 (double); 0 below -708.39 (no subnormals). */
static inline double fnn_exp_neg_d(double x)
{
    const double lo = -708.3964185322641;
    double xc = x < lo ? lo : x;
    double t = xc * 1.4426950408889634073599 + 6755399441055744.0;
    double n = t - 6755399441055744.0;
    double r = xc - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    double rr = r * r;
    double px = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr
                     + 9.99999999999999999910e-1);
    double qx = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
                 + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
    double y = 1.0 + 2.0 * (px / (qx - px));
    return x < lo ? 0.0 : y * fnn_pow2_d(t);
}

static inline float fnn_sigmoid_f(float x)
{
    float ax = x < 0 ? -x : x;
    float e = fnn_exp_neg_f(-ax);       /* exp(-|x|) in (0, 1] */
    float s = 1.0f / (1.0f + e);
    return x < 0 ? e * s : (x == x ? s : x);
}

static inline double fnn_sigmoid_d(double x)
{
    double ax = x < 0 ? -x : x;
    double e = fnn_exp_neg_d(-ax);
    double s = 1.0 / (1.0 + e);
    return x < 0 ? e * s : (x == x ? s : x);
}

static inline float fnn_tanh_f(float x)
{
    float ax = x < 0 ? -x : x;
    /* |x| >= 0.625: tanh|x| = 1 - 2 e / (1 + e), e = exp(-2|x|) */
    float e = fnn_exp_neg_f(-2.0f * ax);
    float big = 1.0f - 2.0f * e / (1.0f + e);
    /* |x| < 0.625: odd polynomial */
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = x + x * z * p;
    float b = x < 0 ? -big : big;
    return ax < 0.625f ? small : (x == x ? b : x);
}

static inline double fnn_tanh_d(double x)
{
    double ax = x < 0 ? -x : x;
    double e = fnn_exp_neg_d(-2.0 * ax);
    double big = 1.0 - 2.0 * e / (1.0 + e);
    double z = x * x;
    double p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z
               - 1.61468768441708447952e3;
    double q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z
               + 4.84406305325125486048e3;
    double small = x + x * (z * p / q);
    double b = x < 0 ? -big : big;
    return ax < 0.625 ? small : (x == x ? b : x);
}


/* The activation passes over a (rows x cols) block, z[i, j] = act(z[i, j] + b[j]).
 * On x86-64 Linux (ELF, ifunc) with GCC or clang >= 14 they are compiled
 * three times (AVX-512, AVX2, baseline SSE2) and the loader picks the best
 * for the CPU; with -ffp-contract=off all three round identically, so results
 * do not depend on the machine. On aarch64, NEON is the baseline: the one
 * -O3 build vectorises them with it. FNN_CLONES_ACTIVE: whether the clones
 * are built (fastnn._kernels._build_info). */
#ifndef FNN_CLONES
#if FNN_GNUC && defined(__x86_64__) && defined(__linux__) && !defined(FASTNN_NO_CLONES) \
    && (!defined(__clang__) || __clang_major__ >= 14)
#define FNN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define FNN_CLONES_ACTIVE 1
#else
#define FNN_CLONES
#endif
#endif
#ifndef FNN_CLONES_ACTIVE
#define FNN_CLONES_ACTIVE 0
#endif

#define FNN_BIAS_ACT(NAME, T, FN)                                             \
    FNN_CLONES static void NAME(T *z, const T *b, ptrdiff_t rows, ptrdiff_t cols) \
    {                                                                         \
        for (ptrdiff_t i = 0; i < rows; i++) {                                \
            T *row = z + i * cols;                                            \
            for (ptrdiff_t j = 0; j < cols; j++)                              \
                row[j] = FN(row[j] + b[j]);                                   \
        }                                                                     \
    }

FNN_BIAS_ACT(fnn_bias_tanh_f, float, fnn_tanh_f)
FNN_BIAS_ACT(fnn_bias_tanh_d, double, fnn_tanh_d)
FNN_BIAS_ACT(fnn_bias_sigmoid_f, float, fnn_sigmoid_f)
FNN_BIAS_ACT(fnn_bias_sigmoid_d, double, fnn_sigmoid_d)

#endif
