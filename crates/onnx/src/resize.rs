//! `Resize` (opsets 10 to 19) and `Upsample` (opsets 7 to 9), `DepthToSpace`, `SpaceToDepth`.
//!
//! A resize has public coefficients: it is separable, so each resized axis becomes a
//! `Gather` of constant indices (nearest) or, for `linear` and `cubic` (with `antialias`,
//! `exclude_outside`, and `tf_crop_and_resize`'s `roi` and `extrapolation_value`), a fixed
//! number of gathers ("taps"), each weighted by public constant coefficients (`MulConst`)
//! and added. The coefficients follow the onnx reference implementation
//! (`onnx.reference.ops.op_resize`, which the backend node tests' outputs come from).

use cryptflow_frontend::{Arith, Lowering, NodeContext};
use cryptflow_ir::hlil::Op;
use cryptflow_tensor::Tensor;

use crate::attrs::Cx;
use crate::import::{Importer, Value};
use crate::OnnxError;

type R<T> = Result<T, OnnxError>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
    TfCropAndResize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Opsets before 11 (Upsample, Resize-10): truncation when upsampling, ceiling when
    /// downsampling (onnxruntime's behaviour).
    Legacy,
}

/// The input coordinate of output coordinate `i` of a nearest resize (onnxruntime's float
/// arithmetic).
fn original_coordinate(mode: Coord, i: usize, scale: f32, out_len: usize, in_len: usize, roi: (f64, f64)) -> f32 {
    let x = i as f32;
    match mode {
        Coord::HalfPixel => (x + 0.5) / scale - 0.5,
        Coord::HalfPixelSymmetric => {
            let adjustment = out_len as f32 / (scale * in_len as f32);
            let center = in_len as f32 / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (x + 0.5) / scale - 0.5
        }
        Coord::PytorchHalfPixel => {
            if out_len > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        Coord::AlignCorners => {
            if out_len == 1 {
                0.0
            } else {
                x * (in_len as f32 - 1.0) / (out_len as f32 - 1.0)
            }
        }
        Coord::Asymmetric => x / scale,
        Coord::TfHalfPixelForNn => (x + 0.5) / scale,
        Coord::TfCropAndResize => reference_coordinate(mode, i, scale as f64, out_len, in_len, roi).0 as f32,
    }
}

fn nearest_index(mode: Nearest, x: f32, downsampling: bool, in_len: usize) -> usize {
    let i = match mode {
        Nearest::RoundPreferFloor => {
            if x == x.trunc() + 0.5 {
                x.floor()
            } else {
                x.round()
            }
        }
        Nearest::RoundPreferCeil => x.round(),
        Nearest::Floor => x.floor(),
        Nearest::Ceil => x.ceil(),
        Nearest::Legacy => {
            if downsampling {
                x.ceil()
            } else {
                x.trunc()
            }
        }
    };
    (i.max(0.0) as usize).min(in_len - 1)
}

/// An interpolation kernel of `linear` and `cubic` resizes.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kernel {
    Linear,
    /// `cubic_coeff_a`.
    Cubic(f64),
}

/// How one axis is resized: output position `i` is `sum_j weights[i][j] * x[indices[i][j]]`
/// (the same number of taps for every position), or `extrapolation_value` where
/// `extrapolated[i]` (`tf_crop_and_resize` outside the input; the weights are zero there).
struct Taps {
    indices: Vec<Vec<usize>>,
    weights: Vec<Vec<f64>>,
    extrapolated: Vec<bool>,
}

impl Taps {
    /// Whether the axis is left as it is.
    fn is_identity(&self, in_len: usize) -> bool {
        self.indices.len() == in_len
            && !self.extrapolated.iter().any(|&e| e)
            && self.indices.iter().zip(&self.weights).enumerate().all(|(i, (ix, w))| {
                ix.iter().zip(w).all(|(&k, &v)| if k == i { v == 1.0 } else { v == 0.0 })
                    && ix.iter().zip(w).filter(|&(&k, _)| k == i).count() == 1
            })
    }
}

/// The input coordinate of output coordinate `y` and whether it lies outside the input
/// (`tf_crop_and_resize` only): `_compute_x_ori` of the onnx reference, in f64, with the
/// unrounded output extent `scale * in_len`.
fn reference_coordinate(mode: Coord, y: usize, scale: f64, out_len: usize, in_len: usize, roi: (f64, f64)) -> (f64, bool) {
    let y = y as f64;
    let (input_width, output_width) = (in_len as f64, scale * in_len as f64);
    let x = match mode {
        Coord::AlignCorners => {
            if output_width == 1.0 {
                0.0
            } else {
                y * (input_width - 1.0) / (output_width - 1.0)
            }
        }
        Coord::Asymmetric => y / scale,
        Coord::TfCropAndResize => {
            let x = if output_width == 1.0 {
                (roi.1 - roi.0) * (input_width - 1.0) / 2.0
            } else {
                y * (roi.1 - roi.0) * (input_width - 1.0) / (output_width - 1.0)
            };
            let x = x + roi.0 * (input_width - 1.0);
            return (x, x < 0.0 || x > input_width - 1.0);
        }
        Coord::PytorchHalfPixel => {
            if output_width == 1.0 {
                -0.5
            } else {
                (y + 0.5) / scale - 0.5
            }
        }
        Coord::HalfPixel => (y + 0.5) / scale - 0.5,
        Coord::HalfPixelSymmetric => {
            let adjustment = out_len as f64 / output_width;
            let center = input_width / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (y + 0.5) / scale - 0.5
        }
        Coord::TfHalfPixelForNn => (y + 0.5) / scale,
    };
    (x, false)
}

/// The coefficients of the taps around a coordinate whose distance to the tap on its left is
/// `ratio` (in `(0, 1]`): `_linear_coeffs`, `_cubic_coeffs` and their antialiased forms.
fn coefficients(kernel: Kernel, antialias: bool, ratio: f64, scale: f64) -> Vec<f64> {
    match (kernel, antialias) {
        (Kernel::Linear, false) => vec![1.0 - ratio, ratio],
        (Kernel::Cubic(a), false) => {
            let (r, q) = (ratio, 1.0 - ratio);
            vec![
                ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                ((a + 2.0) * q - (a + 3.0)) * q * q + 1.0,
                ((a * (q + 1.0) - 5.0 * a) * (q + 1.0) + 8.0 * a) * (q + 1.0) - 4.0 * a,
            ]
        }
        (Kernel::Linear, true) => {
            let scale = scale.min(1.0);
            let start = (-1.0 / scale).floor() as i64 + 1;
            let footprint = 2 - 2 * start;
            let c: Vec<f64> = (start..start + footprint).map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0)).collect();
            let sum: f64 = c.iter().sum();
            c.into_iter().map(|v| v / sum).collect()
        }
        (Kernel::Cubic(a), true) => {
            let scale = scale.min(1.0);
            let coeff = |x: f64| {
                let x = x.abs();
                let (x2, x3) = (x * x, x * x * x);
                if x <= 1.0 {
                    (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
                } else if x < 2.0 {
                    a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
                } else {
                    0.0
                }
            };
            let start = (-2.0 / scale).floor() as i64 + 1;
            let end = 2 - start;
            let c: Vec<f64> = (start..end).map(|i| coeff(scale * (i as f64 - ratio))).collect();
            let sum: f64 = c.iter().sum();
            c.into_iter().map(|v| v / sum).collect()
        }
    }
}

/// The taps of a `linear` or `cubic` resize of one axis (`_interpolate_1d_along_axis` of the
/// onnx reference): the input is edge-padded, so indices are clamped.
#[allow(clippy::too_many_arguments)]
fn interpolation_taps(kernel: Kernel, antialias: bool, exclude_outside: bool, mode: Coord, scale: f64, out_len: usize, in_len: usize, roi: (f64, f64)) -> Taps {
    let mut taps = Taps { indices: Vec::new(), weights: Vec::new(), extrapolated: Vec::new() };
    for i in 0..out_len {
        let (x, outside) = reference_coordinate(mode, i, scale, out_len, in_len, roi);
        let floor = x.floor();
        let ratio = if x == floor { 1.0 } else { x - floor };
        let mut w = coefficients(kernel, antialias, ratio, scale);
        let n = w.len() as i64;
        let pad = (n + 1) / 2;
        let padded = x + pad as f64;
        let p = padded.floor();
        let frac = padded - p;
        let offset = if n % 2 == 0 {
            if frac == 0.0 {
                -(n / 2)
            } else {
                -(n / 2) + 1
            }
        } else {
            let base = -((n - 1) / 2);
            if frac <= 0.5 {
                base
            } else {
                base + 1
            }
        };
        let start = p as i64 + offset - pad;
        let idx: Vec<i64> = (start..start + n).collect();
        if exclude_outside {
            for (v, &k) in w.iter_mut().zip(&idx) {
                if k < 0 || k >= in_len as i64 {
                    *v = 0.0;
                }
            }
            let sum: f64 = w.iter().sum();
            let sum = if sum == 0.0 { 1.0 } else { sum };
            w.iter_mut().for_each(|v| *v /= sum);
        }
        if outside {
            w.iter_mut().for_each(|v| *v = 0.0);
        }
        taps.indices.push(idx.iter().map(|&k| k.clamp(0, in_len as i64 - 1) as usize).collect());
        taps.weights.push(w);
        taps.extrapolated.push(outside);
    }
    taps
}

impl Importer<'_> {
    /// `Resize` and `Upsample`.
    pub(crate) fn resize(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        let r = s.len();
        if r == 0 {
            return Err(cx.shape_err("resize of a scalar"));
        }
        let upsample = cx.op == "Upsample";
        let legacy = upsample || cx.opset < 11;
        let mode = cx.string("mode")?.unwrap_or_else(|| "nearest".into());
        let kernel = match mode.as_str() {
            "nearest" => None,
            "linear" | "bilinear" => Some(Kernel::Linear),
            "cubic" if !legacy => Some(Kernel::Cubic(cx.float_or("cubic_coeff_a", -0.75)? as f64)),
            other => return Err(cx.invalid(format!("unknown mode `{other}`"))),
        };
        // Scales or sizes, for `axes` (opset 18) or every axis.
        let axes: Vec<usize> = match (cx.opset >= 18 && !upsample).then(|| cx.ints("axes")).transpose()?.flatten() {
            Some(a) => {
                let mut seen = vec![false; r];
                let mut out = Vec::new();
                for &v in &a {
                    let v = cx.axis(v, r, "axis")?;
                    if std::mem::replace(&mut seen[v], true) {
                        return Err(cx.invalid(format!("axes {a:?} repeat an axis")));
                    }
                    out.push(v);
                }
                out
            }
            None => (0..r).collect(),
        };
        let (scales, sizes): (Option<Vec<f32>>, Option<Vec<i64>>) = if upsample && cx.opset < 9 {
            (Some(cx.floats("scales")?.ok_or_else(|| cx.invalid("missing attribute `scales`"))?), None)
        } else if legacy {
            (Some(self.const_input(cx, 1, "scales")?.to_f32()), None)
        } else {
            let scales = self.opt_const_input(cx, 2, "scales")?.filter(|c| !c.is_empty()).map(|c| c.to_f32());
            let sizes = self.opt_ints_input(cx, 3, "sizes")?.filter(|v| !v.is_empty());
            (scales, sizes)
        };
        // The scales in f64 as the onnx reference has them (from float32 scales, or sizes / extents).
        let mut scale = vec![1.0f64; r];
        let mut out = s.clone();
        match (scales, sizes) {
            (Some(_), Some(_)) => return Err(cx.invalid("both scales and sizes are given")),
            (None, None) => return Err(cx.invalid("neither scales nor sizes is given")),
            (Some(sc), None) => {
                if sc.len() != axes.len() {
                    return Err(cx.invalid(format!("scales {sc:?} must have {} entries", axes.len())));
                }
                for (&a, &v) in axes.iter().zip(&sc) {
                    if !(v.is_finite() && v > 0.0) {
                        return Err(cx.invalid(format!("scale {v} must be positive")));
                    }
                    let n = (s[a] as f64 * v as f64).floor();
                    if n < 1.0 || n > cryptflow_frontend::consts::MAX_DIM as f64 {
                        return Err(cx.shape_err(format!("scales {sc:?} resize {s:?} to an empty or huge extent on axis {a}")));
                    }
                    scale[a] = v as f64;
                    out[a] = n as usize;
                }
            }
            (None, Some(sz)) => {
                if sz.len() != axes.len() {
                    return Err(cx.invalid(format!("sizes {sz:?} must have {} entries", axes.len())));
                }
                let sz = cx.dims(&sz, "size")?;
                if sz.contains(&0) {
                    return Err(cx.shape_err(format!("sizes {sz:?} has an empty extent")));
                }
                let policy = if cx.opset >= 18 { cx.string("keep_aspect_ratio_policy")? } else { None };
                let ratios: Vec<f64> = axes.iter().zip(&sz).map(|(&a, &n)| n as f64 / s[a] as f64).collect();
                match policy.as_deref().unwrap_or("stretch") {
                    "stretch" => {
                        for (j, &a) in axes.iter().enumerate() {
                            scale[a] = ratios[j];
                            out[a] = sz[j];
                        }
                    }
                    p @ ("not_larger" | "not_smaller") => {
                        let pick = if p == "not_larger" { f64::min } else { f64::max };
                        let common = ratios.iter().copied().reduce(pick).unwrap_or(1.0);
                        for &a in &axes {
                            let n = (s[a] as f64 * common + 0.5).floor();
                            if n > cryptflow_frontend::consts::MAX_DIM as f64 {
                                return Err(cx.shape_err(format!("sizes {sz:?} resize {s:?} to a huge extent on axis {a}")));
                            }
                            scale[a] = common;
                            out[a] = (n as usize).max(1);
                        }
                    }
                    other => return Err(cx.invalid(format!("unknown keep_aspect_ratio_policy `{other}`"))),
                }
            }
        }
        let coord = if legacy {
            Coord::Asymmetric
        } else {
            match cx.string("coordinate_transformation_mode")?.as_deref().unwrap_or("half_pixel") {
                "half_pixel" => Coord::HalfPixel,
                "half_pixel_symmetric" if cx.opset >= 19 => Coord::HalfPixelSymmetric,
                "pytorch_half_pixel" => Coord::PytorchHalfPixel,
                "align_corners" => Coord::AlignCorners,
                "asymmetric" => Coord::Asymmetric,
                "tf_half_pixel_for_nn" if cx.opset < 13 || kernel.is_none() => Coord::TfHalfPixelForNn,
                "tf_crop_and_resize" => Coord::TfCropAndResize,
                other => return Err(cx.invalid(format!("unknown coordinate_transformation_mode `{other}`"))),
            }
        };
        // The region of interest of each axis (tf_crop_and_resize), in input coordinates
        // normalised to [0, 1]: `[starts..., ends...]` of `axes` (or of every axis).
        let mut roi = vec![(0.0f64, 1.0f64); r];
        let mut extrapolation_value = 0.0f32;
        if coord == Coord::TfCropAndResize {
            let v = self
                .opt_const_input(cx, 1, "roi")?
                .filter(|c| !c.is_empty())
                .ok_or_else(|| cx.invalid("coordinate_transformation_mode `tf_crop_and_resize` needs the roi input"))?
                .to_f32();
            if v.len() != 2 * axes.len() || v.iter().any(|x| !x.is_finite()) {
                return Err(cx.invalid(format!("roi {v:?} must have {} finite entries (starts, then ends)", 2 * axes.len())));
            }
            for (j, &a) in axes.iter().enumerate() {
                roi[a] = (v[j] as f64, v[axes.len() + j] as f64);
            }
            extrapolation_value = cx.float_or("extrapolation_value", 0.0)?;
            if !extrapolation_value.is_finite() {
                return Err(cx.invalid(format!("extrapolation_value {extrapolation_value} must be finite")));
            }
        }
        let nearest = if legacy {
            Nearest::Legacy
        } else {
            match cx.string("nearest_mode")?.as_deref().unwrap_or("round_prefer_floor") {
                "round_prefer_floor" => Nearest::RoundPreferFloor,
                "round_prefer_ceil" => Nearest::RoundPreferCeil,
                "floor" => Nearest::Floor,
                "ceil" => Nearest::Ceil,
                other => return Err(cx.invalid(format!("unknown nearest_mode `{other}`"))),
            }
        };
        let antialias = cx.opset >= 18 && cx.int_or("antialias", 0)? != 0;
        if antialias && kernel.is_none() {
            return Err(cx.invalid("antialias applies to the linear and cubic modes only"));
        }
        let exclude_outside = !legacy && cx.int_or("exclude_outside", 0)? != 0;
        let name = cx.out0()?;
        let mut y = match x {
            Value::Const(c) => {
                let n = cx.input_label(0);
                Value::Node(self.node_of(cx, &n, &Value::Const(c))?)
            }
            v => v,
        };
        for a in 0..r {
            if out[a] == s[a] && scale[a] == 1.0 && roi[a] == (0.0, 1.0) {
                continue;
            }
            let taps = match kernel {
                None => {
                    let mut taps = Taps { indices: Vec::new(), weights: Vec::new(), extrapolated: Vec::new() };
                    for i in 0..out[a] {
                        let xo = original_coordinate(coord, i, scale[a] as f32, out[a], s[a], roi[a]);
                        let outside = coord == Coord::TfCropAndResize && reference_coordinate(coord, i, scale[a], out[a], s[a], roi[a]).1;
                        taps.indices.push(vec![nearest_index(nearest, xo, scale[a] < 1.0, s[a])]);
                        taps.weights.push(vec![if outside { 0.0 } else { 1.0 }]);
                        taps.extrapolated.push(outside);
                    }
                    taps
                }
                Some(k) => interpolation_taps(k, antialias, exclude_outside, coord, scale[a], out[a], s[a], roi[a]),
            };
            if taps.is_identity(s[a]) {
                continue;
            }
            y = self.apply_taps(cx, &format!("{name}/axis{a}"), &y, a, &taps, extrapolation_value)?;
        }
        Ok(y)
    }

    /// One resized axis: a gather per tap, weighted by its public coefficients unless they
    /// are all 1, the taps added, and `extrapolation_value` added where the taps say so.
    fn apply_taps(&mut self, cx: &Cx, base: &str, y: &Value, a: usize, taps: &Taps, extrapolation_value: f32) -> R<Value> {
        let r = self.shape(y).len();
        let out_len = taps.indices.len();
        let n = taps.indices.first().map_or(0, Vec::len);
        let mut coeff_shape = vec![1; r];
        coeff_shape[a] = out_len;
        let mut acc: Option<(String, Value)> = None;
        for k in 0..n {
            let indices: Vec<usize> = taps.indices.iter().map(|t| t[k]).collect();
            let weights: Vec<f32> = taps.weights.iter().map(|w| w[k] as f32).collect();
            if weights.iter().all(|&w| w == 0.0) {
                continue;
            }
            let g = self.gather_value(cx, format!("{base}/gather{k}"), y, a, indices)?;
            let (tn, term) = if weights.iter().all(|&w| w == 1.0) {
                (format!("{base}/gather{k}"), g)
            } else {
                let Value::Node(gi) = g else { return Err(cx.invalid("internal: gather of a node")) };
                let c = Tensor::new(coeff_shape.clone(), weights).map_err(|e| cx.shape_err(e.to_string()))?;
                (format!("{base}/weighted{k}"), Value::Node(self.emit(cx, format!("{base}/weighted{k}"), Op::MulConst(c), &[gi])?))
            };
            acc = Some(match acc {
                None => (tn, term),
                Some((an, av)) => {
                    let sum = format!("{base}/sum{k}");
                    let v = self.arith_values(cx, Arith::Add, (&an, &av), (&tn, &term), &sum)?;
                    (sum, v)
                }
            });
        }
        let extrapolated = taps.extrapolated.iter().any(|&e| e) && extrapolation_value != 0.0;
        let (an, av) = match acc {
            Some(v) => v,
            // Everything extrapolated: zero times the input, plus the constant below.
            None => {
                let g = self.gather_value(cx, format!("{base}/gather"), y, a, vec![0; out_len])?;
                let Value::Node(gi) = g else { return Err(cx.invalid("internal: gather of a node")) };
                let c = Tensor::new(coeff_shape.clone(), vec![0.0; out_len]).map_err(|e| cx.shape_err(e.to_string()))?;
                (format!("{base}/zero"), Value::Node(self.emit(cx, format!("{base}/zero"), Op::MulConst(c), &[gi])?))
            }
        };
        if !extrapolated {
            return Ok(av);
        }
        let fill: Vec<f32> = taps.extrapolated.iter().map(|&e| if e { extrapolation_value } else { 0.0 }).collect();
        let c = Value::Const(std::rc::Rc::new(cryptflow_frontend::Const::new_f(coeff_shape, fill)));
        self.arith_values(cx, Arith::Add, (&an, &av), (&format!("{base}/extrapolation"), &c), &format!("{base}/extrapolated"))
    }

    /// `DepthToSpace` (modes DCR and CRD) and `SpaceToDepth` (DCR; CRD from opset 28):
    /// a reshape to 6-D, a transpose and a reshape back.
    pub(crate) fn depth_space(&mut self, cx: &Cx) -> R<Value> {
        let x = self.input(cx, 0)?;
        let s = self.shape(&x);
        if s.len() != 4 {
            return Err(cx.shape_err(format!("input of shape {s:?} must have rank 4 ([N, C, H, W])")));
        }
        let bs = cx.int("blocksize")?.ok_or_else(|| cx.invalid("missing attribute `blocksize`"))?;
        let bs = cx.dim(bs, "blocksize")?;
        if bs == 0 {
            return Err(cx.invalid("blocksize must be positive"));
        }
        let to_space = cx.op == "DepthToSpace";
        let has_mode = if to_space { cx.opset >= 11 } else { cx.opset >= 28 };
        let mode = if has_mode { cx.string("mode")?.unwrap_or_else(|| "DCR".into()) } else { "DCR".into() };
        if mode != "DCR" && mode != "CRD" {
            return Err(cx.invalid(format!("unknown mode `{mode}` (DCR or CRD)")));
        }
        let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
        let name = cx.out0()?;
        let (six, perm, out) = if to_space {
            if c % (bs * bs) != 0 {
                return Err(cx.shape_err(format!("{c} channels are not a multiple of blocksize^2 = {}", bs * bs)));
            }
            let cc = c / (bs * bs);
            let out = vec![b, cc, h * bs, w * bs];
            if mode == "DCR" {
                (vec![b, bs, bs, cc, h, w], vec![0, 3, 4, 1, 5, 2], out)
            } else {
                (vec![b, cc, bs, bs, h, w], vec![0, 1, 4, 2, 5, 3], out)
            }
        } else {
            if h % bs != 0 || w % bs != 0 {
                return Err(cx.shape_err(format!("spatial extents {h}x{w} are not multiples of blocksize {bs}")));
            }
            let six = vec![b, c, h / bs, bs, w / bs, bs];
            let out = vec![b, c * bs * bs, h / bs, w / bs];
            if mode == "DCR" {
                (six, vec![0, 3, 5, 1, 2, 4], out)
            } else {
                (six, vec![0, 1, 3, 5, 2, 4], out)
            }
        };
        let v = self.reshape_value(cx, format!("{name}/blocks"), &x, six)?;
        let v = self.transpose_value(cx, format!("{name}/transpose"), &v, perm)?;
        self.reshape_value(cx, name, &v, out)
    }
}
