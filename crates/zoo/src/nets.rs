//! The network definitions.

use crate::builder::{Builder, Value};

/// Logistic regression on MNIST: one dense layer 784 -> 10 (paper Fig. 2, Table V).
pub fn logistic_regression(b: &mut Builder, classes: usize) -> Value {
    let x = b.input("input", &[1, 784]);
    b.dense(&x, "fc", classes)
}

/// SecureML's 3-layer network: 784-128-128-10 with ReLU (Table V).
pub fn secureml(b: &mut Builder, classes: usize) -> Value {
    let x = b.input("input", &[1, 784]);
    let x = b.dense(&x, "fc1", 128);
    let x = b.relu(&x, "relu1");
    let x = b.dense(&x, "fc2", 128);
    let x = b.relu(&x, "relu2");
    b.dense(&x, "fc3", classes)
}

/// MiniONN's MNIST network (Table V "MiniONN (4 layer)"): Conv5x5x16-ReLU-MaxPool2,
/// Conv5x5x16-ReLU-MaxPool2, FC100-ReLU, FC10.
pub fn minionn_mnist(b: &mut Builder, classes: usize) -> Value {
    let x = b.input("input", &[1, 1, 28, 28]);
    let x = b.conv(&x, "conv1", 16, 5, 1, 0, true);
    let x = b.relu(&x, "relu1");
    let x = b.max_pool(&x, "pool1", 2, 2, 0, false);
    let x = b.conv(&x, "conv2", 16, 5, 1, 0, true);
    let x = b.relu(&x, "relu2");
    let x = b.max_pool(&x, "pool2", 2, 2, 0, false);
    let x = b.flatten(&x, "flatten");
    let x = b.dense(&x, "fc1", 100);
    let x = b.relu(&x, "relu3");
    b.dense(&x, "fc2", classes)
}

/// MiniONN's CIFAR-10 network (MiniONN paper, Fig. 13): seven convolutions with ReLU, two
/// 2x2 mean poolings, one dense layer. Input 3x32x32.
pub fn minionn_cifar(b: &mut Builder, classes: usize) -> Value {
    let mut x = b.input("input", &[1, 3, 32, 32]);
    let layers: [(&str, usize, usize, bool); 7] = [
        ("conv1", 64, 3, false),
        ("conv2", 64, 3, true),
        ("conv3", 64, 3, false),
        ("conv4", 64, 3, true),
        ("conv5", 64, 3, false),
        ("conv6", 64, 1, false),
        ("conv7", 16, 1, false),
    ];
    for (k, (name, out, kernel, pool_after)) in layers.into_iter().enumerate() {
        x = b.conv(&x, name, out, kernel, 1, kernel / 2, true);
        x = b.relu(&x, &format!("relu{}", k + 1));
        if pool_after {
            x = b.avg_pool(&x, &format!("pool{}", k + 1), 2, 2);
        }
    }
    let x = b.flatten(&x, "flatten");
    b.dense(&x, "fc", classes)
}

/// LeNet as in SecureNN (Table V "LeNet (4 layer)"): Conv5x5x20-ReLU-MaxPool2,
/// Conv5x5x50-ReLU-MaxPool2, FC500-ReLU, FC10.
pub fn lenet(b: &mut Builder, classes: usize) -> Value {
    let x = b.input("input", &[1, 1, 28, 28]);
    let x = b.conv(&x, "conv1", 20, 5, 1, 0, true);
    let x = b.relu(&x, "relu1");
    let x = b.max_pool(&x, "pool1", 2, 2, 0, false);
    let x = b.conv(&x, "conv2", 50, 5, 1, 0, true);
    let x = b.relu(&x, "relu2");
    let x = b.max_pool(&x, "pool2", 2, 2, 0, false);
    let x = b.flatten(&x, "flatten");
    let x = b.dense(&x, "fc1", 500);
    let x = b.relu(&x, "relu3");
    b.dense(&x, "fc2", classes)
}

fn fire(b: &mut Builder, x: &Value, name: &str, squeeze: usize, expand: usize) -> Value {
    let s = b.conv(x, &format!("{name}.squeeze"), squeeze, 1, 1, 0, true);
    let s = b.relu(&s, &format!("{name}.squeeze_relu"));
    let e1 = b.conv(&s, &format!("{name}.expand1x1"), expand, 1, 1, 0, true);
    let e1 = b.relu(&e1, &format!("{name}.expand1x1_relu"));
    let e3 = b.conv(&s, &format!("{name}.expand3x3"), expand, 3, 1, 1, true);
    let e3 = b.relu(&e3, &format!("{name}.expand3x3_relu"));
    b.concat(&[&e1, &e3], &format!("{name}.concat"))
}

/// SqueezeNet v1.1 (torchvision `squeezenet1_1`), ImageNet.
pub fn squeezenet(b: &mut Builder, classes: usize, size: [usize; 2]) -> Value {
    let x = b.input("input", &[1, 3, size[0], size[1]]);
    let x = b.conv(&x, "conv1", 64, 3, 2, 0, true);
    let x = b.relu(&x, "relu1");
    let x = b.max_pool(&x, "pool1", 3, 2, 0, true);
    let x = fire(b, &x, "fire2", 16, 64);
    let x = fire(b, &x, "fire3", 16, 64);
    let x = b.max_pool(&x, "pool3", 3, 2, 0, true);
    let x = fire(b, &x, "fire4", 32, 128);
    let x = fire(b, &x, "fire5", 32, 128);
    let x = b.max_pool(&x, "pool5", 3, 2, 0, true);
    let x = fire(b, &x, "fire6", 48, 192);
    let x = fire(b, &x, "fire7", 48, 192);
    let x = fire(b, &x, "fire8", 64, 256);
    let x = fire(b, &x, "fire9", 64, 256);
    let x = b.conv(&x, "conv10", classes, 1, 1, 0, true);
    let x = b.relu(&x, "relu10");
    let x = b.global_avg_pool(&x, "pool10");
    b.flatten(&x, "logits")
}

/// Blocks per stage and whether the block is a bottleneck, for ResNet-`depth`.
pub fn resnet_layout(depth: usize) -> Option<([usize; 4], bool)> {
    Some(match depth {
        18 => ([2, 2, 2, 2], false),
        34 => ([3, 4, 6, 3], false),
        50 => ([3, 4, 6, 3], true),
        101 => ([3, 4, 23, 3], true),
        152 => ([3, 8, 36, 3], true),
        200 => ([3, 24, 36, 3], true),
        _ => return None,
    })
}

fn conv_bn(b: &mut Builder, x: &Value, name: &str, out: usize, kernel: usize, stride: usize, relu: bool) -> Value {
    let y = b.conv(x, name, out, kernel, stride, kernel / 2, false);
    let y = b.batch_norm(&y, &format!("{name}.bn"));
    if relu {
        b.relu(&y, &format!("{name}.relu"))
    } else {
        y
    }
}

/// ResNet-`depth` (He et al. 2016; torchvision's definition, stride in the 3x3 convolution of
/// the bottleneck): basic blocks for 18 and 34, bottlenecks for 50 and deeper, batch norm after
/// every convolution, projection shortcuts where the shape changes.
pub fn resnet(b: &mut Builder, depth: usize, classes: usize, size: [usize; 2]) -> Value {
    let (blocks, bottleneck) = resnet_layout(depth).expect("checked by the caller");
    let expansion = if bottleneck { 4 } else { 1 };
    let x = b.input("input", &[1, 3, size[0], size[1]]);
    let x = conv_bn(b, &x, "conv1", 64, 7, 2, true);
    let mut x = b.max_pool(&x, "maxpool", 3, 2, 1, false);
    for (stage, &count) in blocks.iter().enumerate() {
        let width = 64 << stage;
        for block in 0..count {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let name = format!("layer{}.{block}", stage + 1);
            let out = width * expansion;
            let y = if bottleneck {
                let y = conv_bn(b, &x, &format!("{name}.conv1"), width, 1, 1, true);
                let y = conv_bn(b, &y, &format!("{name}.conv2"), width, 3, stride, true);
                conv_bn(b, &y, &format!("{name}.conv3"), out, 1, 1, false)
            } else {
                let y = conv_bn(b, &x, &format!("{name}.conv1"), width, 3, stride, true);
                conv_bn(b, &y, &format!("{name}.conv2"), width, 3, 1, false)
            };
            let shortcut = if stride != 1 || x.channels() != out {
                conv_bn(b, &x, &format!("{name}.downsample"), out, 1, stride, false)
            } else {
                x.clone()
            };
            let sum = b.add(&y, &shortcut, &format!("{name}.add"));
            x = b.relu(&sum, &format!("{name}.relu"));
        }
    }
    let x = b.global_avg_pool(&x, "avgpool");
    let x = b.flatten(&x, "flatten");
    b.dense(&x, "fc", classes)
}

/// DenseNet-121 (Huang et al. 2017; torchvision's `densenet121`): growth rate 32, blocks of
/// 6, 12, 24 and 16 layers, each BN-ReLU-Conv1x1(128)-BN-ReLU-Conv3x3(32) with its output
/// concatenated to its input; transitions BN-ReLU-Conv1x1(half)-AvgPool2.
pub fn densenet121(b: &mut Builder, classes: usize, size: [usize; 2]) -> Value {
    const GROWTH: usize = 32;
    const BN_SIZE: usize = 4;
    let x = b.input("input", &[1, 3, size[0], size[1]]);
    let x = b.conv(&x, "features.conv0", 64, 7, 2, 3, false);
    let x = b.batch_norm(&x, "features.norm0");
    let x = b.relu(&x, "features.relu0");
    let mut x = b.max_pool(&x, "features.pool0", 3, 2, 1, false);
    let blocks = [6, 12, 24, 16];
    for (k, &layers) in blocks.iter().enumerate() {
        for l in 0..layers {
            let name = format!("features.denseblock{}.denselayer{}", k + 1, l + 1);
            let y = b.batch_norm(&x, &format!("{name}.norm1"));
            let y = b.relu(&y, &format!("{name}.relu1"));
            let y = b.conv(&y, &format!("{name}.conv1"), BN_SIZE * GROWTH, 1, 1, 0, false);
            let y = b.batch_norm(&y, &format!("{name}.norm2"));
            let y = b.relu(&y, &format!("{name}.relu2"));
            let y = b.conv(&y, &format!("{name}.conv2"), GROWTH, 3, 1, 1, false);
            x = b.concat(&[&x, &y], &format!("{name}.concat"));
        }
        if k + 1 < blocks.len() {
            let name = format!("features.transition{}", k + 1);
            let y = b.batch_norm(&x, &format!("{name}.norm"));
            let y = b.relu(&y, &format!("{name}.relu"));
            let y = b.conv(&y, &format!("{name}.conv"), x.channels() / 2, 1, 1, 0, false);
            x = b.avg_pool(&y, &format!("{name}.pool"), 2, 2);
        }
    }
    let x = b.batch_norm(&x, "features.norm5");
    let x = b.relu(&x, "features.relu5");
    let x = b.global_avg_pool(&x, "avgpool");
    let x = b.flatten(&x, "flatten");
    b.dense(&x, "classifier", classes)
}

/// Levels of the 3D-UNet (the input size must be divisible by 2^(levels - 1)).
pub const UNET_LEVELS: usize = 3;

fn double_conv3d(b: &mut Builder, x: &Value, name: &str, out: usize) -> Value {
    let y = conv_bn(b, x, &format!("{name}.conv1"), out, 3, 1, true);
    conv_bn(b, &y, &format!("{name}.conv2"), out, 3, 1, true)
}

/// A 3D-UNet (Çiçek et al. 2016, the segmentation model family of the CrypTFlow medical paper):
/// per level two Conv3x3x3-BN-ReLU, 2x2x2 max pooling down; up with a 2x2x2 transposed
/// convolution of stride 2, concatenation with the skip connection, two Conv3x3x3-BN-ReLU;
/// a final 1x1x1 convolution gives per-voxel class scores. Widths double per level from `width`.
pub fn unet3d(b: &mut Builder, classes: usize, size: [usize; 3], width: usize) -> Value {
    let mut x = b.input("input", &[1, 1, size[0], size[1], size[2]]);
    let mut skips = Vec::new();
    for level in 0..UNET_LEVELS {
        let name = format!("down{level}");
        x = double_conv3d(b, &x, &name, width << level);
        if level + 1 < UNET_LEVELS {
            skips.push(x.clone());
            x = b.max_pool(&x, &format!("{name}.pool"), 2, 2, 0, false);
        }
    }
    for level in (0..UNET_LEVELS - 1).rev() {
        let name = format!("up{level}");
        let up = b.conv_transpose(&x, &format!("{name}.upconv"), width << level, 2, 2, 0);
        let cat = b.concat(&[&skips[level], &up], &format!("{name}.concat"));
        x = double_conv3d(b, &cat, &name, width << level);
    }
    b.conv(&x, "head", classes, 1, 1, 0, true)
}

/// Levels of InnerEye's UNet3D below full resolution (each halves every extent).
pub const INNEREYE_LEVELS: usize = 4;

/// InnerEye-DeepLearning's UNet3D with its prostate settings, the CrypTFlow medical paper's
/// network: level 0 a Conv3d to `width` channels and a residual block; levels 1-4 a stride-2
/// Conv3d doubling the channels and a residual block (no pooling); four decoder steps of a
/// ConvTranspose3d (kernel 4, stride 2, padding 1, bias) + BN + ReLU, then
/// `ReLU(BN(Conv(up) + Conv(skip)))` (skips added, not concatenated) and a residual block; a
/// 1x1x1 head with bias. Every Conv3d is 3x3x3, padding 1, no bias, followed by BN and ReLU
/// (except the two summed ones); a residual block is `ReLU(BN(Conv(x))) + x`.
pub fn unet3d_innereye(b: &mut Builder, classes: usize, size: [usize; 3], width: usize) -> Value {
    let input = b.input("input", &[1, 1, size[0], size[1], size[2]]);
    let residual = |b: &mut Builder, x: &Value, name: &str, c: usize| {
        let r = conv_bn(b, x, &format!("{name}.res"), c, 3, 1, true);
        b.add(&r, x, &format!("{name}.res.add"))
    };
    let x = conv_bn(b, &input, "enc0.conv", width, 3, 1, true);
    let mut x = residual(b, &x, "enc0", width);
    let mut skips = vec![x.clone()];
    for level in 1..=INNEREYE_LEVELS {
        let name = format!("enc{level}");
        let down = conv_bn(b, &x, &format!("{name}.down"), width << level, 3, 2, true);
        x = residual(b, &down, &name, width << level);
        if level < INNEREYE_LEVELS {
            skips.push(x.clone());
        }
    }
    for level in (0..INNEREYE_LEVELS).rev() {
        let name = format!("dec{level}");
        let c = width << level;
        let up = b.conv_transpose(&x, &format!("{name}.up"), c, 4, 2, 1);
        let up = b.batch_norm(&up, &format!("{name}.up.bn"));
        let up = b.relu(&up, &format!("{name}.up.relu"));
        let from_up = b.conv(&up, &format!("{name}.conv_up"), c, 3, 1, 1, false);
        let from_skip = b.conv(&skips[level], &format!("{name}.conv_skip"), c, 3, 1, 1, false);
        let y = b.add(&from_up, &from_skip, &format!("{name}.sum"));
        let y = b.batch_norm(&y, &format!("{name}.sum.bn"));
        let y = b.relu(&y, &format!("{name}.sum.relu"));
        x = residual(b, &y, &name, c);
    }
    b.conv(&x, "head", classes, 1, 1, 0, true)
}
