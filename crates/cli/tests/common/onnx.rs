//! Small ONNX models written by the tests themselves (no Python at test time).

use std::path::Path;

use cryptflow_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use cryptflow_onnx::proto::*;
use prost::Message;

/// A tensor type's element type code (`TensorProto.DataType`): float.
pub const FLOAT: i32 = 1;

pub fn value_info(name: &str, dims: &[i64], elem: i32) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|&d| Dimension { denotation: None, value: Some(dimension::Value::DimValue(d)) }).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        name: Some(format!("{op}_{output}")),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

pub fn float_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto { name: Some(name.into()), dims: dims.to_vec(), data_type: Some(1), float_data: data.to_vec(), ..Default::default() }
}

pub fn write_onnx(path: &Path, inputs: Vec<ValueInfoProto>, nodes: Vec<NodeProto>, inits: Vec<TensorProto>, output: &str) {
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(GraphProto {
            node: nodes,
            name: Some("g".into()),
            initializer: inits,
            input: inputs,
            output: vec![ValueInfoProto { name: Some(output.into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).unwrap();
}
