//! Geometry of convolutions and pooling windows, shared by the IR, the kernels and the
//! protocols (whose communication depends on it).

use serde::{Deserialize, Serialize};

/// Where the channel axis of an activation tensor sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// `[N, C, spatial...]` (ONNX, PyTorch).
    ChannelsFirst,
    /// `[N, spatial..., C]` (TensorFlow).
    ChannelsLast,
}

/// A convolution (or transposed convolution) over 1, 2 or 3 spatial dimensions.
///
/// Shapes, for `r = spatial rank`:
/// - input: `[N, C_in, D_1..D_r]` (channels-first) or `[N, D_1..D_r, C_in]` (channels-last);
/// - filter of a convolution: `[C_out, C_in / groups, K_1..K_r]` (the ONNX layout, whatever the
///   activation layout; front ends permute TensorFlow filters into it once, at compile time);
/// - filter of a transposed convolution: `[C_in, C_out / groups, K_1..K_r]` (ONNX ConvTranspose);
/// - output: `[N, C_out, O_1..O_r]` or `[N, O_1..O_r, C_out]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvGeometry {
    pub layout: Layout,
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    /// Input spatial extent `D_1..D_r`.
    pub input: Vec<usize>,
    /// Kernel spatial extent `K_1..K_r`.
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Padding before each spatial axis.
    pub pads_begin: Vec<usize>,
    /// Padding after each spatial axis.
    pub pads_end: Vec<usize>,
    /// Transposed convolution only: extra rows/cols added at the end of each output axis.
    pub output_padding: Vec<usize>,
}

impl ConvGeometry {
    pub fn spatial_rank(&self) -> usize {
        self.input.len()
    }

    /// Output spatial extent of a convolution.
    pub fn conv_output(&self) -> Vec<usize> {
        (0..self.spatial_rank())
            .map(|i| {
                // Saturating: an impossible geometry gives extent 0 (shape inference rejects
                // it with a message) instead of an arithmetic panic.
                let span = self.dilations[i] * self.kernel[i].saturating_sub(1) + 1;
                (self.input[i] + self.pads_begin[i] + self.pads_end[i])
                    .checked_sub(span)
                    .and_then(|room| room.checked_div(self.strides[i]))
                    .map_or(0, |steps| steps + 1)
            })
            .collect()
    }

    /// Output spatial extent of a transposed convolution.
    pub fn conv_transpose_output(&self) -> Vec<usize> {
        (0..self.spatial_rank())
            .map(|i| {
                (self.strides[i] * self.input[i].saturating_sub(1)
                    + self.output_padding[i]
                    + self.kernel[i].saturating_sub(1) * self.dilations[i]
                    + 1)
                .saturating_sub(self.pads_begin[i] + self.pads_end[i])
            })
            .collect()
    }

    fn activation_shape(&self, channels: usize, spatial: &[usize]) -> Vec<usize> {
        let mut shape = vec![self.batch];
        match self.layout {
            Layout::ChannelsFirst => {
                shape.push(channels);
                shape.extend_from_slice(spatial);
            }
            Layout::ChannelsLast => {
                shape.extend_from_slice(spatial);
                shape.push(channels);
            }
        }
        shape
    }

    pub fn input_shape(&self) -> Vec<usize> {
        self.activation_shape(self.in_channels, &self.input)
    }

    pub fn conv_output_shape(&self) -> Vec<usize> {
        self.activation_shape(self.out_channels, &self.conv_output())
    }

    pub fn conv_transpose_output_shape(&self) -> Vec<usize> {
        self.activation_shape(self.out_channels, &self.conv_transpose_output())
    }

    pub fn conv_filter_shape(&self) -> Vec<usize> {
        let mut shape = vec![self.out_channels, self.in_channels / self.groups];
        shape.extend_from_slice(&self.kernel);
        shape
    }

    pub fn conv_transpose_filter_shape(&self) -> Vec<usize> {
        let mut shape = vec![self.in_channels, self.out_channels / self.groups];
        shape.extend_from_slice(&self.kernel);
        shape
    }
}

/// A pooling window over 1, 2 or 3 spatial dimensions (no dilation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolGeometry {
    pub layout: Layout,
    pub batch: usize,
    pub channels: usize,
    pub input: Vec<usize>,
    pub window: Vec<usize>,
    pub strides: Vec<usize>,
    pub pads_begin: Vec<usize>,
    pub pads_end: Vec<usize>,
    /// Average pooling: whether padded positions count in the divisor (ONNX `count_include_pad`).
    pub count_include_pad: bool,
}

impl PoolGeometry {
    pub fn spatial_rank(&self) -> usize {
        self.input.len()
    }

    pub fn output(&self) -> Vec<usize> {
        (0..self.spatial_rank())
            .map(|i| {
                (self.input[i] + self.pads_begin[i] + self.pads_end[i])
                    .checked_sub(self.window[i])
                    .and_then(|room| room.checked_div(self.strides[i]))
                    .map_or(0, |steps| steps + 1)
            })
            .collect()
    }

    fn activation_shape(&self, spatial: &[usize]) -> Vec<usize> {
        let mut shape = vec![self.batch];
        match self.layout {
            Layout::ChannelsFirst => {
                shape.push(self.channels);
                shape.extend_from_slice(spatial);
            }
            Layout::ChannelsLast => {
                shape.extend_from_slice(spatial);
                shape.push(self.channels);
            }
        }
        shape
    }

    pub fn input_shape(&self) -> Vec<usize> {
        self.activation_shape(&self.input)
    }

    pub fn output_shape(&self) -> Vec<usize> {
        self.activation_shape(&self.output())
    }

    /// Window size `n` of MaxPool_n (Table III).
    pub fn window_size(&self) -> usize {
        self.window.iter().product()
    }
}
