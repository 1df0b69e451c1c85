//! Lowering a convolution to matrix products (im2col), as SecureNN does: the input becomes the
//! "reshaped input" X' (one row per output position, one column per filter tap and input
//! channel of the group), the filter the "reshaped filter" Y', and the product X' Y' the
//! reshaped output. Used only by the SecureNN variant, whose Beaver masks have the size of X'
//! (Table III, left column). Porthos masks X itself and never builds X' on the wire.
//!
//! Handles 1-3 (any) spatial dimensions, both layouts, strides, dilations, asymmetric padding,
//! groups, and transposed convolutions (where output position `o` and tap `k` read input
//! position `(o + pad - k * dilation) / stride` when that is an integer in range).

use cryptflow_tensor::{kernels, num_elements, ConvGeometry, Layout, RingTensor, ShapeError};
use rayon::prelude::*;

/// Shapes of the lowered matrices: per group, X' is `[rows, cols]`, Y' is `[cols, cout_g]`.
#[derive(Clone, Debug)]
pub struct Lowering {
    pub groups: usize,
    pub rows: usize,
    pub cols: usize,
    pub cout_g: usize,
    transpose: bool,
    /// For each (output position, tap): the input spatial offset, or -1 for padding.
    taps: Vec<i64>,
    out_positions: usize,
    in_positions: usize,
    kernel_size: usize,
    cin_g: usize,
}

impl Lowering {
    pub fn new(geom: &ConvGeometry, transpose: bool) -> Lowering {
        let out = if transpose { geom.conv_transpose_output() } else { geom.conv_output() };
        let r = geom.spatial_rank();
        let out_positions = num_elements(&out);
        let in_positions = num_elements(&geom.input);
        let kernel_size = num_elements(&geom.kernel);
        let mut taps = vec![-1i64; out_positions * kernel_size];
        let mut o_idx = vec![0usize; r];
        for o in 0..out_positions {
            let mut k_idx = vec![0usize; r];
            for k in 0..kernel_size {
                let mut offset = 0i64;
                let mut valid = true;
                for a in 0..r {
                    let (s, d, pb) = (geom.strides[a] as i64, geom.dilations[a] as i64, geom.pads_begin[a] as i64);
                    let p = if transpose {
                        let t = o_idx[a] as i64 + pb - k_idx[a] as i64 * d;
                        if t < 0 || t % s != 0 {
                            valid = false;
                            break;
                        }
                        t / s
                    } else {
                        o_idx[a] as i64 * s + k_idx[a] as i64 * d - pb
                    };
                    if p < 0 || p >= geom.input[a] as i64 {
                        valid = false;
                        break;
                    }
                    offset = offset * geom.input[a] as i64 + p;
                }
                if valid {
                    taps[o * kernel_size + k] = offset;
                }
                increment(&mut k_idx, &geom.kernel);
            }
            increment(&mut o_idx, &out);
        }
        let cin_g = geom.in_channels / geom.groups;
        Lowering {
            groups: geom.groups,
            rows: geom.batch * out_positions,
            cols: cin_g * kernel_size,
            cout_g: geom.out_channels / geom.groups,
            transpose,
            taps,
            out_positions,
            in_positions,
            kernel_size,
            cin_g,
        }
    }

    pub fn input_len(&self) -> usize {
        self.groups * self.rows * self.cols
    }

    pub fn filter_len(&self) -> usize {
        self.groups * self.cols * self.cout_g
    }

    pub fn output_len(&self) -> usize {
        self.groups * self.rows * self.cout_g
    }

    /// X' as `[groups][rows][cols]`.
    pub fn lower_input(&self, x: &[u64], layout: Layout) -> Vec<u64> {
        let channels = self.groups * self.cin_g;
        let mut out = vec![0u64; self.input_len()];
        out.par_chunks_mut(self.cols).enumerate().for_each(|(row_index, row)| {
            let g = row_index / self.rows;
            let n = (row_index % self.rows) / self.out_positions;
            let o = row_index % self.out_positions;
            for ci in 0..self.cin_g {
                let c = g * self.cin_g + ci;
                for k in 0..self.kernel_size {
                    let t = self.taps[o * self.kernel_size + k];
                    if t >= 0 {
                        let pos = t as usize;
                        let idx = match layout {
                            Layout::ChannelsFirst => (n * channels + c) * self.in_positions + pos,
                            Layout::ChannelsLast => (n * self.in_positions + pos) * channels + c,
                        };
                        row[ci * self.kernel_size + k] = x[idx];
                    }
                }
            }
        });
        out
    }

    /// Y' as `[groups][cols][cout_g]`, from the ONNX filter layout.
    pub fn lower_filter(&self, w: &[u64]) -> Vec<u64> {
        let mut out = vec![0u64; self.filter_len()];
        for g in 0..self.groups {
            for ci in 0..self.cin_g {
                for k in 0..self.kernel_size {
                    for co in 0..self.cout_g {
                        let src = if self.transpose {
                            ((g * self.cin_g + ci) * self.cout_g + co) * self.kernel_size + k
                        } else {
                            ((g * self.cout_g + co) * self.cin_g + ci) * self.kernel_size + k
                        };
                        out[(g * self.cols + ci * self.kernel_size + k) * self.cout_g + co] = w[src];
                    }
                }
            }
        }
        out
    }

    /// The output tensor's data from the reshaped output `[groups][rows][cout_g]`.
    pub fn raise_output(&self, z: &[u64], layout: Layout) -> Vec<u64> {
        let channels = self.groups * self.cout_g;
        let mut out = vec![0u64; z.len()];
        for g in 0..self.groups {
            for row in 0..self.rows {
                let n = row / self.out_positions;
                let o = row % self.out_positions;
                for co in 0..self.cout_g {
                    let c = g * self.cout_g + co;
                    let idx = match layout {
                        Layout::ChannelsFirst => (n * channels + c) * self.out_positions + o,
                        Layout::ChannelsLast => (n * self.out_positions + o) * channels + c,
                    };
                    out[idx] = z[(g * self.rows + row) * self.cout_g + co];
                }
            }
        }
        out
    }
}

fn increment(idx: &mut [usize], extent: &[usize]) {
    for a in (0..idx.len()).rev() {
        idx[a] += 1;
        if idx[a] < extent[a] {
            return;
        }
        idx[a] = 0;
    }
}

/// Per-group products `Z'_g = X'_g Y'_g` of lowered matrices.
pub fn grouped_matmul(l: &Lowering, x: &[u64], y: &[u64]) -> Result<Vec<u64>, ShapeError> {
    let mut z = Vec::with_capacity(l.output_len());
    for g in 0..l.groups {
        let xg = RingTensor::new(vec![l.rows, l.cols], x[g * l.rows * l.cols..(g + 1) * l.rows * l.cols].to_vec())?;
        let yg = RingTensor::new(vec![l.cols, l.cout_g], y[g * l.cols * l.cout_g..(g + 1) * l.cols * l.cout_g].to_vec())?;
        z.extend_from_slice(kernels::matmul(&xg, &yg)?.data());
    }
    Ok(z)
}
