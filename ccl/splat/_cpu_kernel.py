"""C++ tile compositor for the CPU (forward and analytic backward), built once with the system compiler.

One small translation unit with no torch headers, compiled by `g++ -O3` into a shared library and
called through ctypes on tensors' data pointers: it builds in about a second (a torch C++ extension
takes a minute, which CI pays on every fresh cache). The library is cached under
``$CCL_CACHE_DIR/kernels`` (default ``~/.cache/ccl/kernels``), keyed by a hash of the source and the
flags, and written atomically (temporary name + rename) so parallel jobs can build it at once.
Threads: plain std::thread over tiles (no OpenMP runtime to clash with torch's), as many as
`torch.get_num_threads()`.

Rules of one Gaussian-pixel pair, as gsplat's RasterizeToPixels3DGS{Fwd,Bwd}.cu: sigma from the conic,
alpha = min(0.999, opacity * exp(-sigma)), skipped below 1/255 or for sigma < 0, a pixel stops
(exclusively) when its transmittance would fall to 1e-4 or below. The backward recomputes each
pixel's front-to-back pass and keeps the transmittance of every contributor (rather than dividing
back from the final one as gsplat does), then walks back to front.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

CXXFLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-math-errno", "-ffp-contract=fast"]
# Built on the machine that runs it, so it may use that CPU's vector units; the cache key includes the
# CPU's identity so a home directory shared between different machines keeps one build per CPU kind.
NATIVE_FLAGS = ["-march=native"]

SOURCE = r"""
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

// exp(x) for x <= 0 in float: range reduction to 2^n * e^r, |r| <= ln2/2, degree-6 Taylor (rel. err
// ~2e-7, like CUDA's __expf that gsplat uses); branch-free so the per-row loops vectorise.
template <typename T>
inline T exp_nonpos(T x) { return std::exp(x); }
template <>
inline float exp_nonpos<float>(float x) {
    x = std::max(x, -87.0f);
    x = std::min(x, 0.0f);
    const float t = x * 1.44269504088896341f;
    const int32_t n = (int32_t)(t - 0.5f);  // truncation toward zero = ceil(t - 0.5) for t <= 0
    const float r = (t - (float)n) * 0.693147180559945309f;
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    const int32_t bits = (n + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(float));
    return p * scale;
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

// One Gaussian as seen by one tile: its parameters and the pixel box (box of the tile clipped to the
// Gaussian's projected box; outside it alpha < 1/255, see projection.py).
template <typename T>
struct Gauss {
    T mx, my, a, b, c, o;
    int64_t xa, xb, ya, yb;
    bool load(const Dims& d, const Tile& tl, int64_t idx, const T* means2d, const T* conics,
              const T* opac, int64_t g, const int32_t* radii) {
        mx = means2d[2 * idx]; my = means2d[2 * idx + 1];
        a = conics[3 * idx]; b = conics[3 * idx + 1]; c = conics[3 * idx + 2];
        o = opac[g];
        const int32_t rx = radii[2 * idx], ry = radii[2 * idx + 1];
        xa = std::max<int64_t>(tl.x0, (int64_t)std::floor(mx - rx) - 1);
        xb = std::min<int64_t>(tl.x1, (int64_t)std::ceil(mx + rx) + 1);
        ya = std::max<int64_t>(tl.y0, (int64_t)std::floor(my - ry) - 1);
        yb = std::min<int64_t>(tl.y1, (int64_t)std::ceil(my + ry) + 1);
        return xb > xa && yb > ya;
    }
    // sigma and the unclamped alpha (opacity * exp(-sigma)) along one row of the box
    void row(int64_t y, T* sig, T* g, T* raw) const {
        const T dy = my - (T(y) + T(0.5));
        const int64_t n = xb - xa;
        for (int64_t i = 0; i < n; ++i) {
            const T dx = mx - (T(xa + i) + T(0.5));
            const T s = T(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy;
            sig[i] = s;
            g[i] = exp_nonpos<T>(-s);
            raw[i] = o * g[i];
        }
    }
};

template <typename T>
struct Scratch {
    std::vector<T> tr, acc, sig, g, raw;
    std::vector<int32_t> last, active;  // active: pixels of each tile row not done yet
    std::vector<uint8_t> done;
};

template <typename T>
void forward(const Dims& d, const T* means2d, const T* conics, const T* opac, const T* colors,
             const T* bg, const int32_t* radii, const int64_t* offsets, const int64_t* ids, T* out,
             T* alpha, T* t_final, int32_t* last_out, int nthreads) {
    const T athr = T(1) / T(255), amax = T(0.999), tmin = T(1e-4);
    const int64_t K = d.K;
    std::vector<Scratch<T>> scratch(std::max(nthreads, 1));
    parallel_for(d.C * d.tx * d.ty, nthreads, [&](int64_t ti, int tid) {
        const Tile tl = tile_of(d, offsets, ti);
        const int64_t tw = tl.x1 - tl.x0, npix = tw * (tl.y1 - tl.y0);
        Scratch<T>& sc = scratch[tid];
        sc.tr.assign(npix, T(1));
        sc.acc.assign(npix * K, T(0));
        sc.last.assign(npix, -1);
        sc.done.assign(npix, 0);
        sc.active.assign(tl.y1 - tl.y0, (int32_t)tw);
        sc.sig.resize(d.ts + 2); sc.g.resize(d.ts + 2); sc.raw.resize(d.ts + 2);
        int64_t ndone = 0;
        Gauss<T> gs;
        for (int64_t j = tl.s; j < tl.e && ndone < npix; ++j) {
            const int64_t g = ids[j], idx = tl.cam * d.N + g;
            if (!gs.load(d, tl, idx, means2d, conics, opac, g, radii)) continue;
            const T* col = colors + idx * K;
            for (int64_t y = gs.ya; y < gs.yb; ++y) {
                if (sc.active[y - tl.y0] == 0) continue;
                gs.row(y, sc.sig.data(), sc.g.data(), sc.raw.data());
                for (int64_t x = gs.xa; x < gs.xb; ++x) {
                    const int64_t p = (y - tl.y0) * tw + (x - tl.x0), i = x - gs.xa;
                    if (sc.done[p]) continue;
                    const T a = std::min(amax, sc.raw[i]);
                    if (sc.sig[i] < T(0) || a < athr) continue;
                    const T tr = sc.tr[p], next_t = tr * (T(1) - a);
                    if (next_t <= tmin) {  // this pixel is done; the Gaussian is not blended (exclusive)
                        sc.done[p] = 1;
                        --sc.active[y - tl.y0];
                        ++ndone;
                        continue;
                    }
                    const T w = a * tr;
                    T* acc = sc.acc.data() + p * K;
                    for (int64_t k = 0; k < K; ++k) acc[k] += col[k] * w;
                    sc.tr[p] = next_t;
                    sc.last[p] = (int32_t)(j - tl.s);
                }
            }
        }
        for (int64_t y = tl.y0; y < tl.y1; ++y)
            for (int64_t x = tl.x0; x < tl.x1; ++x) {
                const int64_t p = (y - tl.y0) * tw + (x - tl.x0), pix = (tl.cam * d.H + y) * d.W + x;
                const T tr = sc.tr[p];
                for (int64_t k = 0; k < K; ++k)
                    out[pix * K + k] = sc.acc[p * K + k] + (bg ? tr * bg[tl.cam * K + k] : T(0));
                alpha[pix] = T(1) - tr;
                t_final[pix] = tr;
                last_out[pix] = sc.last[p];
            }
    });
}

template <typename T>
void backward(const Dims& d, const T* means2d, const T* conics, const T* opac, const T* colors,
              const T* bg, const int32_t* radii, const int64_t* offsets, const int64_t* ids,
              const T* t_final, const int32_t* last_in, const T* v_out, const T* v_alpha, T* v_means2d,
              T* v_conics, T* v_opac, T* v_colors, T* v_bg, int nthreads) {
    const T athr = T(1) / T(255), amax = T(0.999);
    const int64_t K = d.K, CN = d.C * d.N, ntiles = d.C * d.tx * d.ty;
    nthreads = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, ntiles));
    // thread 0 accumulates straight into the outputs, the others into zeroed buffers summed at the end
    const int64_t sz_m = 2 * CN, sz_c = 3 * CN, sz_o = d.N, sz_col = CN * K, sz_bg = d.C * K;
    std::vector<std::vector<T>> extra(nthreads - 1);
    for (auto& e : extra) e.assign(sz_m + sz_c + sz_o + sz_col + sz_bg, T(0));
    std::vector<Scratch<T>> scratch(nthreads);
    std::vector<std::vector<T>> pixbufs(nthreads);
    parallel_for(ntiles, nthreads, [&](int64_t ti, int tid) {
        T *gm = v_means2d, *gc = v_conics, *go = v_opac, *gcol = v_colors, *gbg = v_bg;
        if (tid > 0) {
            gm = extra[tid - 1].data(); gc = gm + sz_m; go = gc + sz_c; gcol = go + sz_o; gbg = gcol + sz_col;
        }
        const Tile tl = tile_of(d, offsets, ti);
        const int64_t tw = tl.x1 - tl.x0, npix = tw * (tl.y1 - tl.y0);
        Scratch<T>& sc = scratch[tid];
        sc.tr.resize(npix);
        sc.acc.assign(npix * K, T(0));  // the colour "behind" each pixel's current Gaussian
        sc.last.resize(npix);
        sc.sig.resize(d.ts + 2); sc.g.resize(d.ts + 2); sc.raw.resize(d.ts + 2);
        std::vector<T>& pb = pixbufs[tid];
        pb.resize(2 * npix);
        T* tfin = pb.data();
        T* vrest = tfin + npix;  // dL/d(alpha_out) - <background, dL/d(colour)>, per pixel
        int32_t lastmax = -1;
        for (int64_t y = tl.y0; y < tl.y1; ++y)
            for (int64_t x = tl.x0; x < tl.x1; ++x) {
                const int64_t p = (y - tl.y0) * tw + (x - tl.x0), pix = (tl.cam * d.H + y) * d.W + x;
                sc.tr[p] = tfin[p] = t_final[pix];
                sc.last[p] = last_in[pix];
                lastmax = std::max(lastmax, last_in[pix]);
                T bgdot = T(0);
                if (bg) {
                    const T* vo = v_out + pix * K;
                    for (int64_t k = 0; k < K; ++k) {
                        bgdot += bg[tl.cam * K + k] * vo[k];
                        gbg[tl.cam * K + k] += tfin[p] * vo[k];
                    }
                }
                vrest[p] = (v_alpha ? v_alpha[pix] : T(0)) - bgdot;
            }
        Gauss<T> gs;
        std::vector<T> lcol(K);
        for (int64_t jj = lastmax; jj >= 0; --jj) {
            const int64_t g = ids[tl.s + jj], idx = tl.cam * d.N + g;
            if (!gs.load(d, tl, idx, means2d, conics, opac, g, radii)) continue;
            const T* col = colors + idx * K;
            std::fill(lcol.begin(), lcol.end(), T(0));
            T l_o = 0, l_a = 0, l_b = 0, l_c = 0, l_mx = 0, l_my = 0;
            bool hit = false;
            for (int64_t y = gs.ya; y < gs.yb; ++y) {
                gs.row(y, sc.sig.data(), sc.g.data(), sc.raw.data());
                const T dy = gs.my - (T(y) + T(0.5));
                for (int64_t x = gs.xa; x < gs.xb; ++x) {
                    const int64_t p = (y - tl.y0) * tw + (x - tl.x0), i = x - gs.xa;
                    if (jj > sc.last[p]) continue;
                    const T raw = sc.raw[i], a = std::min(amax, raw);
                    if (sc.sig[i] < T(0) || a < athr) continue;
                    hit = true;
                    const int64_t pix = (tl.cam * d.H + y) * d.W + x;
                    const T* vo = v_out + pix * K;
                    T* behind = sc.acc.data() + p * K;
                    const T om = T(1) - a, tb = sc.tr[p] / om, w = a * tb;
                    T v_a = T(0);
                    for (int64_t k = 0; k < K; ++k) {
                        lcol[k] += w * vo[k];
                        v_a += (col[k] - behind[k]) * vo[k];
                        behind[k] = a * col[k] + om * behind[k];
                    }
                    v_a = v_a * tb + tfin[p] / om * vrest[p];
                    sc.tr[p] = tb;
                    if (raw <= amax) {  // above the clamp alpha is constant (gsplat: opac * vis <= 0.999)
                        const T gg = sc.g[i], dx = gs.mx - (T(x) + T(0.5));
                        const T v_sigma = -gs.o * gg * v_a;
                        l_o += gg * v_a;
                        l_a += T(0.5) * dx * dx * v_sigma;
                        l_b += dx * dy * v_sigma;
                        l_c += T(0.5) * dy * dy * v_sigma;
                        l_mx += (gs.a * dx + gs.b * dy) * v_sigma;
                        l_my += (gs.b * dx + gs.c * dy) * v_sigma;
                    }
                }
            }
            if (!hit) continue;
            for (int64_t k = 0; k < K; ++k) gcol[idx * K + k] += lcol[k];
            go[g] += l_o;
            gc[3 * idx] += l_a; gc[3 * idx + 1] += l_b; gc[3 * idx + 2] += l_c;
            gm[2 * idx] += l_mx; gm[2 * idx + 1] += l_my;
        }
    });
    for (const auto& e : extra) {
        const T* p = e.data();
        for (int64_t i = 0; i < sz_m; ++i) v_means2d[i] += p[i];
        p += sz_m;
        for (int64_t i = 0; i < sz_c; ++i) v_conics[i] += p[i];
        p += sz_c;
        for (int64_t i = 0; i < sz_o; ++i) v_opac[i] += p[i];
        p += sz_o;
        for (int64_t i = 0; i < sz_col; ++i) v_colors[i] += p[i];
        p += sz_col;
        if (v_bg)
            for (int64_t i = 0; i < sz_bg; ++i) v_bg[i] += p[i];
    }
}

inline Dims dims_of(const int64_t* v) { return Dims{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}; }

}  // namespace

#define CCL_EXPORT(T, SFX)                                                                             \
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
                                        const T* opac, const T* colors, const T* bg,                   \
                                        const int32_t* radii, const int64_t* offsets,                  \
                                        const int64_t* ids, T* out, T* alpha, T* t_final,              \
                                        int32_t* last, int nthreads) {                                 \
        forward<T>(dims_of(dims), means2d, conics, opac, colors, bg, radii, offsets, ids, out, alpha, \
                   t_final, last, nthreads);                                                           \
    }                                                                                                  \
    extern "C" void ccl_splat_bwd_##SFX(const int64_t* dims, const T* means2d, const T* conics,        \
                                        const T* opac, const T* colors, const T* bg,                   \
                                        const int32_t* radii, const int64_t* offsets,                  \
                                        const int64_t* ids, const T* t_final, const int32_t* last,     \
                                        const T* v_out, const T* v_alpha, T* v_means2d, T* v_conics,   \
                                        T* v_opac, T* v_colors, T* v_bg, int nthreads) {               \
        backward<T>(dims_of(dims), means2d, conics, opac, colors, bg, radii, offsets, ids, t_final,   \
                    last, v_out, v_alpha, v_means2d, v_conics, v_opac, v_colors, v_bg, nthreads);      \
    }

CCL_EXPORT(float, f32)
CCL_EXPORT(double, f64)
"""

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_failed: str | None = None


def cache_dir() -> Path:
    root = os.environ.get("CCL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ccl")
    return Path(root) / "kernels"


def _cpu_id() -> str:
    """Machine type plus the CPU model and feature flags (what -march=native depends on)."""
    info = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith(("model name", "flags", "Features"))]
        info = "\n".join(dict.fromkeys(lines))
    except OSError:
        pass
    return platform.machine() + "\n" + info


def _build(target: Path) -> None:
    cxx = os.environ.get("CXX", "g++")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "splat_tiles.cpp"
        src.write_text(SOURCE)
        out = Path(tmp) / target.name
        proc = subprocess.run(
            [cxx, *CXXFLAGS, *NATIVE_FLAGS, str(src), "-o", str(out)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{cxx} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        os.replace(out, target)


def load_kernel() -> ctypes.CDLL | None:
    """The compiled kernel, building it on first use; None (with one warning) if it cannot be built.

    Set CCL_SPLAT_KERNEL=0 to skip it and use the PyTorch tile path.
    """
    global _lib, _failed
    if os.environ.get("CCL_SPLAT_KERNEL", "1") == "0":
        return None
    with _lock:
        if _lib is not None or _failed is not None:
            return _lib
        key = hashlib.sha256("\n".join([SOURCE, *CXXFLAGS, *NATIVE_FLAGS, _cpu_id()]).encode()).hexdigest()[
            :16
        ]
        target = cache_dir() / f"ccl_splat_tiles_{key}.so"
        try:
            if not target.exists():
                log.info("building the CPU rasterizer kernel into %s", target)
                _build(target)
            lib = ctypes.CDLL(str(target))
            for suffix in ("f32", "f64"):
                for op in ("bin_count", "bin_fill", "fwd", "bwd"):
                    getattr(lib, f"ccl_splat_{op}_{suffix}").restype = None
            _lib = lib
        except (OSError, RuntimeError) as e:
            _failed = str(e)
            log.warning(
                "ccl.splat: the C++ CPU rasterizer could not be built or loaded (%s); using the slower "
                "PyTorch tile path. Install g++ (build-essential) to get the fast one.",
                str(e).splitlines()[0] if str(e) else type(e).__name__,
            )
        return _lib
