/* Undefines the macros of one instruction set's micro-kernels (_ukernels_*.h),
 * so that _gemm.h can include the next; no include guard on purpose. */
#undef FNN_ISA
#undef FNN_TARGET
#undef MRR
#undef NRV
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
#undef VMASKZ
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
