/* fastnn's data augmentation: per-image random affine and elastic
 * deformations of rows that are images, made as a batch is gathered, by the
 * thread that gathers the row (fastnn.augment is the Python side;
 * fastnn.reference.augment_rows is the NumPy twin and the specification).
 *
 * An image is h x w pixels of c channels, stored row-major with the channels
 * last (a row of X of h*w*c values). For output pixel (y, x), with
 * u = x - (w-1)/2 and v = y - (h-1)/2 (the image centre at the origin), the
 * source position is
 *     sx = ((m00*u + m01*v) + cx) + tx  [+ ex(y, x)]
 *     sy = ((m10*u + m11*v) + cy) + ty  [+ ey(y, x)]
 * (float32, evaluated in exactly this order), clamped to the image, and the
 * output is the bilinear interpolation of the source there (in the data's
 * dtype): the border pixels repeat outside the image. M = R(angle) Sh(shear) /
 * zoom, with the first column negated for a horizontal flip; ex, ey the
 * elastic field: uniform noise in [-1, 1) per pixel, smoothed by a normalised
 * Gaussian (zero outside the image, horizontal pass then vertical), times
 * alpha (Simard, Steinkraus & Platt 2003).
 *
 * Randomness is counter-based, without state: the image's key is
 * mix(mix(mix(mix(seed) ^ TAG) ^ epoch) ^ row), row its index in X, so an image
 * gets the same deformation in an epoch whichever thread, batch or call makes
 * it. The affine draws are doubles from mix(key + j), j = 0..5; the noise of
 * element i (0 <= i < 2hw: ex's then ey's) is
 *     (lowbias32(lowbias32(i ^ k0) + k1) >> 8) * 2^-23 - 1,
 * k0, k1 the key's low and high 32 bits. Every operation is an IEEE one in a
 * fixed order (no contraction: -ffp-contract=off; sine and cosine from fixed
 * polynomials), so the NumPy twin reproduces it bit for bit, and so does
 * every instruction set of the cloned loops. */
#ifndef FASTNN_AUGMENT_H
#define FASTNN_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#define FNN_AUG_TAG 0x61756731ull /* "aug1" */

typedef struct {
    int h, w, c;          /* image shape; rows of X are h*w*c values */
    double lo[5], hi[5];  /* uniform ranges: angle (radians, |.| <= pi/4), zoom
                             (> 0), shear (|.| <= 1), tx, ty (pixels) */
    int flip;             /* horizontal flip with probability 1/2 */
    int elastic;          /* alpha != 0 */
    float alpha;
    int radius;           /* the Gaussian's taps: 2 * radius + 1 */
    const float *gauss;
    const float *grid;    /* u then v: each output pixel's x - (w-1)/2 and
                             y - (h-1)/2 (2 * h * w floats) */
} fnn_aug_t;

/* floats of work space one thread needs for an image: the sampling's
 * positions (3 * h * w), the field (2 * h * w) and, for an elastic one, the
 * two padded passes ((2 * side + 3r) rows of the other side each) */
static inline ptrdiff_t fnn_aug_work(const fnn_aug_t *a)
{
    const ptrdiff_t r = a->radius, h = a->h, w = a->w;
    ptrdiff_t n = 5 * h * w + 64;  /* idx, fx, fy, the field (ex, ey) */
    if (a->elastic)
        n += (2 * w + 3 * r) * h + (2 * h + 3 * r) * w + 64;
    return n;
}

/* bring `bytes` bytes from p into the caches (a hint: no fault, no effect
   on results) */
static inline void fnn_prefetch_span(const void *p, size_t bytes)
{
    const char *c = (const char *) p;
    for (size_t o = 0; o < bytes; o += 64)
        FNN_PREFETCH_R(c + o);
    if (bytes)
        FNN_PREFETCH_R(c + bytes - 1);
}

static inline uint32_t fnn_lowbias32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static inline uint64_t fnn_aug_key(uint64_t seed, uint64_t epoch, uint64_t row)
{
    return fnn_mix64(fnn_mix64(fnn_mix64(fnn_mix64(seed) ^ FNN_AUG_TAG) ^ epoch) ^ row);
}

/* sine and cosine of |t| <= pi/4 by their Taylor polynomials (error below
 * 1e-15): the same bits in C and NumPy, unlike libm's and NumPy's own */
static inline void fnn_aug_sincos(double t, double *s, double *c)
{
    const double x2 = t * t;
    *s = t * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0
              + x2 * (1.0 / 362880.0 + x2 * (-1.0 / 39916800.0 + x2 * (1.0 / 6227020800.0)))))));
    *c = 1.0 + x2 * (-1.0 / 2.0 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0
              + x2 * (-1.0 / 3628800.0 + x2 * (1.0 / 479001600.0 + x2 * (-1.0 / 87178291200.0)))))));
}

/* The image's affine map: m[0..3] = m00, m01, m10, m11; m[4], m[5] = tx, ty */
static inline void fnn_aug_affine(const fnn_aug_t *a, uint64_t key, float m[6])
{
    double d[6];
    for (int j = 0; j < 6; j++)
        d[j] = (double) (fnn_mix64(key + (uint64_t) j) >> 11) * 0x1p-53;
    double v[5];
    for (int j = 0; j < 5; j++)
        v[j] = a->lo[j] + (a->hi[j] - a->lo[j]) * d[j];
    double s, c;
    fnn_aug_sincos(v[0], &s, &c);
    const double z = v[1], k = v[2];
    double m00 = c / z, m01 = (c * k - s) / z, m10 = s / z, m11 = (s * k + c) / z;
    if (a->flip && d[5] < 0.5) {
        m00 = -m00;
        m10 = -m10;
    }
    m[0] = (float) m00, m[1] = (float) m01, m[2] = (float) m10, m[3] = (float) m11;
    m[4] = (float) v[3], m[5] = (float) v[4];
}

/* One pass of the Gaussian along the slow axis of a padded stack: rows of
 * `len` floats, out[q] = sum_t g[t] * in[q + (t - r) * len] for q in
 * [q0, q1) (t in order, from 0), where `in` is zero outside the fields.
 * Taps whose rows are all padding for a block are skipped (adding +0 to a
 * sum changes nothing). Vectors of 16 lanes (GCC/clang vector extensions,
 * lowered to whatever the clone's instruction set has): the same bits on
 * every instruction set. */
#if defined(__GNUC__)
typedef float fnn_v16f __attribute__((vector_size(64)));
#endif
static FNN_ALWAYS_INLINE void fnn_aug_pass(const float *restrict in, float *restrict out,
                                           ptrdiff_t q0, ptrdiff_t q1, ptrdiff_t len,
                                           const float *g, ptrdiff_t r, ptrdiff_t lo_row,
                                           ptrdiff_t hi_row)
{
    /* lo_row, hi_row: the first and one-past-last rows that are not padding
       (the middle padding between the two fields is inside: it is zero) */
    ptrdiff_t q = q0;
#if defined(__GNUC__)
    for (; q + 64 <= q1; q += 64) {
        fnn_v16f acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
        const ptrdiff_t row_a = q / len, row_b = (q + 63) / len;
        ptrdiff_t t0 = lo_row - row_b + r, t1 = hi_row - 1 - row_a + r;
        t0 = t0 < 0 ? 0 : t0;
        t1 = t1 > 2 * r ? 2 * r : t1;
        for (ptrdiff_t t = t0; t <= t1; t++) {
            const float *p = in + q + (t - r) * len;
            fnn_v16f gv = {0};
            gv += g[t];
            fnn_v16f x0, x1, x2, x3;
            memcpy(&x0, p, 64), memcpy(&x1, p + 16, 64);
            memcpy(&x2, p + 32, 64), memcpy(&x3, p + 48, 64);
            acc0 = acc0 + gv * x0, acc1 = acc1 + gv * x1;
            acc2 = acc2 + gv * x2, acc3 = acc3 + gv * x3;
        }
        memcpy(out + q, &acc0, 64), memcpy(out + q + 16, &acc1, 64);
        memcpy(out + q + 32, &acc2, 64), memcpy(out + q + 48, &acc3, 64);
    }
    for (; q + 16 <= q1; q += 16) {
        fnn_v16f acc0 = {0};
        const ptrdiff_t row_a = q / len, row_b = (q + 15) / len;
        ptrdiff_t t0 = lo_row - row_b + r, t1 = hi_row - 1 - row_a + r;
        t0 = t0 < 0 ? 0 : t0;
        t1 = t1 > 2 * r ? 2 * r : t1;
        for (ptrdiff_t t = t0; t <= t1; t++) {
            fnn_v16f gv = {0}, x0;
            gv += g[t];
            memcpy(&x0, in + q + (t - r) * len, 64);
            acc0 = acc0 + gv * x0;
        }
        memcpy(out + q, &acc0, 64);
    }
#endif
    for (; q < q1; q++) {
        float acc = 0.0f;
        for (ptrdiff_t t = 0; t <= 2 * r; t++)
            acc = acc + g[t] * in[q + (t - r) * len];
        out[q] = acc;
    }
}

/* dst (h rows of w) = the transpose of src (w rows of h): 4 x 4 blocks
 * transposed in registers (two rounds of two-vector shuffles: pure moves, so
 * no effect on bits), the edges one value at a time. Element by element this
 * was a fifth of the field's time (strided stores). */
#if defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 5)
typedef float fnn_v4f __attribute__((vector_size(16)));
#if defined(__clang__)
#define FNN_SHUF4(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#else
typedef int32_t fnn_v4i __attribute__((vector_size(16)));
#define FNN_SHUF4(a, b, i, j, k, l) __builtin_shuffle(a, b, (fnn_v4i) {i, j, k, l})
#endif
#endif
static FNN_ALWAYS_INLINE void fnn_aug_transpose(const float *restrict src, float *restrict dst,
                                                ptrdiff_t h, ptrdiff_t w)
{
    ptrdiff_t x = 0;
#if defined(FNN_SHUF4)
    for (; x + 4 <= w; x += 4) {
        ptrdiff_t y = 0;
        for (; y + 4 <= h; y += 4) {
            fnn_v4f a, b, c, d;
            memcpy(&a, src + x * h + y, 16), memcpy(&b, src + (x + 1) * h + y, 16);
            memcpy(&c, src + (x + 2) * h + y, 16), memcpy(&d, src + (x + 3) * h + y, 16);
            const fnn_v4f ab0 = FNN_SHUF4(a, b, 0, 4, 1, 5), ab1 = FNN_SHUF4(a, b, 2, 6, 3, 7);
            const fnn_v4f cd0 = FNN_SHUF4(c, d, 0, 4, 1, 5), cd1 = FNN_SHUF4(c, d, 2, 6, 3, 7);
            const fnn_v4f r0 = FNN_SHUF4(ab0, cd0, 0, 1, 4, 5);
            const fnn_v4f r1 = FNN_SHUF4(ab0, cd0, 2, 3, 6, 7);
            const fnn_v4f r2 = FNN_SHUF4(ab1, cd1, 0, 1, 4, 5);
            const fnn_v4f r3 = FNN_SHUF4(ab1, cd1, 2, 3, 6, 7);
            memcpy(dst + y * w + x, &r0, 16), memcpy(dst + (y + 1) * w + x, &r1, 16);
            memcpy(dst + (y + 2) * w + x, &r2, 16), memcpy(dst + (y + 3) * w + x, &r3, 16);
        }
        for (; y < h; y++)
            for (ptrdiff_t i = x; i < x + 4; i++)
                dst[y * w + i] = src[i * h + y];
    }
#endif
    for (; x < w; x++)
        for (ptrdiff_t y = 0; y < h; y++)
            dst[y * w + x] = src[x * h + y];
}

/* The elastic field of the image keyed `key`: ex then ey (h*w floats each,
 * row-major) into f. The noise is made transposed (field f, column x, row y:
 * element index i = f*h*w + x*h + y), so both passes of the Gaussian run
 * along the slow axis of a padded stack: first along x (on the transposed
 * noise, stack [r | ex^T | r | ey^T | r] of rows of h), then, transposed
 * back, along y (stack [r | ex | r | ey | r] of rows of w). */
FNN_CLONES
static void fnn_aug_field(const fnn_aug_t *a, uint64_t key, float *restrict work,
                          float *restrict f)
{
    const ptrdiff_t h = a->h, w = a->w, r = a->radius, n = h * w;
    const uint32_t k0 = (uint32_t) key, k1 = (uint32_t) (key >> 32);
    const float *g = a->gauss;
    float *restrict p1 = work;                      /* (2w + 3r) rows of h */
    float *restrict p2 = work + (2 * w + 3 * r) * h; /* (2h + 3r) rows of w */
    /* p1: the noise of ex^T at row r and of ey^T at row 2r + w, zeros in the
       three padding blocks of r rows */
    for (int fi = 0; fi < 3; fi++)
        memset(p1 + fi * (w + r) * h, 0, (size_t) (r * h) * sizeof(float));
    for (int fi = 0; fi < 2; fi++) {
        float *dst = p1 + (r + fi * (w + r)) * h;
        const uint32_t base = (uint32_t) (fi * n);
        for (ptrdiff_t i = 0; i < n; i++) {
            uint32_t u = fnn_lowbias32(fnn_lowbias32((base + (uint32_t) i) ^ k0) + k1);
            dst[i] = (float) (int32_t) (u >> 8) * 0x1p-23f - 1.0f;
        }
    }
    /* along x: rows r .. 2w + 2r of p1 into the same rows of p2 used as
       scratch (p2 is large enough: both stacks hold 2n + 3r * side) */
    float *restrict t1 = f;   /* 2n floats: the pass's result, fields only */
    fnn_aug_pass(p1, t1 - r * h, r * h, (r + w) * h, h, g, r, r, r + w);
    fnn_aug_pass(p1, t1 + n - (2 * r + w) * h, (2 * r + w) * h, (2 * r + 2 * w) * h, h, g, r,
                 2 * r + w, 2 * r + 2 * w);
    /* transpose back into p2's stack (zeros in its padding blocks) */
    for (int fi = 0; fi < 3; fi++)
        memset(p2 + fi * (h + r) * w, 0, (size_t) (r * w) * sizeof(float));
    for (int fi = 0; fi < 2; fi++)
        fnn_aug_transpose(t1 + fi * n, p2 + (r + fi * (h + r)) * w, h, w);
    /* along y, into f */
    fnn_aug_pass(p2, f - r * w, r * w, (r + h) * w, w, g, r, r, r + h);
    fnn_aug_pass(p2, f + n - (2 * r + h) * w, (2 * r + h) * w, (2 * r + 2 * h) * w, w, g, r,
                 2 * r + h, 2 * r + 2 * h);
    const float al = a->alpha;
    for (ptrdiff_t i = 0; i < 2 * n; i++)
        f[i] = al * f[i];
}

/* The source positions of every output pixel: idx = y0 * w + x0 (int32) and
 * the weights fx, fy (float). grid: the output pixels' centred coordinates
 * u (n floats) then v (n floats); ex, ey: the elastic field (zeros without
 * one: adding +0 changes no position). */
FNN_CLONES
static void fnn_aug_positions(ptrdiff_t n, int h, int w, const float m[6],
                              const float *restrict grid, const float *restrict ex,
                              const float *restrict ey, int32_t *restrict idx,
                              float *restrict fxs, float *restrict fys)
{
    const float m0 = m[0], m1 = m[1], m2 = m[2], m3 = m[3], tx = m[4], ty = m[5];
    const float cx = (float) (w - 1) * 0.5f, cy = (float) (h - 1) * 0.5f;
    const float xmax = (float) (w - 1), ymax = (float) (h - 1);
    const float *restrict us = grid, *restrict vs = grid + n;
    const int wm = w - 2, hm = h - 2;
    for (ptrdiff_t p = 0; p < n; p++) {
        const float u = us[p], v = vs[p];
        float sx = (((m0 * u + m1 * v) + cx) + tx) + ex[p];
        float sy = (((m2 * u + m3 * v) + cy) + ty) + ey[p];
        sx = sx > 0.0f ? sx : 0.0f;
        sx = sx < xmax ? sx : xmax;
        sy = sy > 0.0f ? sy : 0.0f;
        sy = sy < ymax ? sy : ymax;
        int x0 = (int) sx, y0 = (int) sy;
        x0 = x0 < wm ? x0 : wm;
        y0 = y0 < hm ? y0 : hm;
        idx[p] = y0 * w + x0;
        fxs[p] = sx - (float) x0;
        fys[p] = sy - (float) y0;
    }
}

/* The bilinear sampling of one-channel images, a pixel at a time: idx, fxs,
 * fys from fnn_aug_positions. */
#define FNN_AUG_PX(NAME, T)                                                       \
    FNN_CLONES static void NAME(const int32_t *restrict idx, const float *restrict fxs, \
                                const float *restrict fys, ptrdiff_t n, ptrdiff_t w, \
                                const T *restrict src, T *restrict dst)           \
    {                                                                             \
        for (ptrdiff_t p = 0; p < n; p++) {                                       \
            const T fx = (T) fxs[p], fy = (T) fys[p];                             \
            const T gx = (T) 1 - fx, gy = (T) 1 - fy;                             \
            const T *s = src + idx[p];                                            \
            const T top = gx * s[0] + fx * s[1];                                  \
            const T bot = gx * s[w] + fx * s[w + 1];                              \
            dst[p] = gy * top + fy * bot;                                         \
        }                                                                         \
    }
FNN_AUG_PX(fnn_aug_px_scalar_f, float)
FNN_AUG_PX(fnn_aug_px_scalar_d, double)
#undef FNN_AUG_PX

/* The bilinear sampling of a one-channel float image, 4 output pixels at a
 * time on x86-64 (SSE, the baseline; cloned per instruction set): each pixel's
 * two source pairs (s[0], s[1]) and (s[w], s[w+1]) in two 64-bit loads, split
 * into the four sources of 4 pixels by two shuffles, then the scalar loop's
 * operations in its order on 4 lanes (-ffp-contract=off: the same bits, as
 * the tests check against the twin). Half the scalar loop's loads; AVX2 and
 * AVX-512 gathers were slower on Zen 4. Elsewhere (and for the last pixels): the scalar
 * loop. */
#if defined(__x86_64__) && FNN_GNUC && !defined(FASTNN_NO_SIMD)
#include <xmmintrin.h>
FNN_CLONES static void fnn_aug_px_f(const int32_t *restrict idx, const float *restrict fxs,
                                    const float *restrict fys, ptrdiff_t n, ptrdiff_t w,
                                    const float *restrict src, float *restrict dst)
{
    const __m128 one = _mm_set1_ps(1.0f), z = _mm_setzero_ps();
    ptrdiff_t p = 0;
    for (; p + 4 <= n; p += 4) {
        const float *s0 = src + idx[p], *s1 = src + idx[p + 1];
        const float *s2 = src + idx[p + 2], *s3 = src + idx[p + 3];
        const __m128 t01 = _mm_loadh_pi(_mm_loadl_pi(z, (const __m64 *) s0), (const __m64 *) s1);
        const __m128 t23 = _mm_loadh_pi(_mm_loadl_pi(z, (const __m64 *) s2), (const __m64 *) s3);
        const __m128 b01 = _mm_loadh_pi(_mm_loadl_pi(z, (const __m64 *) (s0 + w)),
                                        (const __m64 *) (s1 + w));
        const __m128 b23 = _mm_loadh_pi(_mm_loadl_pi(z, (const __m64 *) (s2 + w)),
                                        (const __m64 *) (s3 + w));
        const __m128 tl = _mm_shuffle_ps(t01, t23, _MM_SHUFFLE(2, 0, 2, 0));
        const __m128 tr = _mm_shuffle_ps(t01, t23, _MM_SHUFFLE(3, 1, 3, 1));
        const __m128 bl = _mm_shuffle_ps(b01, b23, _MM_SHUFFLE(2, 0, 2, 0));
        const __m128 br = _mm_shuffle_ps(b01, b23, _MM_SHUFFLE(3, 1, 3, 1));
        const __m128 fx = _mm_loadu_ps(fxs + p), fy = _mm_loadu_ps(fys + p);
        const __m128 gx = _mm_sub_ps(one, fx), gy = _mm_sub_ps(one, fy);
        const __m128 top = _mm_add_ps(_mm_mul_ps(gx, tl), _mm_mul_ps(fx, tr));
        const __m128 bot = _mm_add_ps(_mm_mul_ps(gx, bl), _mm_mul_ps(fx, br));
        _mm_storeu_ps(dst + p, _mm_add_ps(_mm_mul_ps(gy, top), _mm_mul_ps(fy, bot)));
    }
    if (p < n)
        fnn_aug_px_scalar_f(idx + p, fxs + p, fys + p, n - p, w, src, dst + p);
}
#define FNN_AUG_PX_F fnn_aug_px_f
#endif

#define FNN_AUG_SAMPLE(NAME, T, PX)                                               \
    static void NAME(const fnn_aug_t *a, const T *restrict src, T *restrict dst,  \
                     uint64_t key, float *restrict work)                          \
    {                                                                             \
        const ptrdiff_t h = a->h, w = a->w, nc = a->c, n = h * w;                  \
        float m[6];                                                               \
        fnn_aug_affine(a, key, m);                                                \
        /* work: idx | fx | fy | ex | ey | the field's scratch */                \
        int32_t *idx = (int32_t *) work;                                          \
        float *fxs = work + n, *fys = work + 2 * n, *f = work + 3 * n;            \
        if (a->elastic)                                                           \
            fnn_aug_field(a, key, f + 2 * n, f);                                  \
        else                                                                      \
            memset(f, 0, (size_t) (2 * n) * sizeof(float));                       \
        fnn_aug_positions(n, (int) h, (int) w, m, a->grid, f, f + n, idx, fxs,    \
                          fys);                                                   \
        if (nc == 1) {                                                            \
            PX(idx, fxs, fys, n, w, src, dst);                                    \
            return;                                                               \
        }                                                                         \
        for (ptrdiff_t p = 0; p < n; p++) {                                       \
            const T fx = (T) fxs[p], fy = (T) fys[p];                             \
            const T gx = (T) 1 - fx, gy = (T) 1 - fy;                             \
            const T *s = src + (ptrdiff_t) idx[p] * nc;                           \
            for (ptrdiff_t ch = 0; ch < nc; ch++) {                               \
                const T top = gx * s[ch] + fx * s[nc + ch];                       \
                const T bot = gx * s[w * nc + ch] + fx * s[(w + 1) * nc + ch];     \
                dst[p * nc + ch] = gy * top + fy * bot;                           \
            }                                                                     \
        }                                                                         \
    }
#ifndef FNN_AUG_PX_F
#define FNN_AUG_PX_F fnn_aug_px_scalar_f
#endif
FNN_AUG_SAMPLE(fnn_aug_row_f, float, FNN_AUG_PX_F)
FNN_AUG_SAMPLE(fnn_aug_row_d, double, fnn_aug_px_scalar_d)
#undef FNN_AUG_SAMPLE

#endif /* FASTNN_AUGMENT_H */
