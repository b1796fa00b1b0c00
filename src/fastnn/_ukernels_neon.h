/* The NEON micro-kernels (aarch64: Advanced SIMD is part of every aarch64
 * CPU, Apple M-series, Graviton, Ampere, Cortex-A, so they need no target
 * attribute and no run-time test; "generic" can still be selected):
 * _ukernels.h instantiates the template _gemm_isa.h for float and double
 * under the macros below; the results are
 *   fnn_gemm_neon_f, fnn_dw_update_neon_f, fnn_db_update_neon_f,
 *   fnn_drop_neon_f, fnn_dropbwd_neon_f, and their _d twins,
 * registered as fnn_ukernel_neon_f / _d.
 *
 * 128-bit vectors (4 floats, 2 doubles), 32 vector registers and a fused
 * multiply-add (fmla). The register tile is AVX-512's shape, 6 rows x 4
 * vectors: 24 accumulators, 4 vectors of B and a broadcast of A (29 of the
 * 32 registers), 24 fmla per k step (96 float or 48 double multiply-adds).
 * NEON has no masked loads: the last vector of a panel is loaded whole when
 * it is full, else lane by lane into zeros, all inline (MT: the count of
 * valid lanes; a memcpy here was a call in the K loop, around which the
 * accumulators were spilled). arm_neon.h intrinsics only (GCC, clang and
 * Apple clang; MSVC's arm64 compiler has them too). */
#define FNN_ISA neon
#define FNN_TARGET
#define MRR 6
#define NRV 4

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
/* v's first n lanes, zeros in the others (in registers) */
static inline float32x4_t fnn_neon_maskz_f(float32x4_t v, int n)
{
    static const uint32_t lane[4] = {0, 1, 2, 3};
    const uint32x4_t keep = vcltq_u32(vld1q_u32(lane), vdupq_n_u32((uint32_t) n));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), keep));
}
static inline float64x2_t fnn_neon_maskz_d(float64x2_t v, int n)
{
    static const uint64_t lane[2] = {0, 1};
    const uint64x2_t keep = vcltq_u64(vld1q_u64(lane), vdupq_n_u64((uint64_t) n));
    return vreinterpretq_f64_u64(vandq_u64(vreinterpretq_u64_f64(v), keep));
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


/* The vector operations, for the dtype of FNN_SFX (_f32 or _f64 intrinsics,
 * _u32 or _u64 for the lane masks) */
#define FNN_NEONV_f float32x4_t
#define FNN_NEONV_d float64x2_t
#define FNN_NEON_f f32
#define FNN_NEON_d f64
#define FNN_NEONU_f u32
#define FNN_NEONU_d u64
#define FNN_NQ(op) FNN_XCAT2(op, FNN_XCAT2(FNN_NEON, FNN_SFX))
#define FNN_NU(op) FNN_XCAT2(op, FNN_XCAT2(FNN_NEONU, FNN_SFX))
#define VT FNN_XCAT2(FNN_NEONV, FNN_SFX)
#define VL (16 / (int) sizeof(FNN_T))
#define MT int
#define MASKN(r) (r)
#define VZERO FNN_NQ(vdupq_n)((FNN_T) 0)
#define VSET1(x) FNN_NQ(vdupq_n)(x)
#define VLOAD(p) FNN_NQ(vld1q)(p)
#define VLOADM(p, m) FNN_XCAT2(fnn_neon_loadm, FNN_SFX)(p, m)
#define VSTORE(p, v) FNN_NQ(vst1q)(p, v)
#define VSTOREM(p, m, v) FNN_XCAT2(fnn_neon_storem, FNN_SFX)(p, m, v)
#define VMASKZ(x, m) FNN_XCAT2(fnn_neon_maskz, FNN_SFX)(x, m)
#define VFMA(a, b, c) FNN_NQ(vfmaq)(c, a, b)
#define VMUL(a, b) FNN_NQ(vmulq)(a, b)
#define VADD(a, b) FNN_NQ(vaddq)(a, b)
#define VSUB(a, b) FNN_NQ(vsubq)(a, b)
#define VDIV(a, b) FNN_NQ(vdivq)(a, b)
#define VSQRT(x) FNN_NQ(vsqrtq)(x)
#define VTRANS(s, ls, d, ld) FNN_XCAT2(fnn_trans_neon, FNN_SFX)(s, ls, d, ld)
/* as the x86 variants: x < 0 ? 0 : x (NaN and -0 kept), a > 0 ? x : 0 */
#define VRELU(x) FNN_NQ(vbslq)(FNN_NQ(vcltzq)(x), VZERO, x)
#define VSELPOS(x, a) \
    FNN_NU(FNN_NQ(vreinterpretq))(FNN_NU(vandq)(FNN_NQ(FNN_NU(vreinterpretq))(x), FNN_NQ(vcgtzq)(a)))
#define VADDPOS(s, w, l) FNN_NQ(vbslq)(FNN_NQ(vcgtzq)(w), VADD(s, l), s)
#define VSUBNEG(s, w, l) FNN_NQ(vbslq)(FNN_NQ(vcltzq)(w), VSUB(s, l), s)
#include "_ukernels.h"
#undef FNN_NQ
#undef FNN_NU
