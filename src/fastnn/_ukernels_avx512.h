/* The AVX-512 micro-kernels (x86-64 with AVX-512 F, VL, BW and DQ; GCC or
 * clang target attributes, so a portable build holds them and fnn_ukernels
 * selects them at run time): _ukernels.h instantiates the template
 * _gemm_isa.h for float and double under the macros below; the results are
 *   fnn_gemm_avx512_f, fnn_dw_update_avx512_f, fnn_db_update_avx512_f,
 *   fnn_drop_avx512_f, fnn_dropbwd_avx512_f, and their _d twins,
 * registered as fnn_ukernel_avx512_f / _d. Register tile: 6 rows x 4
 * vectors (24 zmm accumulators, 4 of B, a broadcast of A: 29 of 32), 24
 * FMAs per k step (384 float or 192 double multiply-adds). */
#define FNN_ISA avx512
#define FNN_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define MRR 6
#define NRV 4

/* VL x VL in-register transposes for the packing of W^T panels (pack_panel_t in
 * _gemm_isa.h): fnn_trans_avx512_f (16 x 16) and _d (8 x 8), each its own
 * shuffle network in FNN_TRANSPOSE's frame (_gemm.h) */
FNN_TRANSPOSE(fnn_trans_avx512_f, __attribute__((target("avx512f"))), float, __m512, 16,
              _mm512_loadu_ps, _mm512_storeu_ps, r,
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
    })

FNN_TRANSPOSE(fnn_trans_avx512_d, __attribute__((target("avx512f"))), double, __m512d, 8,
              _mm512_loadu_pd, _mm512_storeu_pd, t,
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
    })

/* The vector operations, for the dtype of FNN_SFX (ps or pd intrinsics) */
#define FNN_M512_f __m512
#define FNN_M512_d __m512d
#define FNN_MASK512_f __mmask16
#define FNN_MASK512_d __mmask8
#define FNN_MM512(op) FNN_XPASTE3(_mm512_, op, FNN_PSD)
#define FNN_GT0(a) FNN_XPASTE3(_mm512_cmp_, FNN_PSD, _mask)(a, VZERO, _CMP_GT_OQ)
#define FNN_LT0(a) FNN_XPASTE3(_mm512_cmp_, FNN_PSD, _mask)(a, VZERO, _CMP_LT_OQ)
#define VT FNN_XCAT2(FNN_M512, FNN_SFX)
#define VL (64 / (int) sizeof(FNN_T))
#define MT FNN_XCAT2(FNN_MASK512, FNN_SFX)
#define MASKN(r) ((MT) ((1u << (r)) - 1u))
#define VZERO FNN_MM512(setzero_)()
#define VSET1(x) FNN_MM512(set1_)(x)
#define VLOAD(p) FNN_MM512(loadu_)(p)
#define VLOADM(p, m) FNN_MM512(maskz_loadu_)(m, p)
#define VSTORE(p, v) FNN_MM512(storeu_)(p, v)
#define VSTOREM(p, m, v) FNN_MM512(mask_storeu_)(p, m, v)
#define VMASKZ(x, m) FNN_MM512(maskz_mov_)(m, x)
#define VFMA(a, b, c) FNN_MM512(fmadd_)(a, b, c)
#define VMUL(a, b) FNN_MM512(mul_)(a, b)
#define VADD(a, b) FNN_MM512(add_)(a, b)
#define VSUB(a, b) FNN_MM512(sub_)(a, b)
#define VDIV(a, b) FNN_MM512(div_)(a, b)
#define VSQRT(x) FNN_MM512(sqrt_)(x)
#define VTRANS(s, ls, d, ld) FNN_XCAT2(fnn_trans_avx512, FNN_SFX)(s, ls, d, ld)
#define VRELU(x) FNN_MM512(max_)(VZERO, x)
#define VSELPOS(x, a) FNN_MM512(maskz_mov_)(FNN_GT0(a), x)
#define VADDPOS(s, w, l) FNN_MM512(mask_add_)(s, FNN_GT0(w), s, l)
#define VSUBNEG(s, w, l) FNN_MM512(mask_sub_)(s, FNN_LT0(w), s, l)
#include "_ukernels.h"
#undef FNN_MM512
#undef FNN_GT0
#undef FNN_LT0
