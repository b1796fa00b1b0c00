/* Register-only FMA loops: the single-precision peak of one core.
 *
 * Each variant keeps many independent accumulators in vector registers and
 * updates them with fused multiply-adds, acc = acc * m + c (m slightly below
 * 1, so the values converge to c / (1 - m) and stay normal and finite): no
 * memory traffic, no dependency chain shorter than the FMA latency times the
 * number of FMA pipes. The variant is chosen at run time from what the CPU
 * supports (x86-64: AVX-512F, AVX2 + FMA; aarch64: NEON; anything else: a
 * portable loop of GCC vector operations, or plain C for compilers without
 * them, a multiply and an add where the CPU has no FMA), so
 * the default build stays portable: only the chosen function uses the wider
 * instructions (GCC's target attribute), none is needed at build time.
 *
 * fastnn_fma_loop(iters) returns a checksum of the accumulators (which keeps
 * the loop from being optimised away); fastnn_fma_flops_per_iter() the
 * floating-point operations of one iteration (2 per multiply-add per lane).
 */
#ifndef FASTNN_PEAK_LOOPS_H
#define FASTNN_PEAK_LOOPS_H

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(FASTNN_PORTABLE_C)
#include <immintrin.h>
#define FASTNN_PEAK_X86 1
#else
#define FASTNN_PEAK_X86 0
#endif
#if (defined(__aarch64__) || defined(_M_ARM64)) && !defined(FASTNN_PORTABLE_C)
#include <arm_neon.h>
#define FASTNN_PEAK_NEON 1
#else
#define FASTNN_PEAK_NEON 0
#endif

#define FASTNN_PEAK_M 0.99999994f
#define FASTNN_PEAK_C 1e-7f

/* A step of 24 (NEON, 32 registers), 16 (AVX-512) or 12 (AVX2, 16 registers
 * in all) accumulators. */
#define FASTNN_STEP24(F) FASTNN_STEP16(F) F(16) F(17) F(18) F(19) F(20) F(21) F(22) F(23)
#define FASTNN_STEP16(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) \
                         F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)
#define FASTNN_STEP12(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11)

#if FASTNN_PEAK_X86
__attribute__((target("avx512f")))
static double fastnn_fma_avx512(long long iters)
{
    const __m512 m = _mm512_set1_ps(FASTNN_PEAK_M), c = _mm512_set1_ps(FASTNN_PEAK_C);
#define DECL(i) __m512 a##i = _mm512_set1_ps(1.0f + (i) * 1e-3f);
    FASTNN_STEP16(DECL)
#undef DECL
    for (long long it = 0; it < iters; it++) {
#define FMA(i) a##i = _mm512_fmadd_ps(a##i, m, c);
        FASTNN_STEP16(FMA)
#undef FMA
    }
#define SUM(i) s = _mm512_add_ps(s, a##i);
    __m512 s = _mm512_setzero_ps();
    FASTNN_STEP16(SUM)
#undef SUM
    float out[16];
    _mm512_storeu_ps(out, s);
    double total = 0;
    for (int i = 0; i < 16; i++) total += out[i];
    return total;
}

__attribute__((target("avx2,fma")))
static double fastnn_fma_avx2(long long iters)
{
    const __m256 m = _mm256_set1_ps(FASTNN_PEAK_M), c = _mm256_set1_ps(FASTNN_PEAK_C);
#define DECL(i) __m256 a##i = _mm256_set1_ps(1.0f + (i) * 1e-3f);
    FASTNN_STEP12(DECL)
#undef DECL
    for (long long it = 0; it < iters; it++) {
#define FMA(i) a##i = _mm256_fmadd_ps(a##i, m, c);
        FASTNN_STEP12(FMA)
#undef FMA
    }
#define SUM(i) s = _mm256_add_ps(s, a##i);
    __m256 s = _mm256_setzero_ps();
    FASTNN_STEP12(SUM)
#undef SUM
    float out[8];
    _mm256_storeu_ps(out, s);
    double total = 0;
    for (int i = 0; i < 8; i++) total += out[i];
    return total;
}
#endif

#if FASTNN_PEAK_NEON
static double fastnn_fma_neon(long long iters)
{
    const float32x4_t m = vdupq_n_f32(FASTNN_PEAK_M), c = vdupq_n_f32(FASTNN_PEAK_C);
#define DECL(i) float32x4_t a##i = vdupq_n_f32(1.0f + (i) * 1e-3f);
    FASTNN_STEP24(DECL)
#undef DECL
    for (long long it = 0; it < iters; it++) {
#define FMA(i) a##i = vfmaq_f32(c, a##i, m);
        FASTNN_STEP24(FMA)
#undef FMA
    }
    float32x4_t s = vdupq_n_f32(0.0f);
#define SUM(i) s = vaddq_f32(s, a##i);
    FASTNN_STEP24(SUM)
#undef SUM
    float out[4];
    vst1q_f32(out, s);
    return (double) out[0] + out[1] + out[2] + out[3];
}
#endif

#if (defined(__GNUC__) || defined(__clang__)) && !defined(FASTNN_PORTABLE_C)
/* Portable: 12 accumulators of 4 floats (SSE2 on any x86-64). */
typedef float fastnn_v4f __attribute__((vector_size(16)));

static double fastnn_fma_generic(long long iters)
{
    const fastnn_v4f m = {FASTNN_PEAK_M, FASTNN_PEAK_M, FASTNN_PEAK_M, FASTNN_PEAK_M};
    const fastnn_v4f c = {FASTNN_PEAK_C, FASTNN_PEAK_C, FASTNN_PEAK_C, FASTNN_PEAK_C};
#define DECL(i) fastnn_v4f a##i = {1.0f + (i) * 1e-3f, 1.0f, 1.0f, 1.0f};
    FASTNN_STEP12(DECL)
#undef DECL
    for (long long it = 0; it < iters; it++) {
#define FMA(i) a##i = a##i * m + c;
        FASTNN_STEP12(FMA)
#undef FMA
    }
    fastnn_v4f s = {0, 0, 0, 0};
#define SUM(i) s += a##i;
    FASTNN_STEP12(SUM)
#undef SUM
    return (double)s[0] + s[1] + s[2] + s[3];
}
#else
/* Standard C (MSVC): 12 x 4 scalar accumulators, which the compiler may vectorise. */
static double fastnn_fma_generic(long long iters)
{
    float a[48];
    for (int i = 0; i < 48; i++)
        a[i] = i % 4 == 0 ? 1.0f + (i / 4) * 1e-3f : 1.0f;
    for (long long it = 0; it < iters; it++)
        for (int i = 0; i < 48; i++)
            a[i] = a[i] * FASTNN_PEAK_M + FASTNN_PEAK_C;
    double total = 0;
    for (int i = 0; i < 48; i++)
        total += a[i];
    return total;
}
#endif

typedef double (*fastnn_fma_fn)(long long);

static fastnn_fma_fn fastnn_fma_impl = 0;
static long long fastnn_fma_flops = 0;
static const char *fastnn_fma_name = "";

static void fastnn_fma_select(void)
{
    if (fastnn_fma_impl) return;
#if FASTNN_PEAK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        fastnn_fma_flops = 16LL * 16 * 2;
        fastnn_fma_name = "avx512f";
        fastnn_fma_impl = fastnn_fma_avx512;
        return;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        fastnn_fma_flops = 12LL * 8 * 2;
        fastnn_fma_name = "avx2-fma";
        fastnn_fma_impl = fastnn_fma_avx2;
        return;
    }
#endif
#if FASTNN_PEAK_NEON
    fastnn_fma_flops = 24LL * 4 * 2;
    fastnn_fma_name = "neon";
    fastnn_fma_impl = fastnn_fma_neon;
    return;
#endif
    fastnn_fma_flops = 12LL * 4 * 2;
    fastnn_fma_name = "generic";
    fastnn_fma_impl = fastnn_fma_generic;
}

static double fastnn_fma_loop(long long iters)
{
    fastnn_fma_select();
    return fastnn_fma_impl(iters);
}

static long long fastnn_fma_flops_per_iter(void)
{
    fastnn_fma_select();
    return fastnn_fma_flops;
}

static const char *fastnn_fma_isa(void)
{
    fastnn_fma_select();
    return fastnn_fma_name;
}

#endif
