// 2-D pooling, NHWC: x[N,H,W,C] -> y[N,OH,OW,C]; window PHxPW, stride SHxSW. The output cell
// (oh, ow) covers input rows oh*SH - padT + [0, PH) and cols ow*SW - padL + [0, PW); the host
// computes padT/padL/OH/OW with TF's "same"/"valid" rules. As in TF, padding cells are not
// elements: max ignores them and the average divides by the in-image count. SIMD runs along C
// (4 channels per vector); the C % 4 tail channels run the same logic one at a time.
//
// A window with no in-image cell (impossible with TF's padding rules) gives y = 0, argmax = -1,
// and its gradient is dropped.

function lo0(v: i32): i32 {
  return v < 0 ? 0 : v;
}

/**
 * Max pool. argmax[N,OH,OW,C] (i32, skipped when 0) records the flat index into x of the chosen
 * element. Ties: the first maximum in window order (rows, then columns) wins, as in TF. NaN
 * never wins a comparison, so NaN inputs are ignored (as TF.js's CPU pool does); a window of only
 * NaN/-inf gives -inf and argmax at its first cell.
 */
export function maxpool2d_fwd_f32(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  PH: i32,
  PW: i32,
  SH: i32,
  SW: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  x: usize,
  y: usize,
  argmax: usize,
): void {
  const C4 = C & ~3;
  const lanes = i32x4(0, 1, 2, 3);
  const negInf = f32x4.splat(-Infinity);
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      const hs = oh * SH - padT;
      const h0 = lo0(hs);
      const h1 = min(hs + PH, H);
      for (let ow = 0; ow < OW; ow++) {
        const ws = ow * SW - padL;
        const w0 = lo0(ws);
        const w1 = min(ws + PW, W);
        const out = ((n * OH + oh) * OW + ow) * C;
        if (h0 >= h1 || w0 >= w1) {
          for (let c = 0; c < C; c++) {
            store<f32>(y + ((<usize>(out + c)) << 2), 0);
            if (argmax != 0) store<i32>(argmax + ((<usize>(out + c)) << 2), -1);
          }
          continue;
        }
        const first = ((n * H + h0) * W + w0) * C;
        if (argmax == 0) {
          // Inference: pmax(best, v) is `best < v ? v : best`, the same choice as below.
          for (let c = 0; c < C4; c += 4) {
            let best = negInf;
            for (let ih = h0; ih < h1; ih++) {
              let p = x + (<usize>((n * H + ih) * W + w0) * C + c) * 4;
              for (let iw = w0; iw < w1; iw++, p += (<usize>C) << 2) {
                best = f32x4.pmax(best, v128.load(p));
              }
            }
            v128.store(y + ((<usize>(out + c)) << 2), best);
          }
        } else {
          for (let c = 0; c < C4; c += 4) {
            let best = negInf;
            let arg = i32x4.add(i32x4.splat(first + c), lanes);
            for (let ih = h0; ih < h1; ih++) {
              let idx = ((n * H + ih) * W + w0) * C + c;
              for (let iw = w0; iw < w1; iw++, idx += C) {
                const v = v128.load(x + ((<usize>idx) << 2));
                const gt = f32x4.gt(v, best);
                best = v128.bitselect(v, best, gt);
                arg = v128.bitselect(i32x4.add(i32x4.splat(idx), lanes), arg, gt);
              }
            }
            v128.store(y + ((<usize>(out + c)) << 2), best);
            v128.store(argmax + ((<usize>(out + c)) << 2), arg);
          }
        }
        for (let c = C4; c < C; c++) {
          let best: f32 = -Infinity;
          let arg = first + c;
          for (let ih = h0; ih < h1; ih++) {
            for (let iw = w0; iw < w1; iw++) {
              const idx = ((n * H + ih) * W + iw) * C + c;
              const v = load<f32>(x + ((<usize>idx) << 2));
              if (v > best) {
                best = v;
                arg = idx;
              }
            }
          }
          store<f32>(y + ((<usize>(out + c)) << 2), best);
          if (argmax != 0) store<i32>(argmax + ((<usize>(out + c)) << 2), arg);
        }
      }
    }
  }
}

/** dx[N,H,W,C] = 0, then dy[i] added at argmax[i] (overlapping windows accumulate). */
export function maxpool2d_bwd_f32(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  OH: i32,
  OW: i32,
  dy: usize,
  argmax: usize,
  dx: usize,
): void {
  const nx = N * H * W * C;
  const zero = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= nx; i += 4) v128.store(dx + ((<usize>i) << 2), zero);
  for (; i < nx; i++) store<f32>(dx + ((<usize>i) << 2), 0);
  // A scatter: lanes of one vector may hit the same cell, so it stays scalar.
  const ny = N * OH * OW * C;
  for (let j = 0; j < ny; j++) {
    const a = load<i32>(argmax + ((<usize>j) << 2));
    if (a >= 0) {
      const p = dx + ((<usize>a) << 2);
      store<f32>(p, load<f32>(p) + load<f32>(dy + ((<usize>j) << 2)));
    }
  }
}

export function maxpool2d_fwd_f32_scalar(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  PH: i32,
  PW: i32,
  SH: i32,
  SW: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  x: usize,
  y: usize,
  argmax: usize,
): void {
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        for (let c = 0; c < C; c++) {
          let best: f32 = -Infinity;
          let arg = -1;
          for (let kh = 0; kh < PH; kh++) {
            const ih = oh * SH - padT + kh;
            if (ih < 0 || ih >= H) continue;
            for (let kw = 0; kw < PW; kw++) {
              const iw = ow * SW - padL + kw;
              if (iw < 0 || iw >= W) continue;
              const idx = ((n * H + ih) * W + iw) * C + c;
              const v = load<f32>(x + ((<usize>idx) << 2));
              if (arg < 0) arg = idx; // an all-NaN/-inf window points at its first cell
              if (v > best) {
                best = v;
                arg = idx;
              }
            }
          }
          const o = (<usize>(((n * OH + oh) * OW + ow) * C + c)) << 2;
          store<f32>(y + o, arg < 0 ? 0 : best);
          if (argmax != 0) store<i32>(argmax + o, arg);
        }
      }
    }
  }
}

export function maxpool2d_bwd_f32_scalar(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  OH: i32,
  OW: i32,
  dy: usize,
  argmax: usize,
  dx: usize,
): void {
  const nx = N * H * W * C;
  for (let i = 0; i < nx; i++) store<f32>(dx + ((<usize>i) << 2), 0);
  const ny = N * OH * OW * C;
  for (let j = 0; j < ny; j++) {
    const a = load<i32>(argmax + ((<usize>j) << 2));
    if (a >= 0) {
      const p = dx + ((<usize>a) << 2);
      store<f32>(p, load<f32>(p) + load<f32>(dy + ((<usize>j) << 2)));
    }
  }
}

/** Average pool: the mean over the window's in-image cells (padding excluded, as TF does). */
export function avgpool2d_fwd_f32(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  PH: i32,
  PW: i32,
  SH: i32,
  SW: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  x: usize,
  y: usize,
): void {
  const C4 = C & ~3;
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      const hs = oh * SH - padT;
      const h0 = lo0(hs);
      const h1 = min(hs + PH, H);
      for (let ow = 0; ow < OW; ow++) {
        const ws = ow * SW - padL;
        const w0 = lo0(ws);
        const w1 = min(ws + PW, W);
        const out = ((n * OH + oh) * OW + ow) * C;
        const count = (h1 - h0) * (w1 - w0);
        if (h0 >= h1 || w0 >= w1) {
          for (let c = 0; c < C; c++) store<f32>(y + ((<usize>(out + c)) << 2), 0);
          continue;
        }
        const cv = f32x4.splat(<f32>count);
        for (let c = 0; c < C4; c += 4) {
          let s = f32x4.splat(0);
          for (let ih = h0; ih < h1; ih++) {
            let p = x + (<usize>((n * H + ih) * W + w0) * C + c) * 4;
            for (let iw = w0; iw < w1; iw++, p += (<usize>C) << 2) s = f32x4.add(s, v128.load(p));
          }
          v128.store(y + ((<usize>(out + c)) << 2), f32x4.div(s, cv));
        }
        for (let c = C4; c < C; c++) {
          let s: f32 = 0;
          for (let ih = h0; ih < h1; ih++) {
            for (let iw = w0; iw < w1; iw++) {
              s += load<f32>(x + ((<usize>(((n * H + ih) * W + iw) * C + c)) << 2));
            }
          }
          store<f32>(y + ((<usize>(out + c)) << 2), s / <f32>count);
        }
      }
    }
  }
}

/**
 * dx[N,H,W,C] = 0, then each dy/count added over its window's in-image cells. This is the exact
 * gradient of the forward above (TF's AvgPoolGrad); note TF.js's CPU avgPool gradient divides by
 * PH*PW even where the forward excluded padding, so it disagrees with its own forward at "same".
 */
export function avgpool2d_bwd_f32(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  PH: i32,
  PW: i32,
  SH: i32,
  SW: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  dy: usize,
  dx: usize,
): void {
  const nx = N * H * W * C;
  const zero = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= nx; i += 4) v128.store(dx + ((<usize>i) << 2), zero);
  for (; i < nx; i++) store<f32>(dx + ((<usize>i) << 2), 0);
  const C4 = C & ~3;
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      const hs = oh * SH - padT;
      const h0 = lo0(hs);
      const h1 = min(hs + PH, H);
      for (let ow = 0; ow < OW; ow++) {
        const ws = ow * SW - padL;
        const w0 = lo0(ws);
        const w1 = min(ws + PW, W);
        if (h0 >= h1 || w0 >= w1) continue;
        const count = <f32>((h1 - h0) * (w1 - w0));
        const out = ((n * OH + oh) * OW + ow) * C;
        const cv = f32x4.splat(count);
        for (let c = 0; c < C4; c += 4) {
          const g = f32x4.div(v128.load(dy + ((<usize>(out + c)) << 2)), cv);
          for (let ih = h0; ih < h1; ih++) {
            let p = dx + (<usize>((n * H + ih) * W + w0) * C + c) * 4;
            for (let iw = w0; iw < w1; iw++, p += (<usize>C) << 2) {
              v128.store(p, f32x4.add(v128.load(p), g));
            }
          }
        }
        for (let c = C4; c < C; c++) {
          const g = load<f32>(dy + ((<usize>(out + c)) << 2)) / count;
          for (let ih = h0; ih < h1; ih++) {
            for (let iw = w0; iw < w1; iw++) {
              const p = dx + ((<usize>(((n * H + ih) * W + iw) * C + c)) << 2);
              store<f32>(p, load<f32>(p) + g);
            }
          }
        }
      }
    }
  }
}

export function avgpool2d_fwd_f32_scalar(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  PH: i32,
  PW: i32,
  SH: i32,
  SW: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  x: usize,
  y: usize,
): void {
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        for (let c = 0; c < C; c++) {
          let s: f64 = 0;
          let count = 0;
          for (let kh = 0; kh < PH; kh++) {
            const ih = oh * SH - padT + kh;
            if (ih < 0 || ih >= H) continue;
            for (let kw = 0; kw < PW; kw++) {
              const iw = ow * SW - padL + kw;
              if (iw < 0 || iw >= W) continue;
              s += <f64>load<f32>(x + ((<usize>(((n * H + ih) * W + iw) * C + c)) << 2));
              count++;
            }
          }
          const o = (<usize>(((n * OH + oh) * OW + ow) * C + c)) << 2;
          store<f32>(y + o, count == 0 ? 0 : <f32>(s / <f64>count));
        }
      }
    }
  }
}

export function avgpool2d_bwd_f32_scalar(
  N: i32,
  H: i32,
  W: i32,
  C: i32,
  PH: i32,
  PW: i32,
  SH: i32,
  SW: i32,
  padT: i32,
  padL: i32,
  OH: i32,
  OW: i32,
  dy: usize,
  dx: usize,
): void {
  const nx = N * H * W * C;
  for (let i = 0; i < nx; i++) store<f32>(dx + ((<usize>i) << 2), 0);
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        let count = 0;
        for (let kh = 0; kh < PH; kh++) {
          const ih = oh * SH - padT + kh;
          for (let kw = 0; kw < PW; kw++) {
            const iw = ow * SW - padL + kw;
            if (ih >= 0 && ih < H && iw >= 0 && iw < W) count++;
          }
        }
        if (count == 0) continue;
        for (let c = 0; c < C; c++) {
          const g =
            load<f32>(dy + ((<usize>(((n * OH + oh) * OW + ow) * C + c)) << 2)) / <f32>count;
          for (let kh = 0; kh < PH; kh++) {
            const ih = oh * SH - padT + kh;
            if (ih < 0 || ih >= H) continue;
            for (let kw = 0; kw < PW; kw++) {
              const iw = ow * SW - padL + kw;
              if (iw < 0 || iw >= W) continue;
              const p = dx + ((<usize>(((n * H + ih) * W + iw) * C + c)) << 2);
              store<f32>(p, load<f32>(p) + g);
            }
          }
        }
      }
    }
  }
}

/** x[N,HW,C] -> y[N,C], the mean over HW (GlobalAveragePooling2D). y must not alias x. */
export function global_avgpool2d_fwd_f32(N: i32, HW: i32, C: i32, x: usize, y: usize): void {
  const C4 = C & ~3;
  const hv = f32x4.splat(<f32>HW);
  const zero = f32x4.splat(0);
  for (let n = 0; n < N; n++) {
    // y's row is the accumulator, so x is read in memory order whatever C is.
    const yr = y + ((<usize>(n * C)) << 2);
    let c = 0;
    for (; c < C4; c += 4) v128.store(yr + ((<usize>c) << 2), zero);
    for (; c < C; c++) store<f32>(yr + ((<usize>c) << 2), 0);
    for (let k = 0; k < HW; k++) {
      const xr = x + ((<usize>((n * HW + k) * C)) << 2);
      c = 0;
      for (; c < C4; c += 4) {
        const o = (<usize>c) << 2;
        v128.store(yr + o, f32x4.add(v128.load(yr + o), v128.load(xr + o)));
      }
      for (; c < C; c++) {
        const o = (<usize>c) << 2;
        store<f32>(yr + o, load<f32>(yr + o) + load<f32>(xr + o));
      }
    }
    c = 0;
    for (; c < C4; c += 4) {
      const o = (<usize>c) << 2;
      v128.store(yr + o, f32x4.div(v128.load(yr + o), hv));
    }
    for (; c < C; c++) {
      const o = (<usize>c) << 2;
      store<f32>(yr + o, load<f32>(yr + o) / <f32>HW);
    }
  }
}

/** dx[N,HW,C] = dy[N,C]/HW broadcast over HW. */
export function global_avgpool2d_bwd_f32(N: i32, HW: i32, C: i32, dy: usize, dx: usize): void {
  const C4 = C & ~3;
  const hv = f32x4.splat(<f32>HW);
  for (let n = 0; n < N; n++) {
    const dr = dy + ((<usize>(n * C)) << 2);
    for (let k = 0; k < HW; k++) {
      const xr = dx + ((<usize>((n * HW + k) * C)) << 2);
      let c = 0;
      for (; c < C4; c += 4) {
        const o = (<usize>c) << 2;
        v128.store(xr + o, f32x4.div(v128.load(dr + o), hv));
      }
      for (; c < C; c++) {
        const o = (<usize>c) << 2;
        store<f32>(xr + o, load<f32>(dr + o) / <f32>HW);
      }
    }
  }
}

export function global_avgpool2d_fwd_f32_scalar(N: i32, HW: i32, C: i32, x: usize, y: usize): void {
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      let s: f64 = 0;
      for (let k = 0; k < HW; k++) s += <f64>load<f32>(x + ((<usize>((n * HW + k) * C + c)) << 2));
      store<f32>(y + ((<usize>(n * C + c)) << 2), <f32>(s / <f64>HW));
    }
  }
}

export function global_avgpool2d_bwd_f32_scalar(
  N: i32,
  HW: i32,
  C: i32,
  dy: usize,
  dx: usize,
): void {
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const g = load<f32>(dy + ((<usize>(n * C + c)) << 2)) / <f32>HW;
      for (let k = 0; k < HW; k++) store<f32>(dx + ((<usize>((n * HW + k) * C + c)) << 2), g);
    }
  }
}
