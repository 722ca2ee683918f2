#include "ckernels.h"

#if defined(__AVX512F__)
#include <immintrin.h>

void gm_transpose16(const float *src, ptrdiff_t src_stride, float *dst, ptrdiff_t dst_stride) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * src_stride);
    // Pairs of rows interleaved within each 128-bit lane L: t[2p] holds columns 4L, 4L + 1 of
    // rows 2p, 2p + 1; t[2p + 1] columns 4L + 2, 4L + 3.
    for (int p = 0; p < 8; p++) {
        t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    // Quads: r[4g + k], lane L = column 4L + k of rows 4g..4g + 3.
    for (int g = 0; g < 4; g++) {
        __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
        __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
        r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    // Output row 4L + k: lane g = r[4g + k]'s lane L (a 4 x 4 transpose of 128-bit lanes).
    for (int k = 0; k < 4; k++) {
        __m512 u0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x44), u1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xEE);
        __m512 u2 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x44), u3 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xEE);
        _mm512_storeu_ps(dst + (0 + k) * dst_stride, _mm512_shuffle_f32x4(u0, u2, 0x88));
        _mm512_storeu_ps(dst + (4 + k) * dst_stride, _mm512_shuffle_f32x4(u0, u2, 0xDD));
        _mm512_storeu_ps(dst + (8 + k) * dst_stride, _mm512_shuffle_f32x4(u1, u3, 0x88));
        _mm512_storeu_ps(dst + (12 + k) * dst_stride, _mm512_shuffle_f32x4(u1, u3, 0xDD));
    }
}

#else

void gm_transpose16(const float *src, ptrdiff_t src_stride, float *dst, ptrdiff_t dst_stride) {
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) dst[j * dst_stride + i] = src[i * src_stride + j];
}

#endif
