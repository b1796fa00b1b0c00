/* Instantiates the micro-kernel template _gemm_isa.h for float (FNN_SFX f)
 * and double (d) under the instruction set its includer defined (FNN_ISA,
 * FNN_TARGET, MRR, NRV and the vector operations: _ukernels_<isa>.h), then
 * undefines those (_gemm_undef.h), so that the next instruction set can
 * define its own. No include guard on purpose. */
#define FNN_SFX f
#include "_gemm_isa.h"
#undef FNN_SFX
#define FNN_SFX d
#include "_gemm_isa.h"
#undef FNN_SFX
#include "_gemm_undef.h"
