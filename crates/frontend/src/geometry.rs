//! Convolution and pooling geometry: `SAME` padding, kernel spans, global pooling, and the
//! checks that make an HLIL operation's parameters safe for `infer_shape` and the kernels.

use cryptflow_ir::hlil::Op;
use cryptflow_tensor::{ConvGeometry, Layout, PoolGeometry};

use crate::consts::{broadcast_shapes, checked_elements, MAX_DIM};

/// Extent covered by a dilated kernel on each spatial axis.
pub fn kernel_span(kernel: &[usize], dilations: &[usize]) -> Vec<usize> {
    kernel.iter().zip(dilations).map(|(&k, &d)| d * (k - 1) + 1).collect()
}

/// `SAME` padding: the output extent is `ceil(input / stride)`; of an odd total pad the extra
/// element goes at the end (`(begin, end)`; ONNX's `SAME_LOWER` swaps them).
pub fn same_pads(input: &[usize], span: &[usize], strides: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let r = input.len();
    let mut b = vec![0; r];
    let mut e = vec![0; r];
    for i in 0..r {
        let out = input[i].div_ceil(strides[i]);
        let total = ((out.max(1) - 1) * strides[i] + span[i]).saturating_sub(input[i]);
        b[i] = total / 2;
        e[i] = total - total / 2;
    }
    (b, e)
}

/// Max pooling over the whole spatial extent `input` (one window, no padding).
pub fn global_max_pool(layout: Layout, batch: usize, channels: usize, input: Vec<usize>) -> PoolGeometry {
    let r = input.len();
    PoolGeometry {
        layout,
        batch,
        channels,
        window: input.clone(),
        input,
        strides: vec![1; r],
        pads_begin: vec![0; r],
        pads_end: vec![0; r],
        count_include_pad: false,
    }
}

/// Checks the arithmetic `infer_shape` will do on these parameters cannot overflow or
/// underflow (it uses plain `usize` arithmetic) and that pads fit the kernels.
pub fn precheck(op: &Op, shapes: &[Vec<usize>]) -> Result<(), String> {
    let small = |v: &[usize], what: &str| -> Result<(), String> {
        if v.iter().any(|&x| x > MAX_DIM) {
            return Err(format!("{what} {v:?} out of range"));
        }
        Ok(())
    };
    match op {
        Op::Conv(g) | Op::ConvTranspose(g) => check_conv(g, matches!(op, Op::ConvTranspose(_)))?,
        Op::MaxPool(g) | Op::AvgPool(g) => check_pool(g)?,
        Op::Reshape { shape } => {
            checked_elements(shape).ok_or_else(|| format!("shape {shape:?} is too large"))?;
        }
        Op::Pad { pads_begin, pads_end, .. } => {
            small(pads_begin, "pads")?;
            small(pads_end, "pads")?;
        }
        Op::Add | Op::Sub | Op::Mul => {
            if let [a, b] = shapes {
                broadcast_shapes(a, b)?;
            }
        }
        Op::Slice { starts, ends, steps } => {
            for v in [starts, ends, steps] {
                if v.iter().any(|x| x.unsigned_abs() > MAX_DIM as u64) {
                    return Err(format!("slice parameters {v:?} out of range"));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_conv(g: &ConvGeometry, transpose: bool) -> Result<(), String> {
    let r = g.input.len();
    if !(1..=3).contains(&r) {
        return Err(format!("convolutions have 1 to 3 spatial axes, not {r}"));
    }
    for v in [&g.kernel, &g.strides, &g.dilations, &g.pads_begin, &g.pads_end, &g.output_padding] {
        if v.len() != r {
            return Err(format!("geometry {g:?} is inconsistent"));
        }
        if v.iter().any(|&x| x > MAX_DIM) {
            return Err(format!("geometry value out of range in {v:?}"));
        }
    }
    if g.kernel.iter().chain(&g.strides).chain(&g.dilations).any(|&v| v == 0) {
        return Err("kernel, strides and dilations must be positive".into());
    }
    if g.groups == 0 || g.in_channels % g.groups != 0 || g.out_channels % g.groups != 0 {
        return Err(format!(
            "{} groups do not divide {} input and {} output channels",
            g.groups, g.in_channels, g.out_channels
        ));
    }
    for i in 0..r {
        let span = g.dilations[i] * (g.kernel[i] - 1) + 1;
        if transpose {
            let full = g.strides[i] * (g.input[i].max(1) - 1) + g.output_padding[i] + span;
            if full <= g.pads_begin[i] + g.pads_end[i] {
                return Err(format!(
                    "pads {}+{} on spatial axis {i} leave no output (full extent {full})",
                    g.pads_begin[i], g.pads_end[i]
                ));
            }
        } else if g.input[i] + g.pads_begin[i] + g.pads_end[i] < span {
            return Err(format!(
                "kernel span {span} exceeds the padded input extent {} on spatial axis {i}",
                g.input[i] + g.pads_begin[i] + g.pads_end[i]
            ));
        }
    }
    Ok(())
}

fn check_pool(g: &PoolGeometry) -> Result<(), String> {
    let r = g.input.len();
    for v in [&g.window, &g.strides, &g.pads_begin, &g.pads_end] {
        if v.len() != r || v.iter().any(|&x| x > MAX_DIM) {
            return Err(format!("inconsistent pooling geometry {g:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_puts_the_odd_pad_at_the_end() {
        // 5 wide, 3x3 kernel, stride 2: 3 outputs, 2 pads.
        assert_eq!(same_pads(&[5], &[3], &[2]), (vec![1], vec![1]));
        // 4 wide, 3x3 kernel, stride 2: 2 outputs, 1 pad at the end.
        assert_eq!(same_pads(&[4], &[3], &[2]), (vec![0], vec![1]));
        assert_eq!(kernel_span(&[3, 1], &[2, 5]), vec![5, 1]);
    }
}
