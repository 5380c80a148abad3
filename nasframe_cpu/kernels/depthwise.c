/* Weight gradient of a depthwise convolution (stride 1, no dilation) on channels-last float32.
 *
 *   dW[c, i, j] = sum over n, ho, wo of  G[n, ho, wo, c] * X[n, ho + i - pad, wo + j - pad, c]
 *
 * X is (N, H, W, C), G is (N, Ho, Wo, C) with Ho = H + 2 pad - K + 1 (likewise Wo), dW is
 * (C, K, K). The threads split the (n, ho) rows and sum into private (K, K, C) buffers, added up
 * in thread order at the end: for a given thread count the result is the same on every run.
 * Per row and kernel row i, a zero-padded copy of the input row makes every tap a plain load;
 * the K x (8 * NB) accumulators of a channel block stay in registers along the row.
 */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef float v8 __attribute__((vector_size(32), aligned(4)));

#define DEFINE_KERNEL(KS, NB)                                                                  \
static int wgrad_k##KS##_b##NB(const float* x, const float* g, float* out, long N, long H,     \
                               long W, long C, long Ho, long Wo, long pad, int nthreads) {    \
    const long Wp = Wo + KS - 1, K2C = (long)KS * KS * C;                                      \
    float* partial = calloc((size_t)nthreads * K2C, sizeof(float));                            \
    int failed = partial == NULL;                                                              \
    if (failed) return 3;                                                                      \
    _Pragma("omp parallel num_threads(nthreads) reduction(|:failed)")                          \
    {                                                                                          \
        int t = 0, nt = 1;                                                                     \
        OMP_IDS(t, nt);                                                                        \
        float* acc = partial + (size_t)t * K2C;                                                \
        float* row = calloc((size_t)Wp * C, sizeof(float));                                    \
        long rows = N * Ho, lo = rows * t / nt, hi = rows * (t + 1) / nt;                      \
        if (row == NULL) { failed = 1; hi = lo; }                                              \
        for (long r = lo; r < hi; ++r) {                                                       \
            const long n = r / Ho, ho = r % Ho;                                                \
            const float* grow = g + r * Wo * C;                                                \
            for (int i = 0; i < KS; ++i) {                                                     \
                const long h = ho + i - pad;                                                   \
                if (h < 0 || h >= H) continue;                                                 \
                memcpy(row + pad * C, x + (n * H + h) * W * C, sizeof(float) * W * C);        \
                for (long b = 0; b < C; b += 8 * NB) {                                         \
                    v8 a[KS][NB];                                                              \
                    _Pragma("GCC unroll 8")                                                    \
                    for (int j = 0; j < KS; ++j)                                               \
                        _Pragma("GCC unroll 2")                                                \
                        for (int q = 0; q < NB; ++q) a[j][q] = (v8){0};                        \
                    for (long w = 0; w < Wo; ++w) {                                            \
                        const float* gp = grow + w * C + b;                                    \
                        const float* xp = row + w * C + b;                                     \
                        v8 gv[NB];                                                             \
                        _Pragma("GCC unroll 2")                                                \
                        for (int q = 0; q < NB; ++q) gv[q] = *(const v8*)(gp + 8 * q);         \
                        _Pragma("GCC unroll 8")                                                \
                        for (int j = 0; j < KS; ++j)                                           \
                            _Pragma("GCC unroll 2")                                            \
                            for (int q = 0; q < NB; ++q)                                       \
                                a[j][q] += gv[q] * *(const v8*)(xp + j * C + 8 * q);           \
                    }                                                                          \
                    _Pragma("GCC unroll 8")                                                    \
                    for (int j = 0; j < KS; ++j)                                               \
                        _Pragma("GCC unroll 2")                                                \
                        for (int q = 0; q < NB; ++q)                                           \
                            *(v8*)(acc + (i * KS + j) * C + b + 8 * q) += a[j][q];             \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        free(row);                                                                             \
    }                                                                                          \
    if (!failed)                                                                               \
        for (long c = 0; c < C; ++c)                                                           \
            for (int k = 0; k < KS * KS; ++k) {                                                \
                float s = 0.f;                                                                 \
                for (int t = 0; t < nthreads; ++t) s += partial[(size_t)t * K2C + k * C + c];  \
                out[c * KS * KS + k] = s;                                                      \
            }                                                                                  \
    free(partial);                                                                             \
    return failed ? 3 : 0;                                                                     \
}

#ifdef _OPENMP
#define OMP_IDS(t, nt) do { t = omp_get_thread_num(); nt = omp_get_num_threads(); } while (0)
#else
#define OMP_IDS(t, nt) do { (void)(t); (void)(nt); } while (0)
#endif

DEFINE_KERNEL(3, 1)
DEFINE_KERNEL(3, 2)
DEFINE_KERNEL(5, 1)
DEFINE_KERNEL(5, 2)

/* 1 when built with OpenMP (the threads argument is honoured), else 0. */
int depthwise_threads(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Returns 0 on success; 1: C is not a multiple of 8; 2: K is not 3 or 5; 3: out of memory. */
int depthwise_weight_grad_f32(const float* x, const float* g, float* out, long N, long H, long W,
                              long C, long Ho, long Wo, long K, long pad, int nthreads) {
    if (C % 8) return 1;
#ifndef _OPENMP
    nthreads = 1;
#endif
    if (nthreads < 1) nthreads = 1;
    const int two = C % 16 == 0; /* two channel blocks at once: twice the independent sums */
    switch (K) {
        case 3: return (two ? wgrad_k3_b2 : wgrad_k3_b1)(x, g, out, N, H, W, C, Ho, Wo, pad, nthreads);
        case 5: return (two ? wgrad_k5_b2 : wgrad_k5_b1)(x, g, out, N, H, W, C, Ho, Wo, pad, nthreads);
    }
    return 2;
}
