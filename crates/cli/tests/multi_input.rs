//! Models with several client inputs, and integer inputs: `--input NAME=X.npy` once per graph
//! input through `run` (float, cleartext, porthos, 2pc, aramis), `party` over TLS and
//! `compile --calibrate`; every bad input is a clean error naming the input.
//!
//! The model throughout: `y = MatMul(x, W) + Mul(mask, c)` with `x` [1, 4] and `mask` [1, 3].
//! As an ONNX model both inputs are float; as an HLIL graph compiled here (the ONNX front end
//! does not yet declare integer inputs) `mask` is an integer input.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use common::onnx::*;
use cryptflow_onnx::proto::{attribute_proto, AttributeProto};

const W: [f32; 12] = [0.5, -1.0, 0.25, 1.5, 0.75, -0.5, -0.25, 2.0, 1.0, 0.125, -1.5, 0.5];
const C: [f32; 3] = [0.5, -2.0, 1.25];
const N: usize = 3;

/// `y = MatMul(x, W) + Mul(mask, c)`, both inputs float.
fn two_input_onnx(path: &Path) {
    write_onnx(
        path,
        vec![value_info("x", &[1, 4], 1), value_info("mask", &[1, 3], 1)],
        vec![node("MatMul", &["x", "W"], "xw"), node("Mul", &["mask", "c"], "mc"), node("Add", &["xw", "mc"], "y")],
        vec![float_tensor("W", &[4, 3], &W), float_tensor("c", &[3], &C)],
        "y",
    );
}

/// The same model with `mask` an integer input, compiled straight from HLIL into `dir`.
fn compile_integer_model(dir: &Path) {
    use cryptflow_ir::hlil::{Graph, Op};
    use cryptflow_tensor::Tensor;
    let mut g = Graph::new();
    let x = g.input("x", vec![1, 4]);
    let mask = g.integer_input("mask", vec![1, 3]);
    let w = g.weight("W", Tensor::new(vec![4, 3], W.to_vec()).unwrap());
    let c = g.weight("c", Tensor::new(vec![3], C.to_vec()).unwrap());
    let xw = g.add("xw", Op::MatMul, &[x, w]).unwrap();
    let mc = g.add("mc", Op::Mul, &[mask, c]).unwrap();
    let y = g.add("y", Op::Add, &[xw, mc]).unwrap();
    g.outputs.push(y);
    let compiled = cryptflow_athos::compile(g, &Default::default()).unwrap();
    assert!(compiled.program.inputs.iter().any(|i| i.name == "mask" && i.integer), "mask is an integer input");
    let (architecture, float_weights) = cryptflow_ir::artifact::strip_weights(&compiled.hlil);
    let report = serde_json::to_value(&compiled.report).unwrap();
    let public = cryptflow_ir::artifact::PublicProgram::new("integer_mask".into(), compiled.program, architecture, report);
    cryptflow_ir::artifact::write_artifact(dir, &public, &compiled.weights, &float_weights).unwrap();
}

/// A .npy of a dtype the CLI does not take (complex64).
fn write_complex(path: &Path) {
    let mut header = "{'descr': '<c8', 'fortran_order': False, 'shape': (1, 4), }".to_string();
    // Magic, version and length (10 bytes), then the header padded to 64 bytes in all.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 32]);
    std::fs::write(path, bytes).unwrap();
}

fn xs() -> Vec<f32> {
    (0..N * 4).map(|i| (i as f32 * 0.37).sin() * 2.0).collect()
}

fn masks() -> Vec<i64> {
    (0..N * 3).map(|i| [1, 0, -3, 7, 2, 0, 1, 1, -1][i]).collect()
}

/// `x @ W + mask * c` per item.
fn expected(x: &[f32], mask: &[i64]) -> Vec<f32> {
    let mut y = Vec::new();
    for k in 0..N {
        for j in 0..3 {
            let dot: f32 = (0..4).map(|i| x[k * 4 + i] * W[i * 3 + j]).sum();
            y.push(dot + mask[k * 3 + j] as f32 * C[j]);
        }
    }
    y
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= tolerance, "{what}: element {i}: {a} vs {b}");
    }
}

struct Files {
    x: String,
    mask: String,
}

/// Stacks along a new axis: x [N, 1, 4], mask [N, 1, 3] (int64 or float32).
fn write_inputs(dir: &Path, mask_as_float: bool) -> Files {
    let x = dir.join("x.npy");
    write_npy(&x, &[N, 1, 4], &xs());
    let mask = dir.join(if mask_as_float { "mask_f32.npy" } else { "mask.npy" });
    if mask_as_float {
        write_npy(&mask, &[N, 1, 3], &masks().iter().map(|&v| v as f32).collect::<Vec<_>>());
    } else {
        write_npy(&mask, &[N, 1, 3], &masks());
    }
    Files { x: format!("x={}", path_str(&x)), mask: format!("mask={}", path_str(&mask)) }
}

fn run(dir: &Path, backend: &str, inputs: &[&str], out: &Path) -> std::process::Output {
    let mut args = vec!["run", path_str(dir), "--backend", backend, "-o", path_str(out)];
    for i in inputs {
        args.extend(["--input", i]);
    }
    cryptflow(&args)
}

/// Runs every backend on the model in `dir`; all agree with the float executor and with `x @
/// W + mask * c`.
fn check_backends(dir: &Path, work: &Path, files: &Files) {
    let want = expected(&xs(), &masks());
    let float_out = work.join("float.npy");
    let out = run(dir, "float", &[&files.mask, &files.x], &float_out);
    assert!(out.status.success(), "float: {}", stderr(&out));
    let (shape, float) = read_npy(&float_out);
    assert_eq!(shape, vec![N, 1, 3], "outputs are stacked like the inputs");
    assert_close(&float, &want, 1e-5, "float executor");
    for backend in ["cleartext", "porthos", "2pc", "aramis"] {
        let y = work.join(format!("{backend}.npy"));
        let m = work.join(format!("{backend}.json"));
        let mut args = vec!["run", path_str(dir), "--backend", backend, "--input", &files.x, "--input", &files.mask];
        args.extend(["-o", path_str(&y), "--metrics", path_str(&m)]);
        cryptflow_ok(&args);
        let (shape, got) = read_npy(&y);
        assert_eq!(shape, vec![N, 1, 3], "{backend}");
        assert_close(&got, &float, 0.02, backend);
        let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
        assert_eq!(metrics["inferences"], N, "{backend}");
    }
}

#[test]
fn two_float_inputs_of_an_onnx_model_agree_on_every_backend() {
    let work = tempfile::tempdir().unwrap();
    let onnx = work.path().join("two.onnx");
    two_input_onnx(&onnx);
    let dir = work.path().join("two");
    cryptflow_ok(&["compile", path_str(&onnx), "-o", path_str(&dir)]);
    let files = write_inputs(work.path(), true);
    check_backends(&dir, work.path(), &files);
    // An int64 file for a float input is converted.
    let files = write_inputs(work.path(), false);
    let y = work.path().join("y.npy");
    let out = run(&dir, "cleartext", &[&files.x, &files.mask], &y);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_close(&read_npy(&y).1, &expected(&xs(), &masks()), 0.02, "int64 mask for a float input");
}

/// The ONNX form of the integer model: `mask` an int64 graph input, cast to float.
#[test]
fn an_int64_onnx_input_is_an_integer_input() {
    let work = tempfile::tempdir().unwrap();
    let onnx = work.path().join("int64.onnx");
    let mut cast = node("Cast", &["mask"], "maskf");
    cast.attribute.push(AttributeProto {
        name: Some("to".into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(1),
        ..Default::default()
    });
    write_onnx(
        &onnx,
        vec![value_info("x", &[1, 4], 1), value_info("mask", &[1, 3], 7)],
        vec![node("MatMul", &["x", "W"], "xw"), cast, node("Mul", &["maskf", "c"], "mc"), node("Add", &["xw", "mc"], "y")],
        vec![float_tensor("W", &[4, 3], &W), float_tensor("c", &[3], &C)],
        "y",
    );
    let dir = work.path().join("int64");
    cryptflow_ok(&["compile", path_str(&onnx), "-o", path_str(&dir)]);
    let program: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("program.json")).unwrap()).unwrap();
    let mask = program["program"]["inputs"].as_array().unwrap().iter().find(|i| i["name"] == "mask").cloned().unwrap();
    assert_eq!(mask["integer"], true, "{mask}");
    let files = write_inputs(work.path(), false);
    check_backends(&dir, work.path(), &files);
}

#[test]
fn an_integer_input_agrees_on_every_backend() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("int");
    compile_integer_model(&dir);
    let program: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("program.json")).unwrap()).unwrap();
    assert_eq!(program["program"]["inputs"][1]["integer"], true, "{}", program["program"]["inputs"]);
    let files = write_inputs(work.path(), false);
    check_backends(&dir, work.path(), &files);

    // Integral floats and int32 are integers too; a float input takes int32; stacks along
    // the batch axis and along a new axis mix (outputs follow the first input).
    let y = work.path().join("y.npy");
    let files_f = write_inputs(work.path(), true);
    let out = run(&dir, "cleartext", &[&files_f.x, &files_f.mask], &y);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_close(&read_npy(&y).1, &expected(&xs(), &masks()), 0.02, "float32 mask");
    let x32 = work.path().join("x32.npy");
    let xs_int: Vec<i32> = (0..N * 4).map(|i| i as i32 - 5).collect();
    write_npy(&x32, &[N, 4], &xs_int);
    let m32 = work.path().join("m32.npy");
    write_npy(&m32, &[N, 1, 3], &masks().iter().map(|&v| v as i32).collect::<Vec<_>>());
    let (xa, ma) = (format!("x={}", path_str(&x32)), format!("mask={}", path_str(&m32)));
    let out = run(&dir, "cleartext", &[&xa, &ma], &y);
    assert!(out.status.success(), "{}", stderr(&out));
    let (shape, got) = read_npy(&y);
    assert_eq!(shape, vec![N, 3], "stacked along the batch axis like x");
    let xf: Vec<f32> = xs_int.iter().map(|&v| v as f32).collect();
    assert_close(&got, &expected(&xf, &masks()), 0.02, "int32 files");

    // One item of exactly the inputs' shapes.
    let x1 = work.path().join("x1.npy");
    write_npy(&x1, &[1, 4], &xs()[..4]);
    let m1 = work.path().join("m1.npy");
    write_npy(&m1, &[1, 3], &masks()[..3]);
    let out = run(&dir, "porthos", &[&format!("mask={}", path_str(&m1)), &format!("x={}", path_str(&x1))], &y);
    assert!(out.status.success(), "{}", stderr(&out));
    let (shape, got) = read_npy(&y);
    assert_eq!(shape, vec![1, 3]);
    assert_close(&got, &expected(&xs(), &masks())[..3], 0.02, "one item");
}

/// Runs with `inputs` and expects a clean error whose message contains every one of `wanted`.
fn expect_error(dir: &Path, work: &Path, backend: &str, inputs: &[&str], wanted: &[&str]) {
    let y = work.join("err.npy");
    let out = run(dir, backend, inputs, &y);
    assert_clean_failure(&out, &format!("{inputs:?}"));
    let err = stderr(&out);
    for w in wanted {
        assert!(err.contains(w), "{inputs:?}: `{w}` is not in:\n{err}");
    }
    assert!(!y.exists(), "no output after an error");
}

#[test]
fn bad_inputs_are_clean_errors_naming_the_input() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let dir = w.join("int");
    compile_integer_model(&dir);
    let files = write_inputs(w, false);
    let (x, mask) = (files.x.as_str(), files.mask.as_str());
    let file = |name: &str| path_str(&w.join(name)).to_string();
    let named = |input: &str, name: &str| format!("{input}={}", file(name));

    // Names: unknown (the valid ones listed), missing, twice, a plain path for two inputs.
    expect_error(&dir, w, "cleartext", &[x, mask, &format!("nope={}", file("x.npy"))], &["no input `nope`", "`x` [1, 4] (float)", "`mask` [1, 3] (integer)"]);
    expect_error(&dir, w, "cleartext", &[x], &["missing input `mask`", "--input mask=X.npy"]);
    expect_error(&dir, w, "porthos", &[x, mask, x], &["`x` is given twice"]);
    expect_error(&dir, w, "float", &[&file("x.npy")], &["2 inputs", "NAME=X.npy"]);

    // Counts and shapes.
    write_npy(&w.join("x2.npy"), &[2, 1, 4], &xs()[..8]);
    expect_error(&dir, w, "cleartext", &[&named("x", "x2.npy"), mask], &["different numbers of items", "`x` 2", "`mask` 3"]);
    write_npy(&w.join("bad_shape.npy"), &[N, 1, 5], &[0i64; N * 5]);
    expect_error(&dir, w, "cleartext", &[x, &named("mask", "bad_shape.npy")], &["input `mask`", "[3, 1, 5]", "[1, 3]"]);

    // Values: non-integers for an integer input, NaN and infinities anywhere.
    let mut fractional: Vec<f32> = masks().iter().map(|&v| v as f32).collect();
    fractional[4] = 0.5;
    write_npy(&w.join("frac.npy"), &[N, 1, 3], &fractional);
    expect_error(&dir, w, "porthos", &[x, &named("mask", "frac.npy")], &["input `mask`", "integer input", "[1, 0, 1]", "0.5"]);
    let mut nan = xs();
    nan[6] = f32::NAN;
    write_npy(&w.join("nan.npy"), &[N, 1, 4], &nan);
    expect_error(&dir, w, "float", &[&named("x", "nan.npy"), mask], &["input `x`", "[1, 0, 2] is NaN"]);
    let mut inf: Vec<f64> = masks().iter().map(|&v| v as f64).collect();
    inf[0] = f64::INFINITY;
    write_npy(&w.join("inf.npy"), &[N, 1, 3], &inf);
    expect_error(&dir, w, "cleartext", &[x, &named("mask", "inf.npy")], &["input `mask`", "[0, 0, 0] is inf"]);
    let mut big = masks();
    big[1] = 1 << 30;
    write_npy(&w.join("big.npy"), &[N, 1, 4], &[big.clone(), vec![0; 3]].concat());
    expect_error(&dir, w, "cleartext", &[&named("x", "big.npy"), mask], &["input `x`", "float32"]);

    let mut huge = masks();
    huge[8] = 1 << 60;
    write_npy(&w.join("huge.npy"), &[N, 1, 3], &huge);
    expect_error(&dir, w, "porthos", &[x, &named("mask", "huge.npy")], &["input `mask`", "item 2", "beyond the 64-bit ring at scale 12"]);

    // Dtypes and files.
    write_complex(&w.join("complex.npy"));
    expect_error(&dir, w, "cleartext", &[&named("x", "complex.npy"), mask], &["input `x`", "unsupported dtype '<c8'"]);
    std::fs::write(w.join("junk.npy"), b"junk").unwrap();
    expect_error(&dir, w, "cleartext", &[&named("x", "junk.npy"), mask], &["input `x`", "not a valid .npy"]);
    expect_error(&dir, w, "cleartext", &[&named("x", "absent.npy"), mask], &["input `x`", "cannot open"]);
}

#[test]
fn one_input_models_take_a_plain_or_a_named_input() {
    let work = tempfile::tempdir().unwrap();
    let onnx = work.path().join("one.onnx");
    write_onnx(&onnx, vec![value_info("x", &[1, 4], 1)], vec![node("MatMul", &["x", "W"], "y")], vec![float_tensor("W", &[4, 3], &W)], "y");
    let dir = work.path().join("one");
    cryptflow_ok(&["compile", path_str(&onnx), "-o", path_str(&dir)]);
    let x = work.path().join("x.npy");
    write_npy(&x, &[N, 1, 4], &xs());
    let plain = work.path().join("plain.npy");
    let named = work.path().join("named.npy");
    cryptflow_ok(&["run", path_str(&dir), "--backend", "cleartext", "--input", path_str(&x), "-o", path_str(&plain)]);
    cryptflow_ok(&["run", path_str(&dir), "--backend", "porthos", "--input", &format!("x={}", path_str(&x)), "-o", path_str(&named)]);
    let zeros = vec![0; N * 3];
    let want = expected(&xs(), &zeros);
    assert_close(&read_npy(&plain).1, &want, 0.02, "plain --input");
    assert_close(&read_npy(&named).1, &want, 0.02, "named --input");
    // A path with `=` in it is still a path.
    let odd = work.path().join("a=b.npy");
    std::fs::copy(&x, &odd).unwrap();
    cryptflow_ok(&["run", path_str(&dir), "--backend", "float", "--input", path_str(&odd), "-o", path_str(&plain)]);
    let out = cryptflow(&["run", path_str(&dir), "--backend", "float", "--input", path_str(&x), "--input", &format!("x={}", path_str(&x)), "-o", path_str(&plain)]);
    assert_clean_failure(&out, "plain and named");
    assert!(stderr(&out).contains("given twice"), "{}", stderr(&out));
}

#[test]
fn calibration_takes_named_inputs() {
    let work = tempfile::tempdir().unwrap();
    let onnx = work.path().join("two.onnx");
    two_input_onnx(&onnx);
    let files = write_inputs(work.path(), true);
    let dir = work.path().join("two");
    let out = cryptflow_ok(&["compile", path_str(&onnx), "-o", path_str(&dir), "--calibrate", &files.x, "--calibrate", &files.mask]);
    assert!(stderr(&out).contains("<- chosen"), "{}", stderr(&out));
    let out = cryptflow(&["compile", path_str(&onnx), "-o", path_str(&dir), "--calibrate", &files.x]);
    assert_clean_failure(&out, "calibration without mask");
    assert!(stderr(&out).contains("missing input `mask`") && stderr(&out).contains("--calibrate mask=X.npy"), "{}", stderr(&out));
}

#[test]
fn strip_output_softmax_is_accepted() {
    let work = tempfile::tempdir().unwrap();
    let onnx = work.path().join("softmax.onnx");
    write_onnx(
        &onnx,
        vec![value_info("x", &[1, 4], 1)],
        vec![node("MatMul", &["x", "W"], "logits"), node("Softmax", &["logits"], "y")],
        vec![float_tensor("W", &[4, 3], &W)],
        "y",
    );
    let out = cryptflow_ok(&["compile", path_str(&onnx), "--strip-output-softmax", "--emit", "hlil"]);
    let hlil = String::from_utf8_lossy(&out.stdout);
    assert!(!hlil.contains("Softmax("), "the output Softmax is compiled away:\n{hlil}");
    let out = cryptflow_ok(&["compile", path_str(&onnx), "--emit", "hlil"]);
    let hlil = String::from_utf8_lossy(&out.stdout);
    assert!(hlil.contains("Softmax("), "without the flag the output Softmax is computed:\n{hlil}");
}

#[test]
fn distributed_parties_take_two_inputs() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("int");
    compile_integer_model(&dir);
    let files = write_inputs(work.path(), false);
    let keys = work.path().join("keys");
    cryptflow_ok(&["keygen", "-o", path_str(&keys)]);
    let ports = free_ports(3);
    let peers = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let y = work.path().join("y.npy");
    let owner = spawn_party("porthos", 0, &peers, &dir, &keys, &[]);
    let helper = spawn_party("porthos", 2, &peers, &dir, &keys, &[]);
    let client = spawn_party("porthos", 1, &peers, &dir, &keys, &["--input", &files.mask, "--input", &files.x, "-o", path_str(&y)]);
    for (name, child) in [("client", client), ("owner", owner), ("helper", helper)] {
        let (status, err) = wait_bounded(child, Duration::from_secs(60));
        assert!(status.success(), "{name} failed: {err}");
    }
    let (shape, got) = read_npy(&y);
    assert_eq!(shape, vec![N, 1, 3]);
    assert_close(&got, &expected(&xs(), &masks()), 0.02, "distributed");

    // The client checks its inputs before connecting.
    let out = cryptflow(&["party", "--id", "1", "--peers", &peers, path_str(&dir), "--keys", path_str(&keys), "--input", &files.x, "-o", path_str(&y)]);
    assert_clean_failure(&out, "party without mask");
    assert!(stderr(&out).contains("missing input `mask`"), "{}", stderr(&out));
}
