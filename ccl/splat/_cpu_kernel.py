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
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

CXXFLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-math-errno"]

SOURCE = r"""
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
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
            int64_t i = next.fetch_add(1);
            if (i >= n) break;
            fn(i, tid);
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < nthreads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
}

// One tile's Gaussians, gathered contiguously (structure of arrays) in depth order.
template <typename T>
struct TileGauss {
    std::vector<T> buf;
    T *mx, *my, *ca, *cb, *cc, *op;
    void load(const Dims& d, int64_t cam, const int64_t* ids, int64_t m, const T* means2d,
              const T* conics, const T* opac) {
        buf.resize(6 * std::max<int64_t>(m, 1));
        mx = buf.data(); my = mx + m; ca = my + m; cb = ca + m; cc = cb + m; op = cc + m;
        for (int64_t j = 0; j < m; ++j) {
            const int64_t g = ids[j], idx = cam * d.N + g;
            mx[j] = means2d[2 * idx]; my[j] = means2d[2 * idx + 1];
            ca[j] = conics[3 * idx]; cb[j] = conics[3 * idx + 1]; cc[j] = conics[3 * idx + 2];
            op[j] = opac[g];
        }
    }
};

template <typename T>
void forward(const Dims& d, const T* means2d, const T* conics, const T* opac, const T* colors,
             const T* bg, const int64_t* offsets, const int64_t* ids, T* out, T* alpha, int nthreads) {
    const T athr = T(1) / T(255), amax = T(0.999), tmin = T(1e-4);
    const int64_t tpc = d.tx * d.ty;
    std::vector<TileGauss<T>> tiles(std::max(nthreads, 1));
    std::vector<std::vector<T>> accs(std::max(nthreads, 1), std::vector<T>(d.K));
    parallel_for(d.C * tpc, nthreads, [&](int64_t ti, int tid) {
        const int64_t cam = ti / tpc, t = ti % tpc;
        const int64_t x0 = (t % d.tx) * d.ts, y0 = (t / d.tx) * d.ts;
        const int64_t x1 = std::min(x0 + d.ts, d.W), y1 = std::min(y0 + d.ts, d.H);
        const int64_t s = offsets[ti], m = offsets[ti + 1] - s;
        TileGauss<T>& tg = tiles[tid];
        tg.load(d, cam, ids + s, m, means2d, conics, opac);
        T* acc = accs[tid].data();
        for (int64_t y = y0; y < y1; ++y) {
            for (int64_t x = x0; x < x1; ++x) {
                const T px = T(x) + T(0.5), py = T(y) + T(0.5);
                T tr = T(1);
                std::fill(acc, acc + d.K, T(0));
                for (int64_t j = 0; j < m; ++j) {
                    const T dx = tg.mx[j] - px, dy = tg.my[j] - py;
                    const T sigma = T(0.5) * (tg.ca[j] * dx * dx + tg.cc[j] * dy * dy) + tg.cb[j] * dx * dy;
                    const T a = std::min(amax, tg.op[j] * std::exp(-sigma));
                    if (sigma < T(0) || a < athr) continue;
                    const T next_t = tr * (T(1) - a);
                    if (next_t <= tmin) break;
                    const T w = a * tr;
                    const T* c = colors + (cam * d.N + ids[s + j]) * d.K;
                    for (int64_t k = 0; k < d.K; ++k) acc[k] += c[k] * w;
                    tr = next_t;
                }
                const int64_t pix = (cam * d.H + y) * d.W + x;
                for (int64_t k = 0; k < d.K; ++k) out[pix * d.K + k] = acc[k] + (bg ? tr * bg[cam * d.K + k] : T(0));
                alpha[pix] = T(1) - tr;
            }
        }
    });
}

template <typename T>
struct Contrib {
    int64_t j;
    T a, t_before, g, dx, dy;
    bool clamped;
};

template <typename T>
void backward(const Dims& d, const T* means2d, const T* conics, const T* opac, const T* colors,
              const T* bg, const int64_t* offsets, const int64_t* ids, const T* v_out, const T* v_alpha,
              T* v_means2d, T* v_conics, T* v_opac, T* v_colors, T* v_bg, int nthreads) {
    const T athr = T(1) / T(255), amax = T(0.999), tmin = T(1e-4);
    const int64_t tpc = d.tx * d.ty, CN = d.C * d.N;
    nthreads = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, d.C * tpc));
    // thread 0 accumulates straight into the outputs, the others into zeroed buffers summed at the end
    const int64_t sz_m = 2 * CN, sz_c = 3 * CN, sz_o = d.N, sz_col = CN * d.K, sz_bg = d.C * d.K;
    const int64_t stride = sz_m + sz_c + sz_o + sz_col + sz_bg;
    std::vector<std::vector<T>> extra(nthreads - 1);
    for (auto& e : extra) e.assign(stride, T(0));
    std::vector<TileGauss<T>> tiles(nthreads);
    std::vector<std::vector<Contrib<T>>> stacks(nthreads);
    std::vector<std::vector<T>> bufs(nthreads, std::vector<T>(d.K));
    parallel_for(d.C * tpc, nthreads, [&](int64_t ti, int tid) {
        T *gm = v_means2d, *gc = v_conics, *go = v_opac, *gcol = v_colors, *gbg = v_bg;
        if (tid > 0) {
            gm = extra[tid - 1].data(); gc = gm + sz_m; go = gc + sz_c; gcol = go + sz_o; gbg = gcol + sz_col;
        }
        const int64_t cam = ti / tpc, t = ti % tpc;
        const int64_t x0 = (t % d.tx) * d.ts, y0 = (t / d.tx) * d.ts;
        const int64_t x1 = std::min(x0 + d.ts, d.W), y1 = std::min(y0 + d.ts, d.H);
        const int64_t s = offsets[ti], m = offsets[ti + 1] - s;
        TileGauss<T>& tg = tiles[tid];
        tg.load(d, cam, ids + s, m, means2d, conics, opac);
        std::vector<Contrib<T>>& st = stacks[tid];
        T* buffer = bufs[tid].data();
        for (int64_t y = y0; y < y1; ++y) {
            for (int64_t x = x0; x < x1; ++x) {
                const T px = T(x) + T(0.5), py = T(y) + T(0.5);
                st.clear();
                T tr = T(1);
                for (int64_t j = 0; j < m; ++j) {
                    const T dx = tg.mx[j] - px, dy = tg.my[j] - py;
                    const T sigma = T(0.5) * (tg.ca[j] * dx * dx + tg.cc[j] * dy * dy) + tg.cb[j] * dx * dy;
                    const T g = std::exp(-sigma);
                    const T raw = tg.op[j] * g;
                    const T a = std::min(amax, raw);
                    if (sigma < T(0) || a < athr) continue;
                    const T next_t = tr * (T(1) - a);
                    if (next_t <= tmin) break;
                    st.push_back({j, a, tr, g, dx, dy, raw > amax});
                    tr = next_t;
                }
                const T t_final = tr;
                const int64_t pix = (cam * d.H + y) * d.W + x;
                const T* vo = v_out + pix * d.K;
                const T va = v_alpha ? v_alpha[pix] : T(0);
                T bgdot = T(0);
                if (bg) {
                    for (int64_t k = 0; k < d.K; ++k) {
                        bgdot += bg[cam * d.K + k] * vo[k];
                        gbg[cam * d.K + k] += t_final * vo[k];
                    }
                }
                std::fill(buffer, buffer + d.K, T(0));
                for (int64_t i = (int64_t)st.size() - 1; i >= 0; --i) {
                    const Contrib<T>& q = st[i];
                    const int64_t g_id = ids[s + q.j], idx = cam * d.N + g_id;
                    const T* c = colors + idx * d.K;
                    T* vc = gcol + idx * d.K;
                    const T w = q.a * q.t_before;
                    T v_a = T(0);
                    for (int64_t k = 0; k < d.K; ++k) {
                        vc[k] += w * vo[k];
                        v_a += (c[k] - buffer[k]) * vo[k];
                        buffer[k] = q.a * c[k] + (T(1) - q.a) * buffer[k];
                    }
                    v_a = v_a * q.t_before + t_final / (T(1) - q.a) * (va - bgdot);
                    if (!q.clamped) {
                        const T o = tg.op[q.j];
                        go[g_id] += q.g * v_a;
                        const T v_sigma = -o * q.g * v_a;
                        gc[3 * idx] += T(0.5) * q.dx * q.dx * v_sigma;
                        gc[3 * idx + 1] += q.dx * q.dy * v_sigma;
                        gc[3 * idx + 2] += T(0.5) * q.dy * q.dy * v_sigma;
                        gm[2 * idx] += (tg.ca[q.j] * q.dx + tg.cb[q.j] * q.dy) * v_sigma;
                        gm[2 * idx + 1] += (tg.cb[q.j] * q.dx + tg.cc[q.j] * q.dy) * v_sigma;
                    }
                }
            }
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
        if (v_bg) for (int64_t i = 0; i < sz_bg; ++i) v_bg[i] += p[i];
    }
}

}  // namespace

#define CCL_EXPORT(T, SUFFIX)                                                                           \
    extern "C" void ccl_splat_fwd_##SUFFIX(const int64_t* dims, const T* means2d, const T* conics,    \
                                           const T* opac, const T* colors, const T* bg,               \
                                           const int64_t* offsets, const int64_t* ids, T* out,        \
                                           T* alpha, int nthreads) {                                  \
        Dims d{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7]};               \
        forward<T>(d, means2d, conics, opac, colors, bg, offsets, ids, out, alpha, nthreads);         \
    }                                                                                                 \
    extern "C" void ccl_splat_bwd_##SUFFIX(const int64_t* dims, const T* means2d, const T* conics,    \
                                           const T* opac, const T* colors, const T* bg,               \
                                           const int64_t* offsets, const int64_t* ids,                \
                                           const T* v_out, const T* v_alpha, T* v_means2d,            \
                                           T* v_conics, T* v_opac, T* v_colors, T* v_bg,              \
                                           int nthreads) {                                            \
        Dims d{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7]};               \
        backward<T>(d, means2d, conics, opac, colors, bg, offsets, ids, v_out, v_alpha, v_means2d,    \
                    v_conics, v_opac, v_colors, v_bg, nthreads);                                      \
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


def _build(target: Path) -> None:
    cxx = os.environ.get("CXX", "g++")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "splat_tiles.cpp"
        src.write_text(SOURCE)
        out = Path(tmp) / target.name
        proc = subprocess.run([cxx, *CXXFLAGS, str(src), "-o", str(out)], capture_output=True, text=True)
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
        key = hashlib.sha256((SOURCE + " ".join(CXXFLAGS)).encode()).hexdigest()[:16]
        target = cache_dir() / f"ccl_splat_tiles_{key}.so"
        try:
            if not target.exists():
                log.info("building the CPU rasterizer kernel into %s", target)
                _build(target)
            lib = ctypes.CDLL(str(target))
            for suffix in ("f32", "f64"):
                getattr(lib, f"ccl_splat_fwd_{suffix}").restype = None
                getattr(lib, f"ccl_splat_bwd_{suffix}").restype = None
            _lib = lib
        except (OSError, RuntimeError) as e:
            _failed = str(e)
            log.warning(
                "ccl.splat: the C++ CPU rasterizer could not be built or loaded (%s); using the slower "
                "PyTorch tile path. Install g++ (build-essential) to get the fast one.",
                str(e).splitlines()[0] if str(e) else type(e).__name__,
            )
        return _lib
