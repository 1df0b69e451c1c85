//! The float reference executor: runs HLIL in f32, freeing each value after its last use.

use cryptflow_ir::hlil::{eval_op, Graph, Op};
use cryptflow_tensor::{FloatTensor, ShapeError};

/// Runs the graph on one set of inputs (in `graph.inputs` order); returns the outputs.
pub fn run(graph: &Graph, inputs: &[FloatTensor]) -> Result<Vec<FloatTensor>, ShapeError> {
    run_observed(graph, inputs, |_, _| {})
}

/// Like [`run`], also recording the largest magnitude every node reaches into `max_abs`
/// (one entry per node, updated with `max`; calibration calls it over many inputs).
pub fn run_tracking_ranges(graph: &Graph, inputs: &[FloatTensor], max_abs: &mut [f32]) -> Result<Vec<FloatTensor>, ShapeError> {
    run_observed(graph, inputs, |id, value| {
        let m = value.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        max_abs[id] = max_abs[id].max(m);
    })
}

/// Like [`run`], calling `observe(node, value)` with the value of every node but the weights
/// as it is computed.
pub fn run_observed(graph: &Graph, inputs: &[FloatTensor], mut observe: impl FnMut(usize, &FloatTensor)) -> Result<Vec<FloatTensor>, ShapeError> {
    if inputs.len() != graph.inputs.len() {
        return Err(ShapeError::new(format!("the model takes {} inputs, {} given", graph.inputs.len(), inputs.len())));
    }
    let mut last_use = vec![0usize; graph.nodes.len()];
    for (id, node) in graph.nodes.iter().enumerate() {
        for &i in &node.inputs {
            last_use[i] = id;
        }
    }
    for &o in &graph.outputs {
        last_use[o] = usize::MAX;
    }
    let mut values: Vec<Option<FloatTensor>> = vec![None; graph.nodes.len()];
    for (k, &id) in graph.inputs.iter().enumerate() {
        let node = &graph.nodes[id];
        if inputs[k].shape() != node.shape.as_slice() {
            return Err(ShapeError::new(format!(
                "input `{}` has shape {:?}, the model expects {:?}",
                node.name,
                inputs[k].shape(),
                node.shape
            )));
        }
        values[id] = Some(inputs[k].clone());
    }
    for (id, node) in graph.nodes.iter().enumerate() {
        match node.op {
            Op::Input | Op::IntegerInput => {}
            Op::Weight(_) => continue,
            _ => {
                let args: Vec<&FloatTensor> = node
                    .inputs
                    .iter()
                    .map(|&i| match &graph.nodes[i].op {
                        Op::Weight(t) => t,
                        _ => values[i].as_ref().expect("topological order"),
                    })
                    .collect();
                let out = eval_op(node, &args)?;
                values[id] = Some(out);
            }
        }
        observe(id, values[id].as_ref().unwrap());
        for &i in &node.inputs {
            if last_use[i] == id {
                values[i] = None;
            }
        }
        if last_use[id] == 0 && !graph.outputs.contains(&id) {
            values[id] = None;
        }
    }
    Ok(graph.outputs.iter().map(|&o| match &graph.nodes[o].op {
        Op::Weight(t) => t.clone(),
        _ => values[o].clone().expect("outputs are kept"),
    }).collect())
}
