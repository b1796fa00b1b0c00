/* The generic micro-kernels: plain C, one lane a "vector", for any CPU and
 * compiler (the portable core builds these only). _ukernels.h instantiates
 * the template _gemm_isa.h for float and double under the macros below; the
 * results are named fnn_<kernel>_generic_<f|d>:
 *   fnn_gemm_generic_f, fnn_dw_update_generic_f, fnn_db_update_generic_f,
 *   fnn_drop_generic_f, fnn_dropbwd_generic_f, and their _d twins;
 * registered as fnn_ukernel_generic_f / _d (fnn_ukernels, _gemm.h). Their
 * multiply-adds round twice (a * b + c under -ffp-contract=off): they agree
 * with the SIMD variants to about 5e-5 relative in float32, not bit for bit. */
#define FNN_ISA generic
#define FNN_TARGET
#define MRR 6
#define NRV 2
#define VT FNN_T
#define VL 1
#define MT int
#define MASKN(r) 0
#define VZERO 0
#define VSET1(x) (x)
#define VLOAD(p) (*(p))
#define VLOADM(p, m) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VSTOREM(p, m, v) (*(p) = (v))
#define VMASKZ(x, m) (x)
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
#include "_ukernels.h"
