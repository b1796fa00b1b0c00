/* Undefines the macros of one instantiation of _gemm_isa.h (its dtype and its
 * vector operations), so that _gemm.h can define the next; no include guard
 * on purpose. MRR, NRV and FNN_TARGET, set once per instruction set, are
 * undefined by _gemm.h itself. */
#undef FNN_T
#undef FNN_SQRT
#undef FNN_HP
#undef FNN_BIAS_TANH
#undef FNN_BIAS_SIGMOID
#undef FNN_NAME
#undef VT
#undef VL
#undef MT
#undef MASKN
#undef VZERO
#undef VSET1
#undef VLOAD
#undef VLOADM
#undef VSTORE
#undef VSTOREM
#undef VFMA
#undef VMUL
#undef VADD
#undef VSUB
#undef VRELU
#undef VSELPOS
#undef VADDPOS
#undef VSUBNEG
#undef VDIV
#undef VSQRT
#undef VTRANS
