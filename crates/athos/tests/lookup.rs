//! Table lookups by the client's token ids (`OneHot` then `MatMul`): the client shares one-hot
//! rows as exact integers, so the lookup needs no truncation and returns the owner's
//! fixed-point rows exactly.

use cryptflow_athos::{compile, CompileOptions};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_ir::hlil::{Graph, Op};
use cryptflow_ir::llil::{encode_with, LOp};
use cryptflow_runtime::{encode_integer_input, encode_one_hot_input, float, Runner};
use cryptflow_tensor::Tensor;

fn lookup_graph(table: &[f32], rows: usize, width: usize, ids: usize) -> Graph {
    let mut g = Graph::new();
    let x = g.integer_input("ids", vec![1, ids]);
    let w = g.weight("table", Tensor::new(vec![rows, width], table.to_vec()).unwrap());
    let one_hot = g.add("rows", Op::OneHot { depth: rows }, &[x]).unwrap();
    let y = g.add("embedded", Op::MatMul, &[one_hot, w]).unwrap();
    g.outputs.push(y);
    g
}

#[test]
fn a_lookup_returns_the_fixed_point_rows_exactly_with_no_truncation() {
    let (rows, width) = (7, 5);
    let table: Vec<f32> = (0..rows * width).map(|k| ((k * 37 % 23) as f32 - 11.0) * 0.173).collect();
    let g = lookup_graph(&table, rows, width, 4);
    let options = CompileOptions::default();
    let compiled = compile(g, &options).unwrap();
    let p = &compiled.program;
    assert!(!p.body.iter().any(|i| matches!(i.op, LOp::ScaleDown { .. })), "{p}");
    assert_eq!(p.inputs.len(), 1, "only the one-hot rows are shared: {p}");
    assert!(p.inputs[0].one_hot && p.inputs[0].integer);
    assert_eq!(p.inputs[0].shape, [1, 4, rows]);
    assert_eq!(p.inputs[0].value_shape(), [1, 4]);

    let ids = [6i64, 0, -1, 3];
    let x = encode_one_hot_input(&[1, 4], &ids, rows).unwrap();
    let mut runner = Runner::new(p, Cleartext::new());
    runner.share_weights(Some(&compiled.weights)).unwrap();
    let (outputs, _) = runner.infer(Some(&[x])).unwrap();
    let y = outputs.unwrap().remove(0);
    let scale = match p.outputs[0].encoding {
        cryptflow_ir::llil::Encoding::Fixed { scale } => scale,
        other => panic!("{other:?}"),
    };
    assert_eq!(scale, options.scale, "the rows keep the table's scale");
    for (k, &id) in ids.iter().enumerate() {
        let row = if id < 0 { (rows as i64 + id) as usize } else { id as usize };
        for c in 0..width {
            let expected = encode_with(table[row * width + c], scale, options.rounding);
            assert_eq!(y.data()[k * width + c], expected, "id {id}, column {c}");
        }
    }
    // The float executor agrees.
    let f = float::run(&compiled.hlil, &[Tensor::new(vec![1, 4], ids.iter().map(|&v| v as f32).collect()).unwrap()]).unwrap().remove(0);
    for (k, &id) in ids.iter().enumerate() {
        let row = if id < 0 { (rows as i64 + id) as usize } else { id as usize };
        assert_eq!(&f.data()[k * width..(k + 1) * width], &table[row * width..(row + 1) * width]);
    }
    // Ids outside the table are refused by the client's encoder.
    let e = encode_one_hot_input(&[1, 4], &[0, 7, 0, 0], rows).unwrap_err();
    assert!(e.contains("element 1 is 7"), "{e}");
    let e = encode_one_hot_input(&[1, 4], &[0, -8, 0, 0], rows).unwrap_err();
    assert!(e.contains("element 1 is -8"), "{e}");
}

#[test]
fn ids_used_both_as_rows_and_as_numbers_are_shared_both_ways() {
    let (rows, width) = (3, 2);
    let mut g = lookup_graph(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], rows, width, 2);
    let ids = g.inputs[0];
    // Also the ids as numbers, reshaped to [1, 2, 1] and added to the rows.
    let r = g.add("ids3", Op::Reshape { shape: vec![1, 2, 1] }, &[ids]).unwrap();
    let y = g.outputs[0];
    let z = g.add("sum", Op::Add, &[y, r]).unwrap();
    g.outputs = vec![z];
    let compiled = compile(g, &CompileOptions::default()).unwrap();
    let p = &compiled.program;
    assert_eq!(p.inputs.len(), 2, "{p}");
    let mut inputs: Vec<_> = Vec::new();
    for i in &p.inputs {
        assert_eq!(i.name, "ids");
        inputs.push(if i.one_hot { encode_one_hot_input(&[1, 2], &[2, 1], rows).unwrap() } else { encode_integer_input(&[1, 2], &[2, 1]) });
    }
    let mut runner = Runner::new(p, Cleartext::new());
    runner.share_weights(Some(&compiled.weights)).unwrap();
    let y = runner.infer(Some(&inputs)).unwrap().0.unwrap().remove(0);
    let decoded = cryptflow_runtime::decode_output(&y, p.outputs[0].encoding);
    assert_eq!(decoded.data(), &[5.0 + 2.0, 6.0 + 2.0, 3.0 + 1.0, 4.0 + 1.0]);
}
