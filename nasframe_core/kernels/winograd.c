/* 3x3 convolutions (stride 1, padding 1, no dilation, no groups) on channels-last float32 by
 * Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, 2016): every 2x2 output tile is
 *
 *   Y = A^T [ (G w G^T) . (B^T D B) ] A,
 *
 * D the 4x4 input patch around the tile, "." the product per position, summed over the input
 * channels: per position of the 4x4 tile, one matrix product over the channels, 16 multiplies
 * per tile where a direct convolution makes 36 (2.25x fewer).
 *
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 *
 * winograd_forward_f32:  y (N, H, W, Co) from x (N, H, W, Ci) and U = G w G^T laid out as
 *   (16, Ci, Co). The input gradient of a convolution is the same computation on the output
 *   gradient with the weights transposed and flipped.
 * winograd_weight_grad_f32: M (16, Ci, Co) = sum over tiles of (B^T D B)[ci] * (A g A^T)[co], g
 *   the 2x2 output-gradient tile; the weight gradient is G^T M G (the transpose of the forward
 *   map in w). The tiles are cut into a fixed number of chunks whose partial sums are added in
 *   chunk order, so the result does not depend on the thread count.
 *
 * Tiles are processed in blocks small enough for the transformed block to stay in the L2 cache;
 * the matrix products run in 6x16 register blocks (AVX2-sized vector types). Channels must be
 * a multiple of 8. Return value: 0 on success, 3 when scratch memory could not be allocated.
 */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef float v8 __attribute__((vector_size(32), aligned(4)));
#define LD(p) (*(const v8*)(p))
#define ST(p, v) (*(v8*)(p) = (v))

#define WEIGHT_GRAD_CHUNKS 8

/* tiles per block: the block's two transformed matrices fit in about 384 KB */
static long tile_block(long ci, long co) {
    long tb = (384L * 1024) / (64 * (ci + co)) / 6 * 6;
    return tb < 6 ? 6 : (tb > 96 ? 96 : tb);
}

/* B^T D B in place, D a 4x4 patch of 8-channel vectors (row-major) */
static inline void input_tf(v8 d[16]) {
    for (int j = 0; j < 4; ++j) {
        v8 d0 = d[j], d1 = d[4 + j], d2 = d[8 + j], d3 = d[12 + j];
        d[j] = d0 - d2; d[4 + j] = d1 + d2; d[8 + j] = d2 - d1; d[12 + j] = d1 - d3;
    }
    for (int i = 0; i < 4; ++i) {
        v8 a0 = d[4 * i], a1 = d[4 * i + 1], a2 = d[4 * i + 2], a3 = d[4 * i + 3];
        d[4 * i] = a0 - a2; d[4 * i + 1] = a1 + a2; d[4 * i + 2] = a2 - a1; d[4 * i + 3] = a1 - a3;
    }
}

/* floats between the positions of a transformed block of TB tiles with C channels: padded by
 * a cache line so that the 16 positions do not all fall into the same cache sets */
static long position_stride(long TB, long C) { return TB * C + 16; }

/* V[p][t][c] = (B^T D B)[p] for the tiles t0 .. t0 + nt - 1 (tile id: n, tile row, tile column) */
static void transform_input(const float* x, long t0, long nt, long H, long W, long C, float* V, long TB) {
    const long PS = position_stride(TB, C);
    const long TH = (H + 1) / 2, TW = (W + 1) / 2;
    for (long t = 0; t < nt; ++t) {
        const long id = t0 + t, n = id / (TH * TW), rem = id % (TH * TW);
        const long y0 = 2 * (rem / TW) - 1, x0 = 2 * (rem % TW) - 1;
        const int inside = y0 >= 0 && x0 >= 0 && y0 + 4 <= H && x0 + 4 <= W;
        for (long c = 0; c < C; c += 8) {
            v8 d[16];
            if (inside) {
                const float* base = x + ((n * H + y0) * W + x0) * C + c;
                for (int i = 0; i < 4; ++i)
                    for (int j = 0; j < 4; ++j) d[4 * i + j] = LD(base + (i * W + j) * C);
            } else {
                for (int i = 0; i < 4; ++i) {
                    const long h = y0 + i;
                    for (int j = 0; j < 4; ++j) {
                        const long w = x0 + j;
                        d[4 * i + j] = (h >= 0 && h < H && w >= 0 && w < W) ? LD(x + ((n * H + h) * W + w) * C + c)
                                                                             : (v8){0};
                    }
                }
            }
            input_tf(d);
            for (int p = 0; p < 16; ++p) ST(V + p * PS + t * C + c, d[p]);
        }
    }
}

/* Register-blocked matrix products over K, C rows ``ldc`` apart, B (K, 8 NB) rows ``ldb`` apart:
 *   product_R_NB:    C[R x 8 NB]  = A B,    A (R, K) with rows ``lda`` apart;
 *   product_t_R_NB:  C[R x 8 NB] += A^T B,  A (K, R) with rows ``lda`` apart. */
#define A_ROWS(r, k) A[(r) * lda + (k)]
#define A_COLUMNS(r, k) A[(k) * lda + (r)]
#define ZERO(r, q) ((v8){0})
#define LOAD_C(r, q) LD(C + (r) * ldc + 8 * (q))
#define PRODUCT(NAME, R, NB, A_AT, INIT)                                                        \
static inline void NAME(const float* A, long lda, const float* B, long ldb, float* C, long ldc, long K) { \
    v8 acc[R][NB];                                                                             \
    for (int r = 0; r < R; ++r)                                                                \
        for (int q = 0; q < NB; ++q) acc[r][q] = INIT(r, q);                                   \
    for (long k = 0; k < K; ++k) {                                                             \
        v8 b[NB];                                                                              \
        for (int q = 0; q < NB; ++q) b[q] = LD(B + k * ldb + 8 * q);                           \
        for (int r = 0; r < R; ++r) {                                                          \
            const float a = A_AT(r, k);                                                        \
            for (int q = 0; q < NB; ++q) acc[r][q] += a * b[q];                                \
        }                                                                                      \
    }                                                                                          \
    for (int r = 0; r < R; ++r)                                                                \
        for (int q = 0; q < NB; ++q) ST(C + r * ldc + 8 * q, acc[r][q]);                      \
}
PRODUCT(product_6_2, 6, 2, A_ROWS, ZERO)
PRODUCT(product_6_1, 6, 1, A_ROWS, ZERO)
PRODUCT(product_t_6_2, 6, 2, A_COLUMNS, LOAD_C)
PRODUCT(product_t_6_1, 6, 1, A_COLUMNS, LOAD_C)
PRODUCT(product_t_4_2, 4, 2, A_COLUMNS, LOAD_C)
PRODUCT(product_t_4_1, 4, 1, A_COLUMNS, LOAD_C)
PRODUCT(product_t_2_2, 2, 2, A_COLUMNS, LOAD_C)
PRODUCT(product_t_2_1, 2, 1, A_COLUMNS, LOAD_C)

int winograd_forward_f32(const float* x, const float* U, float* y, long N, long H, long W, long Ci, long Co,
                         int nthreads) {
    const long TH = (H + 1) / 2, TW = (W + 1) / 2, T = N * TH * TW;
    const long TB = tile_block(Ci, Co), nblocks = (T + TB - 1) / TB;
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(|:failed)
    {
        const long PV = position_stride(TB, Ci), PM = position_stride(TB, Co);
        float* V = aligned_alloc(64, sizeof(float) * 16 * PV);
        float* M = aligned_alloc(64, sizeof(float) * 16 * PM);
        if (V == NULL || M == NULL) {
            failed = 1;
        } else {
            memset(V, 0, sizeof(float) * 16 * PV);  /* rows past a short last block stay finite */
        }
#pragma omp for schedule(static)
        for (long blk = 0; blk < nblocks; ++blk) {
            if (V == NULL || M == NULL) continue;
            const long t0 = blk * TB, nt = T - t0 < TB ? T - t0 : TB, rows = (nt + 5) / 6 * 6;
            transform_input(x, t0, nt, H, W, Ci, V, TB);
            for (int p = 0; p < 16; ++p) {
                const float *Vp = V + p * PV, *Up = U + p * Ci * Co;
                float* Mp = M + p * PM;
                long j = 0;
                for (; j + 16 <= Co; j += 16)
                    for (long i = 0; i < rows; i += 6) product_6_2(Vp + i * Ci, Ci, Up + j, Co, Mp + i * Co + j, Co, Ci);
                for (; j < Co; j += 8)
                    for (long i = 0; i < rows; i += 6) product_6_1(Vp + i * Ci, Ci, Up + j, Co, Mp + i * Co + j, Co, Ci);
            }
            for (long t = 0; t < nt; ++t) {  /* Y = A^T M A */
                const long id = t0 + t, n = id / (TH * TW), rem = id % (TH * TW);
                const long y0 = 2 * (rem / TW), x0 = 2 * (rem % TW);
                const int right = x0 + 1 < W, below = y0 + 1 < H;
                float* out = y + ((n * H + y0) * W + x0) * Co;
                for (long c = 0; c < Co; c += 8) {
                    v8 m[16], s0[4], s1[4];
                    for (int p = 0; p < 16; ++p) m[p] = LD(M + p * PM + t * Co + c);
                    for (int j = 0; j < 4; ++j) {
                        s0[j] = m[j] + m[4 + j] + m[8 + j];
                        s1[j] = m[4 + j] - m[8 + j] - m[12 + j];
                    }
                    ST(out + c, s0[0] + s0[1] + s0[2]);
                    if (right) ST(out + Co + c, s0[1] - s0[2] - s0[3]);
                    if (below) {
                        ST(out + W * Co + c, s1[0] + s1[1] + s1[2]);
                        if (right) ST(out + W * Co + Co + c, s1[1] - s1[2] - s1[3]);
                    }
                }
            }
        }
        free(V);
        free(M);
    }
    return failed ? 3 : 0;
}

/* S[p][t][c] = (A g A^T)[p] for the 2x2 output-gradient tiles t0 .. t0 + nt - 1 */
static void transform_grad(const float* g, long t0, long nt, long H, long W, long C, float* S, long TB) {
    const long TH = (H + 1) / 2, TW = (W + 1) / 2, PS = position_stride(TB, C);
    for (long t = 0; t < nt; ++t) {
        const long id = t0 + t, n = id / (TH * TW), rem = id % (TH * TW);
        const long y0 = 2 * (rem / TW), x0 = 2 * (rem % TW);
        const int right = x0 + 1 < W, below = y0 + 1 < H;
        const float* base = g + ((n * H + y0) * W + x0) * C;
        for (long c = 0; c < C; c += 8) {
            const v8 z = {0};
            const v8 g00 = LD(base + c), g01 = right ? LD(base + C + c) : z;
            const v8 g10 = below ? LD(base + W * C + c) : z, g11 = right && below ? LD(base + W * C + C + c) : z;
            /* A = [1 0; 1 1; 1 -1; 0 -1]: rows of A g, then A (A g)^T */
            const v8 r[4][2] = {{g00, g01}, {g00 + g10, g01 + g11}, {g00 - g10, g01 - g11}, {-g10, -g11}};
            for (int i = 0; i < 4; ++i) {
                const v8 a = r[i][0], b = r[i][1];
                ST(S + (4 * i + 0) * PS + t * C + c, a);
                ST(S + (4 * i + 1) * PS + t * C + c, a + b);
                ST(S + (4 * i + 2) * PS + t * C + c, a - b);
                ST(S + (4 * i + 3) * PS + t * C + c, -b);
            }
        }
    }
}

int winograd_weight_grad_f32(const float* x, const float* g, float* out, long N, long H, long W, long Ci, long Co,
                             int nthreads) {
    const long TH = (H + 1) / 2, TW = (W + 1) / 2, T = N * TH * TW;
    const long TB = tile_block(Ci, Co), nblocks = (T + TB - 1) / TB, size = 16 * Ci * Co;
    const long chunks = nblocks < WEIGHT_GRAD_CHUNKS ? nblocks : WEIGHT_GRAD_CHUNKS;
    if (T == 0) {
        memset(out, 0, sizeof(float) * size);
        return 0;
    }
    float* partial = aligned_alloc(64, sizeof(float) * chunks * size);
    if (partial == NULL) return 3;
    memset(partial, 0, sizeof(float) * chunks * size);
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(|:failed)
    {
        const long PV = position_stride(TB, Ci), PS = position_stride(TB, Co);
        float* V = aligned_alloc(64, sizeof(float) * 16 * PV);
        float* S = aligned_alloc(64, sizeof(float) * 16 * PS);
        if (V == NULL || S == NULL) failed = 1;
#pragma omp for schedule(static)
        for (long ch = 0; ch < chunks; ++ch) {
            if (V == NULL || S == NULL) continue;
            float* acc = partial + ch * size;
            for (long blk = nblocks * ch / chunks; blk < nblocks * (ch + 1) / chunks; ++blk) {
                const long t0 = blk * TB, nt = T - t0 < TB ? T - t0 : TB;
                transform_input(x, t0, nt, H, W, Ci, V, TB);
                transform_grad(g, t0, nt, H, W, Co, S, TB);
                for (int p = 0; p < 16; ++p) {
                    const float *Vp = V + p * PV, *Sp = S + p * PS;
                    float* Mp = acc + p * Ci * Co;
                    for (long i = 0; i < Ci;) {
                        const long R = Ci - i >= 6 ? 6 : Ci - i;  /* 6, 4 or 2: Ci is a multiple of 8 */
                        long j = 0;
                        for (; j + 16 <= Co; j += 16) {
                            if (R == 6) product_t_6_2(Vp + i, Ci, Sp + j, Co, Mp + i * Co + j, Co, nt);
                            else if (R == 4) product_t_4_2(Vp + i, Ci, Sp + j, Co, Mp + i * Co + j, Co, nt);
                            else product_t_2_2(Vp + i, Ci, Sp + j, Co, Mp + i * Co + j, Co, nt);
                        }
                        for (; j < Co; j += 8) {
                            if (R == 6) product_t_6_1(Vp + i, Ci, Sp + j, Co, Mp + i * Co + j, Co, nt);
                            else if (R == 4) product_t_4_1(Vp + i, Ci, Sp + j, Co, Mp + i * Co + j, Co, nt);
                            else product_t_2_1(Vp + i, Ci, Sp + j, Co, Mp + i * Co + j, Co, nt);
                        }
                        i += R;
                    }
                }
            }
        }
        free(V);
        free(S);
#pragma omp for schedule(static)
        for (long e = 0; e < size; e += 8) {  /* partial sums in chunk order */
            v8 s = LD(partial + e);
            for (long ch = 1; ch < chunks; ++ch) s += LD(partial + ch * size + e);
            ST(out + e, s);
        }
    }
    free(partial);
    return failed ? 3 : 0;
}
