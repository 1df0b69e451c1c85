//! Shape inference rejects impossible operations with an error, never an arithmetic panic.

use cryptflow_ir::hlil::{infer_shape, Op};
use cryptflow_tensor::{ConvGeometry, Layout};

fn conv(input: usize, kernel: usize, pad: usize, stride: usize) -> ConvGeometry {
    ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: 1,
        out_channels: 1,
        groups: 1,
        input: vec![input],
        kernel: vec![kernel],
        strides: vec![stride],
        dilations: vec![1],
        pads_begin: vec![pad],
        pads_end: vec![pad],
        output_padding: vec![0],
    }
}

#[test]
fn kernel_wider_than_padded_input_is_an_error() {
    let g = conv(3, 5, 0, 1);
    let err = infer_shape(&Op::Conv(g.clone()), &[&[1, 1, 3], &[1, 1, 5]]).unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    let ok = conv(3, 5, 1, 1);
    assert_eq!(infer_shape(&Op::Conv(ok), &[&[1, 1, 3], &[1, 1, 5]]).unwrap(), vec![1, 1, 1]);
}

#[test]
fn transposed_convolution_pads_larger_than_the_output_are_an_error() {
    let g = conv(2, 3, 3, 1);
    assert!(infer_shape(&Op::ConvTranspose(g), &[&[1, 1, 2], &[1, 1, 3]]).is_err());
    let ok = conv(2, 3, 1, 2);
    // 2 * (2 - 1) + 3 - 2 = 3
    assert_eq!(infer_shape(&Op::ConvTranspose(ok), &[&[1, 1, 2], &[1, 1, 3]]).unwrap(), vec![1, 1, 3]);
}

#[test]
fn huge_extents_are_errors() {
    let huge = usize::MAX / 2;
    let g = conv(huge, 3, 0, 1);
    assert!(infer_shape(&Op::Conv(g), &[&[1, 1, huge], &[1, 1, 3]]).is_err());
    let reshape = Op::Reshape { shape: vec![usize::MAX, 4] };
    assert!(infer_shape(&reshape, &[&[4]]).is_err());
}
