//! Zoo networks: parameter counts against the standard figures, determinism, and every small
//! network imported, compiled and run (float executor vs cleartext fixed point).

use cryptflow_athos::{compile, CompileOptions};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_runtime::{decode_output, encode_input, float, Runner};
use cryptflow_tensor::{FloatTensor, Tensor};
use cryptflow_zoo::{build, encode, info, input_shape, names, parameter_count, random_input, Options};

fn with_size(size: &[usize]) -> Options {
    Options { input_size: Some(size.to_vec()), ..Default::default() }
}

#[test]
fn parameter_counts_match_the_standard_figures() {
    // torchvision's counts (1000 classes); the paper rounds them to 11, 22, 25, 44, 60 and 65
    // million (Section VI-A, footnote 5).
    let expected = [
        ("resnet18", 11_689_512u64, 11),
        ("resnet34", 21_797_672, 22),
        ("resnet50", 25_557_032, 25),
        ("resnet101", 44_549_160, 44),
        ("resnet152", 60_192_808, 60),
        ("resnet200", 64_673_832, 65),
        ("densenet121", 7_978_856, 8),
        ("squeezenet", 1_235_496, 1),
    ];
    for (name, count, millions) in expected {
        let got = parameter_count(name, &Options::default()).unwrap();
        assert_eq!(got, count, "{name}");
        // The paper rounds some down (11.7 -> 11) and some up (21.8 -> 22).
        assert!((got as f64 / 1e6 - millions as f64).abs() < 0.75, "{name}");
    }
    let small = [
        ("logistic-regression", 7_850u64),
        ("secureml", 118_282),
        ("minionn-mnist", 33_542),
        ("minionn-cifar", 164_954),
        ("lenet", 431_080),
    ];
    for (name, count) in small {
        assert_eq!(parameter_count(name, &Options::default()).unwrap(), count, "{name}");
    }
    // The count does not depend on the input size of the fully convolutional part.
    assert_eq!(parameter_count("resnet50", &with_size(&[64])).unwrap(), 25_557_032);
}

#[test]
fn building_materialises_exactly_the_counted_parameters() {
    for name in ["lenet", "minionn-cifar", "squeezenet", "unet3d"] {
        let model = build(name, &Options::default()).unwrap();
        let graph = model.graph.as_ref().unwrap();
        let stored: usize = graph.initializer.iter().map(|t| t.float_data.len()).sum();
        let running: usize = graph
            .initializer
            .iter()
            .filter(|t| t.name().ends_with("running_mean") || t.name().ends_with("running_var"))
            .map(|t| t.float_data.len())
            .sum();
        assert_eq!((stored - running) as u64, parameter_count(name, &Options::default()).unwrap(), "{name}");
        assert_eq!(model.opset_import[0].version, Some(13));
    }
}

#[test]
fn models_are_deterministic_in_the_seed() {
    let a = encode(&build("minionn-mnist", &Options { seed: 7, ..Default::default() }).unwrap());
    let b = encode(&build("minionn-mnist", &Options { seed: 7, ..Default::default() }).unwrap());
    let c = encode(&build("minionn-mnist", &Options { seed: 8, ..Default::default() }).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(random_input(100, 3), random_input(100, 3));
    assert_ne!(random_input(100, 3), random_input(100, 4));
}

#[test]
fn names_options_and_errors() {
    assert_eq!(names().len(), 19);
    for name in names() {
        assert_eq!(info(name).unwrap().name, *name);
    }
    assert_eq!(info("LogisticRegression").unwrap().name, "logistic-regression");
    assert_eq!(info("ResNet-50").unwrap().name, "resnet50");
    assert!(info("resnet51").is_err());
    assert_eq!(input_shape("resnet50", &Options::default()).unwrap(), vec![1, 3, 224, 224]);
    assert_eq!(input_shape("resnet50", &with_size(&[96, 128])).unwrap(), vec![1, 3, 96, 128]);
    assert_eq!(input_shape("lenet", &Options::default()).unwrap(), vec![1, 1, 28, 28]);
    assert_eq!(input_shape("secureml", &Options::default()).unwrap(), vec![1, 784]);
    assert_eq!(input_shape("unet3d", &with_size(&[8, 12, 16])).unwrap(), vec![1, 1, 8, 12, 16]);
    assert!(build("lenet", &with_size(&[32])).is_err(), "fixed-size networks refuse a size");
    assert!(build("unet3d", &with_size(&[10])).is_err(), "sizes must divide by 4");
    assert!(build("resnet18", &with_size(&[1, 2, 3])).is_err());
    assert!(build("resnet18", &Options { width: Some(8), ..Default::default() }).is_err());
    // Widths scale the 3D-UNet.
    let narrow = parameter_count("unet3d", &Options::default()).unwrap();
    let wide = parameter_count("unet3d", &Options { width: Some(8), ..Default::default() }).unwrap();
    assert!(wide > 3 * narrow);
}

/// Imports, compiles and runs `name` on a random input: float executor and cleartext fixed
/// point must agree on the prediction of every output row (of 99% of the voxels for the
/// 3D-UNet), values must agree within `tolerance` of the output's RMS, and the output must be
/// of a sensible magnitude (activations neither vanish nor explode with depth).
///
/// Athos encodes weights with floor (the paper's rho_s), which shifts every weight by half a
/// unit in the last place on average; summed over a fan-in of hundreds, at scale 12 that bias
/// dominates the fixed-point error of deep networks with random weights (ResNet-18's logits
/// move by more than their RMS). The deep networks are therefore checked at scale 16.
fn check_network(name: &str, options: &Options, scale: u32, tolerance: f64) {
    let model = build(name, options).unwrap();
    let imported = cryptflow_onnx::import_model(&model, &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let compile_options = CompileOptions { scale, ..Default::default() };
    let compiled = compile(imported.graph, &compile_options).unwrap_or_else(|e| panic!("{name}: {e}"));
    let program = &compiled.program;
    let shape = input_shape(name, options).unwrap();
    assert_eq!(program.inputs[0].shape, shape);
    let x: FloatTensor = Tensor::new(shape.clone(), random_input(shape.iter().product(), 1)).unwrap();
    let y_float = float::run(&compiled.hlil, std::slice::from_ref(&x)).unwrap().remove(0);
    let mut runner = Runner::new(program, Cleartext::new());
    runner.share_weights(Some(&compiled.weights)).unwrap();
    let (revealed, _) = runner.infer(Some(&[encode_input(&x, program.scale)])).unwrap();
    let y_fixed = decode_output(&revealed.unwrap()[0], program.outputs[0].encoding);
    assert_eq!(y_float.shape(), y_fixed.shape(), "{name}");

    let rms = (y_float.data().iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / y_float.data().len() as f64).sqrt();
    assert!((0.05..50.0).contains(&rms), "{name}: output RMS {rms} (activations should stay O(1))");
    let worst = y_float.data().iter().zip(y_fixed.data()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!((worst as f64) < tolerance * rms, "{name}: fixed point differs from float by {worst} (RMS {rms})");

    // Predictions: argmax over the class axis (axis 1) for every other position.
    let classes = y_float.shape()[1];
    let inner: usize = y_float.shape()[2..].iter().product();
    let argmax = |data: &[f32], p: usize| {
        (0..classes).max_by(|&a, &b| data[a * inner + p].total_cmp(&data[b * inner + p])).unwrap()
    };
    let agree = (0..inner).filter(|&p| argmax(y_float.data(), p) == argmax(y_fixed.data(), p)).count();
    let needed = if inner == 1 { 1.0 } else { 0.99 };
    assert!(agree as f64 >= needed * inner as f64, "{name}: predictions agree at {agree} of {inner} positions");
}

#[test]
fn mnist_and_cifar_networks_run() {
    check_network("logistic-regression", &Options::default(), 12, 0.01);
    check_network("secureml", &Options::default(), 12, 0.05);
    for name in ["minionn-mnist", "lenet", "minionn-cifar"] {
        check_network(name, &Options::default(), 12, 0.3);
    }
}

#[test]
fn squeezenet_runs() {
    check_network("squeezenet", &with_size(&[96]), 16, 0.05);
}

#[test]
fn resnets_run_at_a_small_input_size() {
    check_network("resnet18", &with_size(&[64]), 16, 0.2);
    check_network("resnet50", &Options { input_size: Some(vec![32]), classes: Some(100), ..Default::default() }, 16, 0.2);
}

#[test]
fn densenet121_runs_at_a_small_input_size() {
    check_network("densenet121", &Options { input_size: Some(vec![32]), classes: Some(100), ..Default::default() }, 16, 0.2);
}

#[test]
fn unet3d_runs() {
    check_network("unet3d", &Options { input_size: Some(vec![8]), width: Some(2), ..Default::default() }, 12, 0.1);
}
