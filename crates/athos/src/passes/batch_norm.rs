//! Batch-normalisation folding (float-to-fixed step of III-B).
//!
//! At inference a BatchNorm is the per-channel affine map `x * a + b`. When it follows a
//! convolution or matrix product whose output feeds nothing else, the model owner folds it into
//! that layer's weights and bias in plaintext, so it costs nothing at run time. Any other
//! BatchNorm becomes an elementwise multiply-add with per-channel weights.

use cryptflow_ir::hlil::{batch_norm_affine, Graph, NodeId, Op};
use cryptflow_tensor::{FloatTensor, Layout, ShapeError, Tensor};

/// Folds (when `fold` is set and possible) or lowers every BatchNorm; returns (folded, lowered
/// to multiply-add).
pub fn fold_batch_norms(graph: &mut Graph, fold: bool) -> Result<(usize, usize), ShapeError> {
    let mut folded = 0;
    let mut lowered = 0;
    let mut rebuilt = Graph::new();
    let mut map: Vec<NodeId> = Vec::with_capacity(graph.nodes.len());
    let consumers = graph.consumers();
    for (id, node) in graph.nodes.iter().enumerate() {
        let new_id = match &node.op {
            Op::Input => rebuilt.input(node.name.clone(), node.shape.clone()),
            Op::IntegerInput => rebuilt.integer_input(node.name.clone(), node.shape.clone()),
            Op::BatchNorm { epsilon, channel_axis } => {
                let weight = |k: usize| graph.weight_value(node.inputs[k]);
                let (Some(gamma), Some(beta), Some(mean), Some(var)) = (weight(1), weight(2), weight(3), weight(4)) else {
                    return Err(ShapeError::new(format!(
                        "BatchNorm `{}` has statistics computed at run time; only constant statistics are supported",
                        node.name
                    )));
                };
                let (scale, bias) = batch_norm_affine(gamma, beta, mean, var, *epsilon);
                let producer = node.inputs[0];
                let single_use = fold && consumers[producer].len() == 1 && !graph.outputs.contains(&producer);
                match single_use.then(|| try_fold(&rebuilt, map[producer], *channel_axis, &scale, &bias)).flatten() {
                    Some(folded_node) => {
                        folded += 1;
                        let (op, inputs) = folded_node;
                        let new_inputs: Vec<NodeId> = inputs
                            .into_iter()
                            .map(|input| match input {
                                Operand::Existing(id) => Ok(id),
                                Operand::NewWeight(name, t) => Ok(rebuilt.weight(name, t)),
                                Operand::NewMatMul(x, weight_name, t, name) => {
                                    let w = rebuilt.weight(weight_name, t);
                                    rebuilt.add(name, Op::MatMul, &[x, w])
                                }
                            })
                            .collect::<Result<_, ShapeError>>()?;
                        rebuilt.add(node.name.clone(), op, &new_inputs)?
                    }
                    None => {
                        lowered += 1;
                        let rank = node.shape.len();
                        let mut channel_shape = vec![1; rank];
                        channel_shape[*channel_axis] = scale.len();
                        let a = rebuilt.weight(format!("{}/scale", node.name), Tensor::new(channel_shape.clone(), scale)?);
                        let b = rebuilt.weight(format!("{}/shift", node.name), Tensor::new(channel_shape, bias)?);
                        let scaled = rebuilt.add(format!("{}/mul", node.name), Op::Mul, &[map[producer], a])?;
                        rebuilt.add(node.name.clone(), Op::Add, &[scaled, b])?
                    }
                }
            }
            op => {
                let inputs: Vec<NodeId> = node.inputs.iter().map(|&i| map[i]).collect();
                match op {
                    Op::Weight(t) => rebuilt.weight(node.name.clone(), t.clone()),
                    _ => rebuilt.add(node.name.clone(), op.clone(), &inputs)?,
                }
            }
        };
        debug_assert_eq!(map.len(), id);
        map.push(new_id);
    }
    rebuilt.outputs = graph.outputs.iter().map(|&o| map[o]).collect();
    rebuilt.prune();
    *graph = rebuilt;
    Ok((folded, lowered))
}

enum Operand {
    Existing(NodeId),
    NewWeight(String, FloatTensor),
    /// `MatMul(input, new weight)`, added before the folded node.
    NewMatMul(NodeId, String, FloatTensor, String),
}

/// If `producer` (already in `rebuilt`) is a Conv or MatMul with constant weights whose output
/// channels lie on `channel_axis`, returns the replacement op and operands with `x * scale +
/// bias` folded in.
fn try_fold(rebuilt: &Graph, producer: NodeId, channel_axis: usize, scale: &[f32], bias: &[f32]) -> Option<(Op, Vec<Operand>)> {
    let node = rebuilt.node(producer);
    let channels = scale.len();
    match &node.op {
        Op::Conv(g) => {
            let expected_axis = match g.layout {
                Layout::ChannelsFirst => 1,
                Layout::ChannelsLast => node.shape.len() - 1,
            };
            if channel_axis != expected_axis || g.out_channels != channels {
                return None;
            }
            let filter = rebuilt.weight_value(node.inputs[1])?;
            let per_out = filter.len() / channels;
            let mut w = filter.data().to_vec();
            for (o, chunk) in w.chunks_mut(per_out).enumerate() {
                chunk.iter_mut().for_each(|v| *v *= scale[o]);
            }
            let old_bias = match node.inputs.get(2) {
                Some(&b) => rebuilt.weight_value(b)?.data().to_vec(),
                None => vec![0.0; channels],
            };
            let new_bias: Vec<f32> = (0..channels).map(|o| old_bias[o] * scale[o] + bias[o]).collect();
            Some((
                node.op.clone(),
                vec![
                    Operand::Existing(node.inputs[0]),
                    Operand::NewWeight(format!("{}/filter_bn", node.name), Tensor::new(filter.shape().to_vec(), w).ok()?),
                    Operand::NewWeight(format!("{}/bias_bn", node.name), Tensor::new(vec![channels], new_bias).ok()?),
                ],
            ))
        }
        Op::MatMul => fold_into_matmul(rebuilt, producer, None, channel_axis, scale, bias),
        Op::Add => {
            // Gemm-style `MatMul(x, W) + b`: fold into both W and b.
            let (lhs, rhs) = (node.inputs[0], node.inputs[1]);
            let old_bias = rebuilt.weight_value(rhs)?;
            if rebuilt.node(lhs).op != Op::MatMul || old_bias.len() != channels {
                return None;
            }
            fold_into_matmul(rebuilt, lhs, Some(old_bias.data()), channel_axis, scale, bias)
        }
        _ => None,
    }
}

/// `(x W + b_old) * scale + shift`  ==  `x (W * scale) + (b_old * scale + shift)`.
fn fold_into_matmul(
    rebuilt: &Graph,
    matmul: NodeId,
    old_bias: Option<&[f32]>,
    channel_axis: usize,
    scale: &[f32],
    shift: &[f32],
) -> Option<(Op, Vec<Operand>)> {
    let node = rebuilt.node(matmul);
    let channels = scale.len();
    if channel_axis != node.shape.len() - 1 {
        return None;
    }
    let weights = rebuilt.weight_value(node.inputs[1])?;
    if weights.rank() != 2 || weights.shape()[1] != channels {
        return None;
    }
    let mut w = weights.data().to_vec();
    for row in w.chunks_mut(channels) {
        row.iter_mut().zip(scale).for_each(|(v, s)| *v *= s);
    }
    let new_bias: Vec<f32> = (0..channels).map(|c| old_bias.map_or(0.0, |b| b[c]) * scale[c] + shift[c]).collect();
    Some((
        Op::Add,
        vec![
            Operand::NewMatMul(
                node.inputs[0],
                format!("{}/weights_bn", node.name),
                Tensor::new(weights.shape().to_vec(), w).ok()?,
                node.name.clone(),
            ),
            Operand::NewWeight(format!("{}/bias_bn", node.name), Tensor::new(vec![channels], new_bias).ok()?),
        ],
    ))
}
