// Kernels that need a CPU's shuffle instructions, which Swift's SIMD types do not reach.
#ifndef GM_CKERNELS_H
#define GM_CKERNELS_H

#include <stddef.h>

/// dst[j * dst_stride + i] = src[i * src_stride + j] for i, j < 16: a 16 x 16 block of floats
/// transposed in registers (AVX-512: unpacks and 128-bit lane shuffles, 64 in all; elsewhere a
/// plain loop). Pure data movement: the values' bits are copied, never computed.
void gm_transpose16(const float *src, ptrdiff_t src_stride, float *dst, ptrdiff_t dst_stride);

#endif
