// C++ CPU kernels of ccl.splat's "cpu" rasterizer backend, loaded by _cpu_kernel.py (see its docstring:
// how it is built and cached, and the rules these kernels follow). Each exported function is the twin
// of a PyTorch function the tests compare it with: the EWA projection and its backward
// (projection.project_gaussians), the tile binning (_cpu_tiles.bin_tiles), the depth-sorted tile
// compositing and its backward (_reference.composite_dense).
//
// The exported C interface (CCL_EXPORT at the end) is declared once more, argument by argument, in
// _cpu_kernel.SIGNATURES as ctypes argtypes: change both together.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

struct Dims {
    int64_t C, N, K, W, H, ts, tx, ty;
};

template <typename Fn>
void parallel_for(int64_t n, int nthreads, Fn&& fn) {
    nthreads = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, n));
    if (nthreads == 1) {
        for (int64_t i = 0; i < n; ++i) fn(i, 0);
        return;
    }
    std::atomic<int64_t> next(0);
    auto work = [&](int tid) {
        for (;;) {
            const int64_t i = next.fetch_add(1);
            if (i >= n) break;
            fn(i, tid);
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < nthreads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
}

// exp(x) for x <= 0, with x clamped at -30: a pair with sigma > 30 has alpha < 1/255 and is skipped
// anyway, and the clamp keeps every product out of the denormal range (denormals cost ~100 cycles).
// In float: range reduction to 2^n * e^r, |r| <= ln2/2, degree-6 Taylor (rel. err ~2e-7, like CUDA's
// __expf that gsplat uses); branch-free so the per-chunk loops vectorise.
template <typename T>
inline T exp_nonpos(T x) { return std::exp(x < T(-30) ? T(-30) : x); }
template <>
inline float exp_nonpos<float>(float x) {
    x = x < -30.0f ? -30.0f : x;
    x = x > 0.0f ? 0.0f : x;
    const float t = x * 1.44269504088896341f;
    const int32_t n = (int32_t)(t - 0.5f);  // truncation toward zero = ceil(t - 0.5) for t <= 0
    const float r = (t - (float)n) * 0.693147180559945309f;
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    return p * __builtin_bit_cast(float, (n + 127) << 23);
}

// Tiles touched by a Gaussian's box (gsplat's isect_tiles rule), as [x0, x1) x [y0, y1) in tiles.
template <typename T>
inline bool tile_rect(const Dims& d, T mx, T my, int32_t rx, int32_t ry, int64_t* r) {
    if (rx <= 0 || ry <= 0) return false;
    const T ts = (T)d.ts;
    r[0] = std::min<int64_t>(std::max<int64_t>((int64_t)std::floor(mx / ts - rx / ts), 0), d.tx);
    r[1] = std::min<int64_t>(std::max<int64_t>((int64_t)std::ceil(mx / ts + rx / ts), 0), d.tx);
    r[2] = std::min<int64_t>(std::max<int64_t>((int64_t)std::floor(my / ts - ry / ts), 0), d.ty);
    r[3] = std::min<int64_t>(std::max<int64_t>((int64_t)std::ceil(my / ts + ry / ts), 0), d.ty);
    return r[1] > r[0] && r[3] > r[2];
}

template <typename T>
void bin_count(const Dims& d, const T* means2d, const int32_t* radii, int64_t* counts) {
    const int64_t tpc = d.tx * d.ty;
    int64_t r[4];
    for (int64_t cam = 0; cam < d.C; ++cam)
        for (int64_t g = 0; g < d.N; ++g) {
            const int64_t idx = cam * d.N + g;
            if (!tile_rect<T>(d, means2d[2 * idx], means2d[2 * idx + 1], radii[2 * idx], radii[2 * idx + 1], r)) continue;
            for (int64_t ty = r[2]; ty < r[3]; ++ty)
                for (int64_t tx = r[0]; tx < r[1]; ++tx) ++counts[cam * tpc + ty * d.tx + tx];
        }
}

// order: [C, N] Gaussian ids sorted by depth per camera; fills each tile's list front to back.
template <typename T>
void bin_fill(const Dims& d, const T* means2d, const int32_t* radii, const int64_t* order,
              const int64_t* offsets, int64_t* ids) {
    const int64_t tpc = d.tx * d.ty;
    std::vector<int64_t> cursor(offsets, offsets + d.C * tpc);
    int64_t r[4];
    for (int64_t cam = 0; cam < d.C; ++cam)
        for (int64_t i = 0; i < d.N; ++i) {
            const int64_t g = order[cam * d.N + i], idx = cam * d.N + g;
            if (!tile_rect<T>(d, means2d[2 * idx], means2d[2 * idx + 1], radii[2 * idx], radii[2 * idx + 1], r)) continue;
            for (int64_t ty = r[2]; ty < r[3]; ++ty)
                for (int64_t tx = r[0]; tx < r[1]; ++tx) ids[cursor[cam * tpc + ty * d.tx + tx]++] = g;
        }
}

struct Tile {
    int64_t cam, x0, y0, x1, y1, s, e;
};

inline Tile tile_of(const Dims& d, const int64_t* offsets, int64_t ti) {
    const int64_t tpc = d.tx * d.ty, t = ti % tpc;
    Tile tl;
    tl.cam = ti / tpc;
    tl.x0 = (t % d.tx) * d.ts;
    tl.y0 = (t / d.tx) * d.ts;
    tl.x1 = std::min(tl.x0 + d.ts, d.W);
    tl.y1 = std::min(tl.y0 + d.ts, d.H);
    tl.s = offsets[ti];
    tl.e = offsets[ti + 1];
    return tl;
}

// Pixels are processed in chunks of L consecutive pixels of a tile row, with a fixed trip count so
// each chunk is one or two vector registers and no loop epilogue; a tile row is padded to a multiple of
// L (padding pixels are born "done" in the forward and have no contributors in the backward).
constexpr int L = 8;

// One Gaussian as seen by one tile: its parameters and the chunks of the tile its box overlaps
// (outside the box alpha < 1/255, see projection.py, so evaluating a few pixels beyond is harmless).
template <typename T>
struct Gauss {
    T mx, my, a, b, c, o;
    int64_t ca, cb, ya, yb;  // chunk-aligned local x range [ca, cb), global rows [ya, yb)
    bool load(const Tile& tl, int64_t idx, const T* means2d, const T* conics, const T* opac, int64_t g,
              const int32_t* radii) {
        mx = means2d[2 * idx]; my = means2d[2 * idx + 1];
        a = conics[3 * idx]; b = conics[3 * idx + 1]; c = conics[3 * idx + 2];
        o = opac[g];
        const int32_t rx = radii[2 * idx], ry = radii[2 * idx + 1];
        const int64_t xa = std::max<int64_t>(tl.x0, (int64_t)std::floor(mx - rx) - 1);
        const int64_t xb = std::min<int64_t>(tl.x1, (int64_t)std::ceil(mx + rx) + 1);
        ya = std::max<int64_t>(tl.y0, (int64_t)std::floor(my - ry) - 1);
        yb = std::min<int64_t>(tl.y1, (int64_t)std::ceil(my + ry) + 1);
        ca = (xa - tl.x0) / L * L;
        cb = (xb - tl.x0 + L - 1) / L * L;
        return xb > xa && yb > ya;
    }
    // sigma, exp(-sigma) and the unclamped alpha opacity * exp(-sigma) of L pixels from (x, y)
    inline void chunk(T x, T y, T* __restrict sig, T* __restrict g, T* __restrict raw) const {
        const T dy = my - (y + T(0.5)), x0 = mx - (x + T(0.5));
#pragma omp simd
        for (int i = 0; i < L; ++i) {
            const T dx = x0 - T(i);
            const T s = T(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy;
            const T e = exp_nonpos<T>(-s);
            sig[i] = s;
            g[i] = e;
            raw[i] = o * e;
        }
    }
};

// Per-thread scratch: per-pixel arrays tile-local with rows padded to `stride`, channel arrays
// channel-major ([K][pixels]) so that the chunk loops run over contiguous pixels.
template <typename T>
struct Scratch {
    std::vector<T> tr, acc, pt, pr, cv;
    std::vector<int32_t> last, done, active, cactive, rowlast;
    alignas(64) T sig[L], g[L], raw[L], w[L], A[L], OM[L], TB[L], va[L], mk[L];
};

// Channels blended per Gaussian: the D colour channels (shared by all cameras) and the camera-space depth
// (per camera) as channel D, whose blend divided by alpha is the expected depth (gsplat's "ED").
template <typename T>
inline void load_channels(const T* colors, const T* depths, int64_t D, int64_t g, int64_t idx, T* cv) {
    for (int64_t k = 0; k < D; ++k) cv[k] = colors[g * D + k];
    cv[D] = depths[idx];
}

template <typename T>
void forward(const Dims& d, const T* means2d, const T* conics, const T* opac, const T* colors,
             const T* depths, const T* bg, const int32_t* radii, const int64_t* offsets, const int64_t* ids,
             T* out, T* alpha, T* depth_out, T* t_final, int32_t* last_out, int nthreads) {
    // (captured by value below: captured by reference they were re-loaded as gathers in the vector loops)
    const T athr = T(1) / T(255), amax = T(0.999), tmin = T(1e-4);
    const int64_t D = d.K, K = d.K + 1;
    std::vector<Scratch<T>> scratch(std::max(nthreads, 1));
    parallel_for(d.C * d.tx * d.ty, nthreads, [&, athr, amax, tmin, D, K](int64_t ti, int tid) {
        const Tile tl = tile_of(d, offsets, ti);
        const int64_t tw = tl.x1 - tl.x0, th = tl.y1 - tl.y0, stride = (tw + L - 1) / L * L;
        const int64_t npix = th * tw, npad = th * stride;
        Scratch<T>& sc = scratch[tid];
        sc.tr.assign(npad, T(1));
        sc.acc.assign(npad * K, T(0));
        sc.cv.resize(K);
        sc.last.assign(npad, -1);
        sc.done.assign(npad, 0);
        for (int64_t ry = 0; ry < th; ++ry)
            for (int64_t rx = tw; rx < stride; ++rx) sc.done[ry * stride + rx] = 1;
        sc.active.assign(th, (int32_t)tw);
        sc.cactive.assign(th * (stride / L), L);
        for (int64_t ry = 0; ry < th; ++ry) sc.cactive[ry * (stride / L) + stride / L - 1] -= (int32_t)(stride - tw);
        T* __restrict tr = sc.tr.data();
        T* __restrict w = sc.w;
        int32_t* __restrict done = sc.done.data();
        int32_t* __restrict last = sc.last.data();
        const T *sig = sc.sig, *raw = sc.raw;
        T* col = sc.cv.data();
        int64_t ndone = 0;
        Gauss<T> gs;
        for (int64_t j = tl.s; j < tl.e && ndone < npix; ++j) {
            const int64_t g = ids[j], idx = tl.cam * d.N + g;
            if (!gs.load(tl, idx, means2d, conics, opac, g, radii)) continue;
            load_channels(colors, depths, D, g, idx, col);
            const int32_t jpos = (int32_t)(j - tl.s);
            for (int64_t y = gs.ya; y < gs.yb; ++y) {
                if (sc.active[y - tl.y0] == 0) continue;
                int32_t stops = 0;
                for (int64_t cx = gs.ca; cx < gs.cb; cx += L) {
                    int32_t& chunk_active = sc.cactive[(y - tl.y0) * (stride / L) + cx / L];
                    if (chunk_active == 0) continue;
                    gs.chunk(T(tl.x0 + cx), T(y), sc.sig, sc.g, sc.raw);
                    const int64_t pb = (y - tl.y0) * stride + cx;
                    int32_t cstops = 0, blends = 0;
#pragma omp simd reduction(+ : cstops, blends)
                    for (int i = 0; i < L; ++i) {
                        const int64_t p = pb + i;
                        const T a = raw[i] < amax ? raw[i] : amax;
                        const T t = tr[p], nt = t * (T(1) - a);
                        const int32_t valid = (done[p] == 0) & (sig[i] >= T(0)) & (a >= athr);
                        const int32_t stop = valid & (nt <= tmin);  // done; this Gaussian is not blended
                        const int32_t blend = valid & (stop ^ 1);
                        w[i] = blend ? a * t : T(0);
                        tr[p] = blend ? nt : t;
                        done[p] |= stop;
                        last[p] = blend ? jpos : last[p];
                        cstops += stop;
                        blends += blend;
                    }
                    chunk_active -= cstops;
                    stops += cstops;
                    if (blends == 0) continue;
                    for (int64_t k = 0; k < K; ++k) {
                        const T ck = col[k];
                        T* __restrict acc = sc.acc.data() + k * npad + pb;
#pragma omp simd
                        for (int i = 0; i < L; ++i) acc[i] += ck * w[i];
                    }
                }
                sc.active[y - tl.y0] -= stops;
                ndone += stops;
            }
        }
        for (int64_t y = tl.y0; y < tl.y1; ++y)
            for (int64_t x = tl.x0; x < tl.x1; ++x) {
                const int64_t p = (y - tl.y0) * stride + (x - tl.x0), pix = (tl.cam * d.H + y) * d.W + x;
                const T t = tr[p], a = T(1) - t;
                for (int64_t k = 0; k < D; ++k)
                    out[pix * D + k] = sc.acc[k * npad + p] + (bg ? t * bg[tl.cam * D + k] : T(0));
                alpha[pix] = a;
                depth_out[pix] = sc.acc[D * npad + p] / std::max(a, T(1e-10));
                t_final[pix] = t;
                last_out[pix] = last[p];
            }
    });
}

template <typename T>
void backward(const Dims& d, const T* means2d, const T* conics, const T* opac, const T* colors,
              const T* depths, const T* bg, const int32_t* radii, const int64_t* offsets, const int64_t* ids,
              const T* t_final, const int32_t* last_in, const T* depth_out, const T* v_out, const T* v_alpha,
              const T* v_depth, T* v_means2d, T* v_conics, T* v_opac, T* v_colors, T* v_depths, T* v_bg,
              int nthreads) {
    const T athr = T(1) / T(255), amax = T(0.999);
    const int64_t D = d.K, K = d.K + 1, CN = d.C * d.N, ntiles = d.C * d.tx * d.ty;
    nthreads = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, ntiles));
    // one zeroed gradient buffer per thread, summed into the outputs at the end
    const int64_t sz_m = 2 * CN, sz_c = 3 * CN, sz_o = d.N, sz_col = d.N * D, sz_d = CN, sz_bg = d.C * D;
    std::vector<std::vector<T>> bufs(nthreads, std::vector<T>(sz_m + sz_c + sz_o + sz_col + sz_d + sz_bg, T(0)));
    std::vector<Scratch<T>> scratch(nthreads);
    parallel_for(ntiles, nthreads, [&, athr, amax, D, K](int64_t ti, int tid) {
        T* gm = bufs[tid].data();
        T *gc = gm + sz_m, *go = gc + sz_c, *gcol = go + sz_o, *gdep = gcol + sz_col, *gbg = gdep + sz_d;
        const Tile tl = tile_of(d, offsets, ti);
        const int64_t tw = tl.x1 - tl.x0, th = tl.y1 - tl.y0, stride = (tw + L - 1) / L * L;
        const int64_t npad = th * stride;
        Scratch<T>& sc = scratch[tid];
        sc.tr.assign(npad, T(1));
        sc.pt.assign(npad, T(1));  // final transmittance
        sc.pr.assign(npad, T(0));  // dL/d(alpha_out) - <background, dL/d(colour)>
        sc.acc.assign(2 * npad * K, T(0));  // [K][npad] channels "behind" the current Gaussian, [K][npad] dL/dchannel
        sc.cv.resize(K);
        sc.last.assign(npad, -1);
        sc.rowlast.assign(th, -1);
        T* __restrict behind = sc.acc.data();
        T* __restrict vo = behind + npad * K;
        int32_t lastmax = -1;
        for (int64_t y = tl.y0; y < tl.y1; ++y)
            for (int64_t x = tl.x0; x < tl.x1; ++x) {
                const int64_t p = (y - tl.y0) * stride + (x - tl.x0), pix = (tl.cam * d.H + y) * d.W + x;
                const T tf = t_final[pix], a = T(1) - tf;
                sc.tr[p] = sc.pt[p] = tf;
                sc.last[p] = last_in[pix];
                sc.rowlast[y - tl.y0] = std::max(sc.rowlast[y - tl.y0], last_in[pix]);
                lastmax = std::max(lastmax, last_in[pix]);
                T bgdot = T(0);
                for (int64_t k = 0; k < D; ++k) {
                    const T v = v_out ? v_out[pix * D + k] : T(0);
                    vo[k * npad + p] = v;
                    if (bg) {
                        bgdot += bg[tl.cam * D + k] * v;
                        gbg[tl.cam * D + k] += tf * v;
                    }
                }
                // depth = blended z / max(alpha, 1e-10): its gradient goes to the blended z and to alpha
                T va_tot = v_alpha ? v_alpha[pix] : T(0);
                const T vd = v_depth ? v_depth[pix] : T(0);
                vo[D * npad + p] = vd / std::max(a, T(1e-10));
                if (a > T(1e-10)) va_tot -= vd * depth_out[pix] / a;
                sc.pr[p] = va_tot - bgdot;
            }
        T* __restrict tr = sc.tr.data();
        const T* __restrict tfin = sc.pt.data();
        const T* __restrict vrest = sc.pr.data();
        const int32_t* __restrict last = sc.last.data();
        T *mk = sc.mk, *A = sc.A, *OM = sc.OM, *TB = sc.TB, *va = sc.va;
        const T *sig = sc.sig, *gg = sc.g, *raw = sc.raw;
        T* col = sc.cv.data();
        Gauss<T> gs;
        // per-lane gradient accumulators of the current Gaussian ([K + 6][L]), summed across lanes once
        // per Gaussian rather than once per chunk
        std::vector<T> lacc((K + 6) * L), sums(K + 6);
        for (int32_t jpos = lastmax; jpos >= 0; --jpos) {
            const int64_t g = ids[tl.s + jpos], idx = tl.cam * d.N + g;
            if (!gs.load(tl, idx, means2d, conics, opac, g, radii)) continue;
            load_channels(colors, depths, D, g, idx, col);
            std::fill(lacc.begin(), lacc.end(), T(0));
            T* __restrict lcol = lacc.data();
            T* __restrict l_o = lcol + K * L;
            T* __restrict l_a = l_o + L;
            T* __restrict l_b = l_a + L;
            T* __restrict l_c = l_b + L;
            T* __restrict l_mx = l_c + L;
            T* __restrict l_my = l_mx + L;
            bool any = false;
            for (int64_t y = gs.ya; y < gs.yb; ++y) {
                if (jpos > sc.rowlast[y - tl.y0]) continue;
                const T dy = gs.my - (T(y) + T(0.5));
                for (int64_t cx = gs.ca; cx < gs.cb; cx += L) {
                    gs.chunk(T(tl.x0 + cx), T(y), sc.sig, sc.g, sc.raw);
                    const int64_t pb = (y - tl.y0) * stride + cx;
                    int32_t hits = 0;
#pragma omp simd reduction(+ : hits)
                    for (int i = 0; i < L; ++i) {
                        const int64_t p = pb + i;
                        const T a = raw[i] < amax ? raw[i] : amax;
                        const int32_t m = (jpos <= last[p]) & (sig[i] >= T(0)) & (a >= athr);
                        hits += m;
                        mk[i] = m ? T(1) : T(0);
                        A[i] = a;
                        OM[i] = T(1) - a;
                        TB[i] = tr[p] / (T(1) - a);  // transmittance in front of this Gaussian
                        va[i] = T(0);
                    }
                    if (hits == 0) continue;
                    any = true;
                    for (int64_t k = 0; k < K; ++k) {
                        const T ck = col[k];
                        T* __restrict bh = behind + k * npad + pb;
                        const T* __restrict vk = vo + k * npad + pb;
                        T* __restrict lc = lcol + k * L;
#pragma omp simd
                        for (int i = 0; i < L; ++i) {
                            va[i] += (ck - bh[i]) * vk[i];
                            lc[i] += mk[i] * A[i] * TB[i] * vk[i];
                            bh[i] = mk[i] != T(0) ? A[i] * ck + OM[i] * bh[i] : bh[i];
                        }
                    }
                    const T x0 = gs.mx - (T(tl.x0 + cx) + T(0.5));
#pragma omp simd
                    for (int i = 0; i < L; ++i) {
                        const int64_t p = pb + i;
                        const T v_a = (va[i] * TB[i] + tfin[p] / OM[i] * vrest[p]) * mk[i];
                        tr[p] = mk[i] != T(0) ? TB[i] : tr[p];
                        // above the clamp alpha is constant (gsplat: opac * vis <= 0.999)
                        const T gv = raw[i] <= amax ? gg[i] * v_a : T(0);
                        const T v_sigma = -gs.o * gv;
                        const T dx = x0 - T(i);
                        l_o[i] += gv;
                        l_a[i] += T(0.5) * dx * dx * v_sigma;
                        l_b[i] += dx * dy * v_sigma;
                        l_c[i] += T(0.5) * dy * dy * v_sigma;
                        l_mx[i] += (gs.a * dx + gs.b * dy) * v_sigma;
                        l_my[i] += (gs.b * dx + gs.c * dy) * v_sigma;
                    }
                }
            }
            if (!any) continue;
            for (int64_t r = 0; r < K + 6; ++r) {
                T acc = T(0);
                for (int i = 0; i < L; ++i) acc += lacc[r * L + i];
                sums[r] = acc;
            }
            for (int64_t k = 0; k < D; ++k) gcol[g * D + k] += sums[k];
            gdep[idx] += sums[D];
            go[g] += sums[K];
            gc[3 * idx] += sums[K + 1]; gc[3 * idx + 1] += sums[K + 2]; gc[3 * idx + 2] += sums[K + 3];
            gm[2 * idx] += sums[K + 4]; gm[2 * idx + 1] += sums[K + 5];
        }
    });
    T* outs[6] = {v_means2d, v_conics, v_opac, v_colors, v_depths, v_bg};
    const int64_t sizes[6] = {sz_m, sz_c, sz_o, sz_col, sz_d, sz_bg};
    int64_t off = 0;
    for (int q = 0; q < 6; ++q) {
        if (outs[q]) {
            T* __restrict o = outs[q];
            std::copy(bufs[0].begin() + off, bufs[0].begin() + off + sizes[q], o);
            for (size_t b = 1; b < bufs.size(); ++b) {
                const T* __restrict src = bufs[b].data() + off;
                for (int64_t i = 0; i < sizes[q]; ++i) o[i] += src[i];
            }
        }
        off += sizes[q];
    }
}

// ---- projection (the twin of projection.py; same formulas, same order of operations) ----

template <typename T>
struct ProjCam {
    T R[9], t[3], fx, fy, cx, cy, lxp, lxn, lyp, lyn;
    void load(const T* vm, const T* K, int64_t W, int64_t H) {
        for (int i = 0; i < 3; ++i) {
            for (int j = 0; j < 3; ++j) R[3 * i + j] = vm[4 * i + j];
            t[i] = vm[4 * i + 3];
        }
        fx = K[0]; fy = K[4]; cx = K[2]; cy = K[5];
        const T tanx = T(0.5) * T(W) / fx, tany = T(0.5) * T(H) / fy;
        lxp = (T(W) - cx) / fx + T(0.3) * tanx;
        lxn = cx / fx + T(0.3) * tanx;
        lyp = (T(H) - cy) / fy + T(0.3) * tany;
        lyn = cy / fy + T(0.3) * tany;
    }
};

template <typename T>
inline void rotmat(const T* q, T* R, T* qn, T& norm) {
    norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    const T w = q[0] / norm, x = q[1] / norm, y = q[2] / norm, z = q[3] / norm;
    qn[0] = w; qn[1] = x; qn[2] = y; qn[3] = z;
    R[0] = 1 - 2 * (y * y + z * z); R[1] = 2 * (x * y - w * z); R[2] = 2 * (x * z + w * y);
    R[3] = 2 * (x * y + w * z); R[4] = 1 - 2 * (x * x + z * z); R[5] = 2 * (y * z - w * x);
    R[6] = 2 * (x * z - w * y); R[7] = 2 * (y * z + w * x); R[8] = 1 - 2 * (x * x + y * y);
}

// Everything the forward computes for one (camera, Gaussian) and the backward needs again.
template <typename T>
struct ProjOne {
    T Rg[9], qn[4], qnorm, M[9], mc[3], tz, rz, ux, uy, cxl, cyl, row0[3], row1[3], u0[3], u1[3];
    T a, b, c, det, detc;
    bool in_depth;
    void run(const ProjCam<T>& k, const T* mean, const T* quat, const T* scale, T eps2d, T near_p, T far_p) {
        rotmat(quat, Rg, qn, qnorm);
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) M[3 * i + j] = Rg[3 * i + j] * scale[j];
        for (int i = 0; i < 3; ++i)
            mc[i] = k.R[3 * i] * mean[0] + k.R[3 * i + 1] * mean[1] + k.R[3 * i + 2] * mean[2] + k.t[i];
        in_depth = mc[2] > near_p && mc[2] < far_p;
        tz = in_depth ? mc[2] : T(1);
        rz = T(1) / tz;
        ux = mc[0] * rz; uy = mc[1] * rz;
        cxl = std::min(std::max(ux, -k.lxn), k.lxp);
        cyl = std::min(std::max(uy, -k.lyn), k.lyp);
        for (int i = 0; i < 3; ++i) {
            row0[i] = k.fx * rz * (k.R[i] - cxl * k.R[6 + i]);
            row1[i] = k.fy * rz * (k.R[3 + i] - cyl * k.R[6 + i]);
        }
        for (int j = 0; j < 3; ++j) {
            u0[j] = row0[0] * M[j] + row0[1] * M[3 + j] + row0[2] * M[6 + j];
            u1[j] = row1[0] * M[j] + row1[1] * M[3 + j] + row1[2] * M[6 + j];
        }
        a = u0[0] * u0[0] + u0[1] * u0[1] + u0[2] * u0[2] + eps2d;
        b = u0[0] * u1[0] + u0[1] * u1[1] + u0[2] * u1[2];
        c = u1[0] * u1[0] + u1[1] * u1[1] + u1[2] * u1[2] + eps2d;
        det = a * c - b * b;
        detc = std::max(det, T(1e-10));
    }
};

template <typename T>
void project_fwd(const int64_t* dims, const T* fp, const T* means, const T* quats, const T* scales,
                 const T* opac, const T* viewmats, const T* Ks, T* means2d, T* conics, T* depths,
                 int32_t* radii, int nthreads) {
    const int64_t C = dims[0], N = dims[1], W = dims[2], H = dims[3];
    const T eps2d = fp[0], near_p = fp[1], far_p = fp[2];
    const T athr = T(1) / T(255);
    std::vector<ProjCam<T>> cams(C);
    for (int64_t cam = 0; cam < C; ++cam) cams[cam].load(viewmats + 16 * cam, Ks + 9 * cam, W, H);
    const int64_t chunk = 2048;
    parallel_for((N + chunk - 1) / chunk, nthreads, [&](int64_t ci, int) {
        ProjOne<T> pr;
        for (int64_t g = ci * chunk; g < std::min(N, (ci + 1) * chunk); ++g)
            for (int64_t cam = 0; cam < C; ++cam) {
                const ProjCam<T>& k = cams[cam];
                pr.run(k, means + 3 * g, quats + 4 * g, scales + 3 * g, eps2d, near_p, far_p);
                const int64_t idx = cam * N + g;
                const T mx = k.fx * pr.ux + k.cx, my = k.fy * pr.uy + k.cy;
                means2d[2 * idx] = mx; means2d[2 * idx + 1] = my;
                conics[3 * idx] = pr.c / pr.detc;
                conics[3 * idx + 1] = -pr.b / pr.detc;
                conics[3 * idx + 2] = pr.a / pr.detc;
                depths[idx] = pr.mc[2];
                bool keep = pr.in_depth && pr.det > 0;
                T extend = T(3.33);
                if (opac) {
                    const T o = opac[g];
                    keep = keep && o >= athr;
                    extend = std::min(extend, std::sqrt(T(2) * std::log(std::max(o, athr) * T(255))));
                }
                const T rx = std::ceil(extend * std::sqrt(std::max(pr.a, T(0))));
                const T ry = std::ceil(extend * std::sqrt(std::max(pr.c, T(0))));
                keep = keep && mx + rx > 0 && mx - rx < T(W) && my + ry > 0 && my - ry < T(H) && rx > 0 && ry > 0;
                radii[2 * idx] = keep ? (int32_t)rx : 0;
                radii[2 * idx + 1] = keep ? (int32_t)ry : 0;
            }
    });
}

template <typename T>
void project_bwd(const int64_t* dims, const T* fp, const T* means, const T* quats, const T* scales,
                 const T* viewmats, const T* Ks, const T* v_means2d, const T* v_conics, const T* v_depths,
                 T* v_means, T* v_quats, T* v_scales, int nthreads) {
    const int64_t C = dims[0], N = dims[1], W = dims[2], H = dims[3];
    const T eps2d = fp[0], near_p = fp[1], far_p = fp[2];
    std::vector<ProjCam<T>> cams(C);
    for (int64_t cam = 0; cam < C; ++cam) cams[cam].load(viewmats + 16 * cam, Ks + 9 * cam, W, H);
    const int64_t chunk = 2048;
    parallel_for((N + chunk - 1) / chunk, nthreads, [&](int64_t ci, int) {
        ProjOne<T> pr;
        for (int64_t g = ci * chunk; g < std::min(N, (ci + 1) * chunk); ++g) {
            T vM[9] = {0}, vmean[3] = {0};
            T Rg[9], qn[4], qnorm = 1;
            for (int64_t cam = 0; cam < C; ++cam) {
                const ProjCam<T>& k = cams[cam];
                const int64_t idx = cam * N + g;
                pr.run(k, means + 3 * g, quats + 4 * g, scales + 3 * g, eps2d, near_p, far_p);
                for (int i = 0; i < 9; ++i) Rg[i] = pr.Rg[i];
                for (int i = 0; i < 4; ++i) qn[i] = pr.qn[i];
                qnorm = pr.qnorm;
                const T vA = v_conics[3 * idx], vB = v_conics[3 * idx + 1], vC = v_conics[3 * idx + 2];
                const T inv = T(1) / pr.detc;
                const T v_inv = vA * pr.c - vB * pr.b + vC * pr.a;
                const T v_det = pr.det > T(1e-10) ? -v_inv * inv * inv : T(0);
                const T v_a = vC * inv + v_det * pr.c;
                const T v_b = -vB * inv - T(2) * v_det * pr.b;
                const T v_c = vA * inv + v_det * pr.a;
                T vu0[3], vu1[3], vrow0[3], vrow1[3];
                for (int j = 0; j < 3; ++j) {
                    vu0[j] = T(2) * v_a * pr.u0[j] + v_b * pr.u1[j];
                    vu1[j] = T(2) * v_c * pr.u1[j] + v_b * pr.u0[j];
                }
                for (int i = 0; i < 3; ++i) {
                    vrow0[i] = vu0[0] * pr.M[3 * i] + vu0[1] * pr.M[3 * i + 1] + vu0[2] * pr.M[3 * i + 2];
                    vrow1[i] = vu1[0] * pr.M[3 * i] + vu1[1] * pr.M[3 * i + 1] + vu1[2] * pr.M[3 * i + 2];
                    for (int j = 0; j < 3; ++j) vM[3 * i + j] += vu0[j] * pr.row0[i] + vu1[j] * pr.row1[i];
                }
                T v_rz = 0, v_cxl = 0, v_cyl = 0;
                for (int i = 0; i < 3; ++i) {
                    v_rz += k.fx * (k.R[i] - pr.cxl * k.R[6 + i]) * vrow0[i];
                    v_rz += k.fy * (k.R[3 + i] - pr.cyl * k.R[6 + i]) * vrow1[i];
                    v_cxl -= k.fx * pr.rz * k.R[6 + i] * vrow0[i];
                    v_cyl -= k.fy * pr.rz * k.R[6 + i] * vrow1[i];
                }
                T v_ux = k.fx * v_means2d[2 * idx], v_uy = k.fy * v_means2d[2 * idx + 1];
                if (pr.ux >= -k.lxn && pr.ux <= k.lxp) v_ux += v_cxl;
                if (pr.uy >= -k.lyn && pr.uy <= k.lyp) v_uy += v_cyl;
                T v_mc[3];
                v_mc[0] = v_ux * pr.rz;
                v_mc[1] = v_uy * pr.rz;
                v_rz += v_ux * pr.mc[0] + v_uy * pr.mc[1];
                v_mc[2] = v_depths[idx] + (pr.in_depth ? -v_rz * pr.rz * pr.rz : T(0));
                for (int j = 0; j < 3; ++j)
                    vmean[j] += k.R[j] * v_mc[0] + k.R[3 + j] * v_mc[1] + k.R[6 + j] * v_mc[2];
            }
            const T* sc = scales + 3 * g;
            T vR[9];
            for (int j = 0; j < 3; ++j) {
                T vs = 0;
                for (int i = 0; i < 3; ++i) {
                    vs += vM[3 * i + j] * Rg[3 * i + j];
                    vR[3 * i + j] = vM[3 * i + j] * sc[j];
                }
                v_scales[3 * g + j] = vs;
            }
            const T w = qn[0], x = qn[1], y = qn[2], z = qn[3];
            T vq[4];
            vq[0] = 2 * (-z * vR[1] + y * vR[2] + z * vR[3] - x * vR[5] - y * vR[6] + x * vR[7]);
            vq[1] = 2 * (y * vR[1] + z * vR[2] + y * vR[3] - 2 * x * vR[4] - w * vR[5] + z * vR[6] + w * vR[7] - 2 * x * vR[8]);
            vq[2] = 2 * (-2 * y * vR[0] + x * vR[1] + w * vR[2] + x * vR[3] + z * vR[5] - w * vR[6] + z * vR[7] - 2 * y * vR[8]);
            vq[3] = 2 * (-2 * z * vR[0] - w * vR[1] + x * vR[2] + w * vR[3] - 2 * z * vR[4] + y * vR[5] + x * vR[6] + y * vR[7]);
            const T dot = vq[0] * w + vq[1] * x + vq[2] * y + vq[3] * z;
            for (int i = 0; i < 4; ++i) v_quats[4 * g + i] = (vq[i] - qn[i] * dot) / qnorm;
            for (int j = 0; j < 3; ++j) v_means[3 * g + j] = vmean[j];
        }
    });
}

inline Dims dims_of(const int64_t* v) { return Dims{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}; }

}  // namespace

#define CCL_EXPORT(T, SFX)                                                                             \
    extern "C" void ccl_splat_project_fwd_##SFX(const int64_t* dims, const T* fp, const T* means,         \
                                                const T* quats, const T* scales, const T* opac,        \
                                                const T* viewmats, const T* Ks, T* means2d, T* conics, \
                                                T* depths, int32_t* radii, int nthreads) {             \
        project_fwd<T>(dims, fp, means, quats, scales, opac, viewmats, Ks, means2d, conics, depths,   \
                       radii, nthreads);                                                               \
    }                                                                                                  \
    extern "C" void ccl_splat_project_bwd_##SFX(const int64_t* dims, const T* fp, const T* means,         \
                                                const T* quats, const T* scales, const T* viewmats,    \
                                                const T* Ks, const T* v_means2d, const T* v_conics,    \
                                                const T* v_depths, T* v_means, T* v_quats,             \
                                                T* v_scales, int nthreads) {                           \
        project_bwd<T>(dims, fp, means, quats, scales, viewmats, Ks, v_means2d, v_conics, v_depths,   \
                       v_means, v_quats, v_scales, nthreads);                                          \
    }                                                                                                  \
    extern "C" void ccl_splat_bin_count_##SFX(const int64_t* dims, const T* means2d,                   \
                                              const int32_t* radii, int64_t* counts) {                 \
        bin_count<T>(dims_of(dims), means2d, radii, counts);                                           \
    }                                                                                                  \
    extern "C" void ccl_splat_bin_fill_##SFX(const int64_t* dims, const T* means2d,                    \
                                             const int32_t* radii, const int64_t* order,               \
                                             const int64_t* offsets, int64_t* ids) {                   \
        bin_fill<T>(dims_of(dims), means2d, radii, order, offsets, ids);                               \
    }                                                                                                  \
    extern "C" void ccl_splat_fwd_##SFX(const int64_t* dims, const T* means2d, const T* conics,        \
                                        const T* opac, const T* colors, const T* depths, const T* bg,  \
                                        const int32_t* radii, const int64_t* offsets,                  \
                                        const int64_t* ids, T* out, T* alpha, T* depth_out,            \
                                        T* t_final, int32_t* last, int nthreads) {                     \
        forward<T>(dims_of(dims), means2d, conics, opac, colors, depths, bg, radii, offsets, ids, out, \
                   alpha, depth_out, t_final, last, nthreads);                                         \
    }                                                                                                  \
    extern "C" void ccl_splat_bwd_##SFX(const int64_t* dims, const T* means2d, const T* conics,        \
                                        const T* opac, const T* colors, const T* depths, const T* bg,  \
                                        const int32_t* radii, const int64_t* offsets,                  \
                                        const int64_t* ids, const T* t_final, const int32_t* last,     \
                                        const T* depth_out, const T* v_out, const T* v_alpha,          \
                                        const T* v_depth, T* v_means2d, T* v_conics, T* v_opac,        \
                                        T* v_colors, T* v_depths, T* v_bg, int nthreads) {             \
        backward<T>(dims_of(dims), means2d, conics, opac, colors, depths, bg, radii, offsets, ids,     \
                    t_final, last, depth_out, v_out, v_alpha, v_depth, v_means2d, v_conics, v_opac,    \
                    v_colors, v_depths, v_bg, nthreads);                                               \
    }

CCL_EXPORT(float, f32)
CCL_EXPORT(double, f64)
