/* 3x3 convolutions (stride 1, padding 1, no dilation, no groups) on channels-last float32 by
 * Winograd's minimal filtering F(m x m, 3x3) (Lavin and Gray, 2016), m = 2 or 4: every m x m
 * output tile is
 *
 *   Y = A^T [ (G w G^T) . (B^T D B) ] A,
 *
 * D the (m+2) x (m+2) input patch around the tile, "." the product per position, summed over
 * the input channels: per position of the patch, one matrix product over the channels. A
 * direct convolution makes 9 m^2 multiplies per tile: F(2x2, 3x3) 16 (2.25x fewer), F(4x4, 3x3)
 * 36 (4x fewer; its transforms weigh more and its rounding error is about ten times a direct
 * convolution's, still near 1e-5 of the output).
 *
 *   F(2x2, 3x3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], A^T = [1 1 1 0; 0 1 -1 -1],
 *                G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1].
 *   F(4x4, 3x3): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
 *                       0 2 -1 -2 1 0; 0 4 0 -5 0 1],
 *                A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1],
 *                G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1].
 *
 * winograd_forward_f32:  y (N, H, W, Co) from x (N, H, W, Ci) and U = G w G^T laid out as
 *   (P, Ci, Co), P = (m+2)^2 positions. The input gradient of a convolution is the same
 *   computation on the output gradient with the weights transposed and flipped.
 * winograd_weight_grad_f32: M (P, Ci, Co) = sum over tiles of (B^T D B)[ci] * (A g A^T)[co], g
 *   the m x m output-gradient tile; the weight gradient is G^T M G (the transpose of the forward
 *   map in w). The tiles are cut into chunks (8, or one per thread beyond 8) whose partial sums
 *   are added in chunk order, so up to 8 threads the result does not depend on the thread count.
 *
 * Tiles are processed in blocks small enough for the transformed block to stay in the L2 cache;
 * the matrix products run in 6x16 register blocks (AVX2-sized vector types). Channels must be
 * a multiple of 8. Return value: 0 on success, 2 for a tile size other than 2 or 4 or channels that
 * are not a positive multiple of 8 (or negative sizes), 3 when scratch memory could not be allocated.
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
#define MAX_POSITIONS 36

/* tiles per block: the block's two transformed matrices fit in about 384 KB */
static long tile_block(long P, long ci, long co) {
    long tb = (384L * 1024) / (4 * P * (ci + co)) / 6 * 6;
    return tb < 6 ? 6 : (tb > 96 ? 96 : tb);
}

/* floats between the positions of a transformed block of TB tiles with C channels: padded by
 * a cache line so that the positions do not all fall into the same cache sets */
static long position_stride(long TB, long C) { return TB * C + 16; }

/* B^T of F(2x2, 3x3) on 4 vectors d[0], d[s], d[2s], d[3s], in place */
static inline void bt4(v8* d, int s) {
    const v8 d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s];
    d[0] = d0 - d2; d[s] = d1 + d2; d[2 * s] = d2 - d1; d[3 * s] = d1 - d3;
}

/* B^T of F(4x4, 3x3) on 6 vectors d[0], d[s], ..., d[5s], in place */
static inline void bt6(v8* d, int s) {
    const v8 c0 = d[0], c1 = d[s], c2 = d[2 * s], c3 = d[3 * s], c4 = d[4 * s], c5 = d[5 * s];
    const v8 a = c4 - 4 * c2, b = c3 - 4 * c1, e = c4 - c2, f = 2 * (c3 - c1);
    d[0] = 4 * c0 - 5 * c2 + c4; d[s] = a + b; d[2 * s] = a - b; d[3 * s] = e + f; d[4 * s] = e - f;
    d[5 * s] = 4 * c1 - 5 * c3 + c5;
}

/* A^T of F(2x2, 3x3): 4 vectors m[0], m[s], ... to 2, o[0], o[so] */
static inline void at4(const v8* m, int s, v8* o, int so) {
    o[0] = m[0] + m[s] + m[2 * s];
    o[so] = m[s] - m[2 * s] - m[3 * s];
}

/* A^T of F(4x4, 3x3): 6 vectors to 4 */
static inline void at6(const v8* m, int s, v8* o, int so) {
    const v8 a = m[s] + m[2 * s], b = m[s] - m[2 * s], c = m[3 * s] + m[4 * s], d = m[3 * s] - m[4 * s];
    o[0] = m[0] + a + c; o[so] = b + 2 * d; o[2 * so] = a + 4 * c; o[3 * so] = b + 8 * d + m[5 * s];
}

/* A of F(2x2, 3x3): 2 vectors g[0], g[s] to 4, o[0], o[so], ... */
static inline void a4(const v8* g, int s, v8* o, int so) {
    o[0] = g[0]; o[so] = g[0] + g[s]; o[2 * so] = g[0] - g[s]; o[3 * so] = -g[s];
}

/* A of F(4x4, 3x3): 4 vectors to 6 */
static inline void a6(const v8* g, int s, v8* o, int so) {
    const v8 a = g[0] + g[2 * s], b = g[s] + g[3 * s], c = g[0] + 4 * g[2 * s], d = 2 * g[s] + 8 * g[3 * s];
    o[0] = g[0]; o[so] = a + b; o[2 * so] = a - b; o[3 * so] = c + d; o[4 * so] = c - d; o[5 * so] = g[3 * s];
}

/* the tiling of an H x W image into m x m tiles */
typedef struct { long m, a, P, TH, TW, H, W; } tiling;

static tiling make_tiling(long m, long H, long W) {
    tiling t = {m, m + 2, (m + 2) * (m + 2), (H + m - 1) / m, (W + m - 1) / m, H, W};
    return t;
}

/* tile id -> image n, top row, left column, and how many of its rows and columns are inside */
static inline void tile_at(const tiling* g, long id, long* n, long* y0, long* x0, long* rows, long* cols) {
    const long rem = id % (g->TH * g->TW);
    *n = id / (g->TH * g->TW);
    *y0 = g->m * (rem / g->TW);
    *x0 = g->m * (rem % g->TW);
    *rows = g->H - *y0 < g->m ? g->H - *y0 : g->m;
    *cols = g->W - *x0 < g->m ? g->W - *x0 : g->m;
}

/* V[p][t][c] = (B^T D B)[p] for the tiles t0 .. t0 + nt - 1 */
static void transform_input(const tiling* g, const float* x, long t0, long nt, long H, long W, long C, float* V,
                            long TB) {
    const long PS = position_stride(TB, C), a = g->a;
    for (long t = 0; t < nt; ++t) {
        long n, y0, x0, rows, cols;
        tile_at(g, t0 + t, &n, &y0, &x0, &rows, &cols);
        y0 -= 1;  /* the patch starts one pixel up and left of the tile (padding 1) */
        x0 -= 1;
        const int inside = y0 >= 0 && x0 >= 0 && y0 + a <= H && x0 + a <= W;
        for (long c = 0; c < C; c += 8) {
            v8 d[MAX_POSITIONS];
            for (int i = 0; i < a; ++i) {
                const long h = y0 + i;
                for (int j = 0; j < a; ++j) {
                    const long w = x0 + j;
                    d[a * i + j] = (inside || (h >= 0 && h < H && w >= 0 && w < W))
                        ? LD(x + ((n * H + h) * W + w) * C + c) : (v8){0};
                }
            }
            if (a == 4) {
                for (int j = 0; j < 4; ++j) bt4(d + j, 4);
                for (int i = 0; i < 4; ++i) bt4(d + 4 * i, 1);
            } else {
                for (int j = 0; j < 6; ++j) bt6(d + j, 6);
                for (int i = 0; i < 6; ++i) bt6(d + 6 * i, 1);
            }
            for (int p = 0; p < g->P; ++p) ST(V + p * PS + t * C + c, d[p]);
        }
    }
}

/* y = A^T M A for the tiles t0 .. t0 + nt - 1, M[p][t][c] */
static void transform_output(const tiling* g, const float* M, long t0, long nt, long H, long W, long C, float* y,
                             long TB) {
    const long PS = position_stride(TB, C), a = g->a, m = g->m;
    for (long t = 0; t < nt; ++t) {
        long n, y0, x0, rows, cols;
        tile_at(g, t0 + t, &n, &y0, &x0, &rows, &cols);
        float* out = y + ((n * H + y0) * W + x0) * C;
        for (long c = 0; c < C; c += 8) {
            v8 v[MAX_POSITIONS], s[24], o[16];  /* s: m x a after the columns, o: m x m */
            for (int p = 0; p < g->P; ++p) v[p] = LD(M + p * PS + t * C + c);
            if (a == 4) {
                for (int j = 0; j < 4; ++j) at4(v + j, 4, s + j, 4);
                for (int i = 0; i < 2; ++i) at4(s + 4 * i, 1, o + 2 * i, 1);
            } else {
                for (int j = 0; j < 6; ++j) at6(v + j, 6, s + j, 6);
                for (int i = 0; i < 4; ++i) at6(s + 6 * i, 1, o + 4 * i, 1);
            }
            for (long i = 0; i < rows; ++i)
                for (long j = 0; j < cols; ++j) ST(out + (i * W + j) * C + c, o[m * i + j]);
        }
    }
}

/* S[p][t][c] = (A g A^T)[p] for the m x m output-gradient tiles t0 .. t0 + nt - 1 */
static void transform_grad(const tiling* g, const float* gy, long t0, long nt, long H, long W, long C, float* S,
                           long TB) {
    const long PS = position_stride(TB, C), a = g->a, m = g->m;
    for (long t = 0; t < nt; ++t) {
        long n, y0, x0, rows, cols;
        tile_at(g, t0 + t, &n, &y0, &x0, &rows, &cols);
        const float* base = gy + ((n * H + y0) * W + x0) * C;
        for (long c = 0; c < C; c += 8) {
            v8 d[16], s[24], v[MAX_POSITIONS];  /* d: m x m, s: a x m after the columns, v: a x a */
            for (long i = 0; i < m; ++i)
                for (long j = 0; j < m; ++j) d[m * i + j] = i < rows && j < cols ? LD(base + (i * W + j) * C + c) : (v8){0};
            if (a == 4) {
                for (int j = 0; j < 2; ++j) a4(d + j, 2, s + j, 2);
                for (int i = 0; i < 4; ++i) a4(s + 2 * i, 1, v + 4 * i, 1);
            } else {
                for (int j = 0; j < 4; ++j) a6(d + j, 4, s + j, 4);
                for (int i = 0; i < 6; ++i) a6(s + 4 * i, 1, v + 6 * i, 1);
            }
            for (int p = 0; p < g->P; ++p) ST(S + p * PS + t * C + c, v[p]);
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

/* the sizes the kernels take: tile 2 or 4, channels positive multiples of 8, no negative size */
static int valid(int m, long N, long H, long W, long Ci, long Co) {
    return (m == 2 || m == 4) && N >= 0 && H >= 0 && W >= 0 && Ci > 0 && Co > 0 && Ci % 8 == 0 && Co % 8 == 0;
}

int winograd_forward_f32(const float* x, const float* U, float* y, long N, long H, long W, long Ci, long Co,
                         int m, int nthreads) {
    if (!valid(m, N, H, W, Ci, Co)) return 2;
    const tiling g = make_tiling(m, H, W);
    const long P = g.P, T = N * g.TH * g.TW, TB = tile_block(P, Ci, Co), nblocks = (T + TB - 1) / TB;
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(|:failed)
    {
        const long PV = position_stride(TB, Ci), PM = position_stride(TB, Co);
        float* V = aligned_alloc(64, sizeof(float) * P * PV);
        float* M = aligned_alloc(64, sizeof(float) * P * PM);
        if (V == NULL || M == NULL) {
            failed = 1;
        } else {
            memset(V, 0, sizeof(float) * P * PV);  /* rows past a short last block stay finite */
        }
#pragma omp for schedule(static)
        for (long blk = 0; blk < nblocks; ++blk) {
            if (V == NULL || M == NULL) continue;
            const long t0 = blk * TB, nt = T - t0 < TB ? T - t0 : TB, rows = (nt + 5) / 6 * 6;
            transform_input(&g, x, t0, nt, H, W, Ci, V, TB);
            for (long p = 0; p < P; ++p) {
                const float *Vp = V + p * PV, *Up = U + p * Ci * Co;
                float* Mp = M + p * PM;
                long j = 0;
                for (; j + 16 <= Co; j += 16)
                    for (long i = 0; i < rows; i += 6) product_6_2(Vp + i * Ci, Ci, Up + j, Co, Mp + i * Co + j, Co, Ci);
                for (; j < Co; j += 8)
                    for (long i = 0; i < rows; i += 6) product_6_1(Vp + i * Ci, Ci, Up + j, Co, Mp + i * Co + j, Co, Ci);
            }
            transform_output(&g, M, t0, nt, H, W, Co, y, TB);
        }
        free(V);
        free(M);
    }
    return failed ? 3 : 0;
}

int winograd_weight_grad_f32(const float* x, const float* gy, float* out, long N, long H, long W, long Ci, long Co,
                             int m, int nthreads) {
    if (!valid(m, N, H, W, Ci, Co)) return 2;
    const tiling g = make_tiling(m, H, W);
    const long P = g.P, T = N * g.TH * g.TW, TB = tile_block(P, Ci, Co), nblocks = (T + TB - 1) / TB;
    const long most = nthreads > WEIGHT_GRAD_CHUNKS ? nthreads : WEIGHT_GRAD_CHUNKS;
    const long size = P * Ci * Co, chunks = nblocks < most ? nblocks : most;
    if (T == 0) {
        memset(out, 0, sizeof(float) * size);
        return 0;
    }
    float* partial = aligned_alloc(64, sizeof(float) * chunks * size);
    if (partial == NULL) return 3;
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(|:failed)
    {
        const long PV = position_stride(TB, Ci), PS = position_stride(TB, Co);
        float* V = aligned_alloc(64, sizeof(float) * P * PV);
        float* S = aligned_alloc(64, sizeof(float) * P * PS);
        if (V == NULL || S == NULL) failed = 1;
#pragma omp for schedule(static)
        for (long ch = 0; ch < chunks; ++ch) {
            if (V == NULL || S == NULL) continue;
            float* acc = partial + ch * size;
            memset(acc, 0, sizeof(float) * size);
            for (long blk = nblocks * ch / chunks; blk < nblocks * (ch + 1) / chunks; ++blk) {
                const long t0 = blk * TB, nt = T - t0 < TB ? T - t0 : TB;
                transform_input(&g, x, t0, nt, H, W, Ci, V, TB);
                transform_grad(&g, gy, t0, nt, H, W, Co, S, TB);
                for (long p = 0; p < P; ++p) {
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
