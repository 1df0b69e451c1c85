//! The head a decoder needs for greedy generation: of the logits `[1, L, V]` at every
//! position, only the argmax at the position the client names is revealed.
//!
//! The client knows which position it asks about (the last token of its prompt so far), so
//! the position is one more of its integer inputs, `next_position` (shape `[1]`), used as a
//! one-hot row: the logits row is picked by a product with the client's row (no truncation),
//! then `ArgMax` over the vocabulary. The output `next_token` (`[1]`, an integer) is all the
//! client learns per step; the logits stay secret.

use cryptflow_ir::hlil::{Graph, Op};

/// The name of the position input the head adds.
pub use cryptflow_ir::llil::NEXT_POSITION;
/// The name of the head's output.
pub const NEXT_TOKEN: &str = "next_token";

/// Replaces the graph's outputs by the next-token head on its first output, which must be
/// logits `[1, L, V]` (or `[L, V]`).
pub fn add_next_token_head(graph: &mut Graph) -> Result<(), String> {
    let &logits = graph.outputs.first().ok_or("the model has no output")?;
    let shape = graph.nodes[logits].shape.clone();
    let (positions, vocab) = match shape.as_slice() {
        [1, l, v] | [l, v] => (*l, *v),
        _ => return Err(format!("the first output `{}` has shape {shape:?}; a decoder's logits are [1, L, V]", graph.nodes[logits].name)),
    };
    if graph.nodes.iter().any(|n| n.name == NEXT_POSITION) {
        return Err(format!("the model already has a tensor named `{NEXT_POSITION}`"));
    }
    let err = |e: cryptflow_tensor::ShapeError| e.to_string();
    let position = graph.integer_input(NEXT_POSITION, vec![1]);
    let row = graph.add(format!("{NEXT_TOKEN}/row"), Op::OneHot { depth: positions }, &[position]).map_err(err)?;
    let table = graph.add(format!("{NEXT_TOKEN}/logits"), Op::Reshape { shape: vec![positions, vocab] }, &[logits]).map_err(err)?;
    let picked = graph.add(format!("{NEXT_TOKEN}/picked"), Op::MatMul, &[row, table]).map_err(err)?;
    let token = graph.add(NEXT_TOKEN, Op::ArgMax { axis: 1, keep_dims: false }, &[picked]).map_err(err)?;
    graph.outputs = vec![token];
    Ok(())
}
