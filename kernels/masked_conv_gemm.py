"""'gemm', the CPU default of the masked convolution: im2col over the unmasked taps only, then BLAS.

Why it is the default (bench/results_masked_conv.md has the measurements). At PixelCNN's MNIST
shapes only BLAS gets near the core's peak: the im2col matrix of the unmasked taps costs a fraction
of the matrix product, and doing half the taps at BLAS speed beats a dense convolution. The Numba
loops (masked_conv_numba.py) cannot block for registers the way BLAS does, so they are slower
there; they stay as the independent, BLAS-free implementation.

For an image, the column matrix has one row per (tap, channel) and one column per pixel:
  forward:      cols = [what tap 0 reads, ..., tap T-1, the centre tap]            (T*C_in + C_in rows)
                y[o-group] = W[o-group, :T*C_in + n_in] @ cols[:T*C_in + n_in]    (the centre's prefix)
  weight grad:  dW[o-group, :T*C_in + n_in] = sum over images of g[o-group] @ cols[:T*C_in + n_in]^T
  input grad:   for PixelCNN's geometry with C_in >= C_out, a convolution of g with the mirrored
                taps, the same way (im2col of g, the centre FIRST so that input group c uses the
                rows from o_start(c) on); otherwise cols = W^T g then col2im (adding each tap's rows
                into the view of the padded gradient it read: any stride and padding).
Each channel group's part is one contiguous block of rows: one product per group, never touching a
masked weight.

Threads. Each call makes one small BLAS product per image (or few images); left to BLAS's own
threads, each would be a parallel region, and on a busy machine a region waits for a descheduled
thread. So with several threads (`scratchgen.threads.threads()`, the count the policy gave BLAS),
BLAS is made single-threaded for the call and, from THREADS_MIN multiply-adds on, the images are
split over that many threads of our own: one fork-join per call, and the im2col copies run in
parallel too (NumPy releases the GIL in copies and products).
"""
import numpy as np

from scratchgen import threads as policy

from .masked_geometry import Geometry, centre_groups, centre_groups_t, crop, macs, pad, tap, unmasked_taps

GEMM_CHUNK = 1 << 20         # elements of the im2col buffer per chunk of images (4 MB in float32)
THREADS_MIN = 1 << 24        # multiply-adds; smaller calls stay on the calling thread

def _weight_matrix(w, mask_type, d):
    """(C_out, T*C_in + C_in): the unmasked taps' weights, tap-major, then the centre (its masked
    blocks are zero-filled here, not read from w, and never used)."""
    c_out, c_in, k, _ = w.shape
    p = k // 2
    taps = unmasked_taps(k)
    rows, cols = [a for a, _ in taps], [b for _, b in taps]
    wm = np.zeros((c_out, (len(taps) + 1) * c_in), w.dtype)
    wm[:, :len(taps) * c_in] = w[:, :, rows, cols].transpose(0, 2, 1).reshape(c_out, len(taps) * c_in)
    for o0, o1, n_in in centre_groups(c_out, c_in, mask_type, d):
        wm[o0:o1, len(taps) * c_in:len(taps) * c_in + n_in] = w[o0:o1, :n_in, p, p]
    return wm


def _chunk(n, rows, pixels):
    return max(1, min(n, GEMM_CHUNK // max(1, rows * pixels)))


def _im2col(cols, src, corners, geo):
    """cols[:, t] = what a tap at corner (r, c) of the padded src reads, for each corner
    (cols: (m, T, C, ho, wo))."""
    for t, (r, c) in enumerate(corners):
        cols[:, t] = tap(src, r, c, geo)

_BLAS = []       # threadpoolctl's controller of the BLAS libraries, made once (it scans the process)
_POOLS = {}      # worker count -> ThreadPoolExecutor


def _blas():
    if not _BLAS:
        from threadpoolctl import ThreadpoolController
        _BLAS.append(ThreadpoolController().select(user_api="blas"))
    return _BLAS[0]


def _over_images(n, work, run):
    """run(start, stop) for the images [start, stop), returning the list of results: on the calling
    thread with one thread in the policy, else with BLAS single-threaded for the call and, from
    THREADS_MIN multiply-adds on, the images split into one contiguous part per thread."""
    n_threads = policy.threads()
    if n_threads == 1:
        return [run(0, n)]
    workers = min(n_threads, n) if policy.parallel_pays(work, THREADS_MIN) else 1
    with _blas().limit(limits=1):
        if workers == 1:
            return [run(0, n)]
        if workers not in _POOLS:
            from concurrent.futures import ThreadPoolExecutor
            _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="masked_conv")
        bounds = [n * i // workers for i in range(workers + 1)]
        return list(_POOLS[workers].map(run, bounds[:-1], bounds[1:]))


def _pointwise(k, geo):
    """A 1x1 kernel at stride 1 without padding: its column matrix is x itself (the centre tap), so
    no padded copy and no im2col are needed."""
    return k == 1 and geo.sh == geo.sw == 1 and geo.ph == geo.pw == 0


def forward(x, w, bias, mask_type, d, geo):
    n, c_in = x.shape[:2]
    c_out, _, k, _ = w.shape
    p = k // 2
    taps = unmasked_taps(k)
    t_in = len(taps) * c_in
    groups = centre_groups(c_out, c_in, mask_type, d)
    corners = taps + [(p, p)] if max(n_in for _, _, n_in in groups) > 0 else taps
    wm = _weight_matrix(w, mask_type, d)
    pointwise = _pointwise(k, geo)
    xpad = None if pointwise else pad(x, geo)
    pixels = geo.ho * geo.wo
    y = np.empty((n, c_out, pixels), x.dtype)
    m = _chunk(n, t_in + c_in, pixels)

    def images(start, stop):
        cols = None if pointwise else np.empty((min(m, stop - start), len(taps) + 1, c_in, geo.ho, geo.wo), x.dtype)
        for s in range(start, stop, m):
            e = min(stop, s + m)
            if pointwise:
                flat = x[s:e].reshape(e - s, c_in, pixels)
            else:
                _im2col(cols[:e - s], xpad[s:e], corners, geo)
                flat = cols[:e - s].reshape(e - s, -1, pixels)
            for o0, o1, n_in in groups:
                np.matmul(wm[o0:o1, :t_in + n_in], flat[:, :t_in + n_in], out=y[s:e, o0:o1])
            if bias is not None:
                y[s:e] += bias[:, None]

    _over_images(n, macs(n, c_out, c_in, pixels, k), images)
    return y.reshape(n, c_out, geo.ho, geo.wo)


def weight_grad(x, g, k, mask_type, d, geo):
    n, c_in = x.shape[:2]
    c_out = g.shape[1]
    p = k // 2
    taps = unmasked_taps(k)
    t_in = len(taps) * c_in
    groups = centre_groups(c_out, c_in, mask_type, d)
    corners = taps + [(p, p)] if max(n_in for _, _, n_in in groups) > 0 else taps
    pixels = geo.ho * geo.wo
    if _pointwise(k, geo):   # dW = sum over images of g x^T: no columns to build
        x3, g3 = x.reshape(n, c_in, pixels), g.reshape(n, c_out, pixels)

        def products(start, stop):
            return np.matmul(g3[start:stop], x3[start:stop].transpose(0, 2, 1)).sum(axis=0)

        full = sum(_over_images(n, macs(n, c_out, c_in, pixels, k), products))
        gw = np.zeros((c_out, c_in, 1, 1), x.dtype)
        for o0, o1, n_in in groups:
            gw[o0:o1, :n_in, 0, 0] = full[o0:o1, :n_in]
        return gw
    xpad = pad(x, geo)
    m = _chunk(n, t_in + c_in, pixels)

    def images(start, stop):
        gm = np.zeros((c_out, t_in + c_in), x.dtype)
        # Channel-major columns (taps, C_in, images, pixels), so that a chunk is ONE product summing
        # over its images and pixels together.
        cols = np.empty((len(taps) + 1, c_in, min(m, stop - start), geo.ho, geo.wo), x.dtype)
        for s in range(start, stop, m):
            e = min(stop, s + m)
            part = cols[:, :, :e - s]
            _im2col(part.transpose(2, 0, 1, 3, 4), xpad[s:e], corners, geo)
            flat = part.reshape((len(taps) + 1) * c_in, (e - s) * pixels)
            g2 = g[s:e].transpose(1, 0, 2, 3).reshape(c_out, (e - s) * pixels)  # a copy unless one image
            for o0, o1, n_in in groups:
                gm[o0:o1, :t_in + n_in] += g2[o0:o1] @ flat[:t_in + n_in].T
        return gm

    gm = sum(_over_images(n, macs(n, c_out, c_in, pixels, k), images))
    gw = np.zeros((c_out, c_in, k, k), x.dtype)
    per_tap = gm[:, :t_in].reshape(c_out, len(taps), c_in).transpose(0, 2, 1)      # (C_out, C_in, T)
    gw[:, :, [a for a, _ in taps], [b for _, b in taps]] = per_tap
    for o0, o1, n_in in groups:
        gw[o0:o1, :n_in, p, p] = gm[o0:o1, t_in:t_in + n_in]
    return gw


def input_grad(g, w, mask_type, d, geo):
    """The adjoint of the forward, in whichever form moves less memory: for PixelCNN's geometry with
    C_in >= C_out, im2col of g (a copy of g's columns); else col2im (an add of C_in-channel columns:
    the first layer, C_in = 1; and every stride and padding)."""
    if _pointwise(w.shape[-1], geo):
        return _input_grad_pointwise(g, w, mask_type, d)
    if geo.pixelcnn and w.shape[1] >= w.shape[0]:
        return _input_grad_im2col(g, w, mask_type, d)
    return _input_grad_col2im(g, w, mask_type, d, geo)


def _input_grad_pointwise(g, w, mask_type, d):
    """A 1x1 kernel: dx = W^T g per image, by the centre's channel blocks."""
    n, c_out, h, wd = g.shape
    c_in = w.shape[1]
    g3 = g.reshape(n, c_out, h * wd)
    gx = np.zeros((n, c_in, h * wd), g.dtype)
    w2 = w[:, :, 0, 0]

    def images(start, stop):
        for c0, c1, o_start in centre_groups_t(c_out, c_in, mask_type, d):
            if o_start < c_out:
                np.matmul(w2[o_start:, c0:c1].T, g3[start:stop, o_start:], out=gx[start:stop, c0:c1])

    _over_images(n, macs(n, c_out, c_in, h * wd, 1), images)
    return gx.reshape(n, c_in, h, wd)


def _input_grad_im2col(g, w, mask_type, d):
    """Stride 1, padding p: dx is a convolution of g with the mirrored taps: dx[i, j] = sum over taps
    of w[a, b]^T g[i + p - a, j + p - b]. Columns: [g itself (the centre), g shifted by each mirrored
    tap]; input group c then takes the contiguous rows [o_start(c), end): the output channels that
    see it at the centre, then every tap."""
    n, c_out, h, wd = g.shape
    _, c_in, k, _ = w.shape
    p = k // 2
    taps = unmasked_taps(k)
    wm = _weight_matrix(w, mask_type, d).reshape(c_out, len(taps) + 1, c_in)
    wt = np.concatenate([wm[:, -1:], wm[:, :-1]], axis=1).transpose(2, 1, 0).reshape(c_in, -1)  # centre first
    gpad = np.zeros((n, c_out, h + p, wd + 2 * p), g.dtype)   # g padded below and either side
    gpad[:, :, :h, p:p + wd] = g
    mirrored = Geometry(h, wd, h, wd, 1, 1, 0, 0, h + p, wd + 2 * p, k)   # windows over gpad
    corners = [(p - a, 2 * p - b) for a, b in taps]
    gx = np.empty((n, c_in, h * wd), g.dtype)
    m = _chunk(n, (len(taps) + 1) * c_out, h * wd)

    def images(start, stop):
        cols = np.empty((min(m, stop - start), len(taps) + 1, c_out, h, wd), g.dtype)
        for s in range(start, stop, m):
            e = min(stop, s + m)
            cols[:e - s, 0] = g[s:e]
            _im2col(cols[:e - s, 1:], gpad[s:e], corners, mirrored)
            flat = cols[:e - s].reshape(e - s, -1, h * wd)
            for c0, c1, o_start in centre_groups_t(c_out, c_in, mask_type, d):
                np.matmul(wt[c0:c1, o_start:], flat[:, o_start:], out=gx[s:e, c0:c1])

    _over_images(n, macs(n, c_out, c_in, h * wd, k), images)
    return gx.reshape(n, c_in, h, wd)


def _input_grad_col2im(g, w, mask_type, d, geo):
    """Columns = W^T g (one product per image), then col2im: each tap's rows are added into the view
    of the padded gradient the tap read in the forward, as in the reference."""
    n, c_out = g.shape[:2]
    _, c_in, k, _ = w.shape
    p = k // 2
    taps = unmasked_taps(k)
    t_in = len(taps) * c_in
    wm = _weight_matrix(w, mask_type, d)
    pixels = geo.ho * geo.wo
    gpad = np.zeros((n, c_in, geo.hp, geo.wp), g.dtype)
    g3 = g.reshape(n, c_out, pixels)
    m = _chunk(n, t_in + c_in, pixels)

    def images(start, stop):
        cols = np.empty((min(m, stop - start), len(taps) + 1, c_in, pixels), g.dtype)
        for s in range(start, stop, m):
            e = min(stop, s + m)
            part = cols[:e - s]
            np.matmul(wm[:, :t_in].T, g3[s:e], out=part[:, :-1].reshape(e - s, t_in, pixels))
            for t, (a, b) in enumerate(taps):
                view = tap(gpad[s:e], a, b, geo)
                view += part[:, t].reshape(e - s, c_in, geo.ho, geo.wo)
            for c0, c1, o_start in centre_groups_t(c_out, c_in, mask_type, d):
                if o_start < c_out:                        # the output channels that see [c0, c1)
                    np.matmul(wm[o_start:, t_in + c0:t_in + c1].T, g3[s:e, o_start:], out=part[:, -1, c0:c1])
                    view = tap(gpad[s:e, c0:c1], p, p, geo)
                    view += part[:, -1, c0:c1].reshape(e - s, c1 - c0, geo.ho, geo.wo)

    _over_images(n, macs(n, c_out, c_in, pixels, k), images)
    return np.ascontiguousarray(crop(gpad, geo))

