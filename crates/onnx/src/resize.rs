//! `Resize` (opsets 10 to 19) and `Upsample` (opsets 7 to 9), `DepthToSpace`, `SpaceToDepth`.
//!
//! A resize has public coefficients: it is separable, so each resized axis becomes a
//! `Gather` of constant indices (nearest) or two gathers weighted by public constant
//! coefficients (`MulConst`) and added (linear), exactly as onnxruntime computes them.

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

/// The input coordinate of output coordinate `i` (onnxruntime's float arithmetic).
fn original_coordinate(mode: Coord, i: usize, scale: f32, out_len: usize, in_len: usize) -> f32 {
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

/// The two source indices and their weights of each output position (linear).
fn linear_taps(mode: Coord, scale: f32, out_len: usize, in_len: usize) -> Vec<(usize, usize, f32, f32)> {
    (0..out_len)
        .map(|i| {
            let x = if scale == 1.0 { i as f32 } else { original_coordinate(mode, i, scale, out_len, in_len) };
            let x = x.clamp(0.0, (in_len - 1) as f32);
            let i0 = (x as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            if i0 == i1 {
                (i0, i1, 1.0, 0.0)
            } else {
                let w1 = x - i0 as f32;
                (i0, i1, 1.0 - w1, w1)
            }
        })
        .collect()
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
        let linear = match mode.as_str() {
            "nearest" => false,
            "linear" | "bilinear" => true,
            "cubic" => return Err(cx.unsupported("mode `cubic` is not supported (only nearest and linear)")),
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
        let mut scale = vec![1.0f32; r];
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
                    let n = (s[a] as f32 * v) as usize;
                    if n == 0 || n > cryptflow_frontend::consts::MAX_DIM {
                        return Err(cx.shape_err(format!("scales {sc:?} resize {s:?} to an empty or huge extent on axis {a}")));
                    }
                    scale[a] = v;
                    out[a] = n;
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
                let ratios: Vec<f32> = axes.iter().zip(&sz).map(|(&a, &n)| n as f32 / s[a] as f32).collect();
                match policy.as_deref().unwrap_or("stretch") {
                    "stretch" => {
                        for (j, &a) in axes.iter().enumerate() {
                            scale[a] = ratios[j];
                            out[a] = sz[j];
                        }
                    }
                    p @ ("not_larger" | "not_smaller") => {
                        let pick = if p == "not_larger" { f32::min } else { f32::max };
                        let common = ratios.iter().copied().reduce(pick).unwrap_or(1.0);
                        for &a in &axes {
                            scale[a] = common;
                            out[a] = ((s[a] as f32 * common) + 0.5).floor().max(1.0) as usize;
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
                "tf_half_pixel_for_nn" if cx.opset < 13 || !linear => Coord::TfHalfPixelForNn,
                "tf_crop_and_resize" => {
                    return Err(cx.unsupported("coordinate_transformation_mode `tf_crop_and_resize` is not supported"))
                }
                other => return Err(cx.invalid(format!("unknown coordinate_transformation_mode `{other}`"))),
            }
        };
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
        if linear && cx.opset >= 18 && cx.int_or("antialias", 0)? != 0 && (0..r).any(|a| out[a] < s[a]) {
            return Err(cx.unsupported("antialiased linear downsampling is not supported"));
        }
        let name = cx.out0()?;
        let mut y = match x {
            Value::Const(c) => {
                let n = cx.input_label(0);
                Value::Node(self.node_of(cx, &n, &Value::Const(c))?)
            }
            v => v,
        };
        for a in 0..r {
            if out[a] == s[a] && scale[a] == 1.0 {
                continue;
            }
            let base = format!("{name}/axis{a}");
            if !linear {
                let indices: Vec<usize> = (0..out[a])
                    .map(|i| {
                        let xo = original_coordinate(coord, i, scale[a], out[a], s[a]);
                        nearest_index(nearest, xo, scale[a] < 1.0, s[a])
                    })
                    .collect();
                if out[a] == s[a] && indices.iter().enumerate().all(|(i, &j)| i == j) {
                    continue;
                }
                y = self.gather_value(cx, base, &y, a, indices)?;
                continue;
            }
            let taps = linear_taps(coord, scale[a], out[a], s[a]);
            if out[a] == s[a] && taps.iter().enumerate().all(|(i, t)| t.0 == i && t.2 == 1.0) {
                continue;
            }
            let mut coeff_shape = vec![1; r];
            coeff_shape[a] = out[a];
            let mut terms: Vec<Value> = Vec::new();
            for (k, (indices, weights)) in [
                (taps.iter().map(|t| t.0).collect::<Vec<_>>(), taps.iter().map(|t| t.2).collect::<Vec<_>>()),
                (taps.iter().map(|t| t.1).collect(), taps.iter().map(|t| t.3).collect()),
            ]
            .into_iter()
            .enumerate()
            {
                if weights.iter().all(|&w| w == 0.0) {
                    continue;
                }
                let g = self.gather_value(cx, format!("{base}/gather{k}"), &y, a, indices)?;
                if weights.iter().all(|&w| w == 1.0) {
                    terms.push(g);
                    continue;
                }
                let Value::Node(gi) = g else { return Err(cx.invalid("internal: gather of a node")) };
                let c = Tensor::new(coeff_shape.clone(), weights).map_err(|e| cx.shape_err(e.to_string()))?;
                terms.push(Value::Node(self.emit(cx, format!("{base}/weighted{k}"), Op::MulConst(c), &[gi])?));
            }
            y = match terms.len() {
                1 => terms.remove(0),
                _ => {
                    let (t0, t1) = (terms[0].clone(), terms[1].clone());
                    self.arith_values(cx, Arith::Add, (&format!("{base}/weighted0"), &t0), (&format!("{base}/weighted1"), &t1), &base)?
                }
            };
        }
        Ok(y)
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
