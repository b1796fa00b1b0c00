/* The AVX2 + FMA micro-kernels (x86-64 since Haswell and Zen; GCC or clang
 * target attributes, selected at run time): _ukernels.h instantiates the
 * template _gemm_isa.h for float and double under the macros below; the
 * results are
 *   fnn_gemm_avx2_f, fnn_dw_update_avx2_f, fnn_db_update_avx2_f,
 *   fnn_drop_avx2_f, fnn_dropbwd_avx2_f, and their _d twins,
 * registered as fnn_ukernel_avx2_f / _d. Register tile: 6 rows x 2 vectors
 * (12 ymm accumulators, 2 of B, a broadcast of A: 15 of 16), 12 FMAs per k
 * step (96 float or 48 double multiply-adds). Tails are masked loads and
 * stores whose masks come from fnn_mtab_f / _d (_gemm.h). */
#define FNN_ISA avx2
#define FNN_TARGET __attribute__((target("avx2,fma")))
#define MRR 6
#define NRV 2

/* VL x VL in-register transposes (fnn_trans_avx2_f: 8 x 8, _d: 4 x 4), as AVX-512's */
FNN_TRANSPOSE(fnn_trans_avx2_f, __attribute__((target("avx2"))), float, __m256, 8,
              _mm256_loadu_ps, _mm256_storeu_ps, t,
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
    })

FNN_TRANSPOSE(fnn_trans_avx2_d, __attribute__((target("avx2"))), double, __m256d, 4,
              _mm256_loadu_pd, _mm256_storeu_pd, r,
    t[0] = _mm256_unpacklo_pd(r[0], r[1]);
    t[1] = _mm256_unpackhi_pd(r[0], r[1]);
    t[2] = _mm256_unpacklo_pd(r[2], r[3]);
    t[3] = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t[0], t[2], 0x20);
    r[1] = _mm256_permute2f128_pd(t[1], t[3], 0x20);
    r[2] = _mm256_permute2f128_pd(t[0], t[2], 0x31);
    r[3] = _mm256_permute2f128_pd(t[1], t[3], 0x31);)

/* The vector operations, for the dtype of FNN_SFX (ps or pd intrinsics) */
#define FNN_M256_f __m256
#define FNN_M256_d __m256d
#define FNN_MM256(op) FNN_XPASTE3(_mm256_, op, FNN_PSD)
#define FNN_GT0(a) FNN_MM256(cmp_)(a, VZERO, _CMP_GT_OQ)
#define FNN_LT0(a) FNN_MM256(cmp_)(a, VZERO, _CMP_LT_OQ)
#define VT FNN_XCAT2(FNN_M256, FNN_SFX)
#define VL (32 / (int) sizeof(FNN_T))
#define MT __m256i
#define MASKN(r) _mm256_loadu_si256((const __m256i *) (FNN_XCAT2(fnn_mtab, FNN_SFX) + VL - (r)))
#define VZERO FNN_MM256(setzero_)()
#define VSET1(x) FNN_MM256(set1_)(x)
#define VLOAD(p) FNN_MM256(loadu_)(p)
#define VLOADM(p, m) FNN_MM256(maskload_)(p, m)
#define VSTORE(p, v) FNN_MM256(storeu_)(p, v)
#define VSTOREM(p, m, v) FNN_MM256(maskstore_)(p, m, v)
#define VMASKZ(x, m) FNN_MM256(and_)(x, FNN_MM256(castsi256_)(m))
#define VFMA(a, b, c) FNN_MM256(fmadd_)(a, b, c)
#define VMUL(a, b) FNN_MM256(mul_)(a, b)
#define VADD(a, b) FNN_MM256(add_)(a, b)
#define VSUB(a, b) FNN_MM256(sub_)(a, b)
#define VDIV(a, b) FNN_MM256(div_)(a, b)
#define VSQRT(x) FNN_MM256(sqrt_)(x)
#define VTRANS(s, ls, d, ld) FNN_XCAT2(fnn_trans_avx2, FNN_SFX)(s, ls, d, ld)
#define VRELU(x) FNN_MM256(max_)(VZERO, x)
#define VSELPOS(x, a) FNN_MM256(and_)(x, FNN_GT0(a))
#define VADDPOS(s, w, l) FNN_MM256(blendv_)(s, FNN_MM256(add_)(s, l), FNN_GT0(w))
#define VSUBNEG(s, w, l) FNN_MM256(blendv_)(s, FNN_MM256(sub_)(s, l), FNN_LT0(w))
#include "_ukernels.h"
#undef FNN_MM256
#undef FNN_GT0
#undef FNN_LT0
