//! ReLU-MaxPool switching (paper III-D1): `MaxPool(ReLU(x))` becomes `ReLU(MaxPool(x))`.
//!
//! Both are monotone, so they commute exactly; after the switch the (expensive, comparison
//! based) ReLU runs on the pooled, smaller tensor.

use cryptflow_ir::hlil::{Graph, Op};

/// Rewrites every `MaxPool(ReLU(x))` whose ReLU feeds nothing else; returns how many.
pub fn switch_relu_maxpool(graph: &mut Graph) -> usize {
    let consumers = graph.consumers();
    let mut switched = 0;
    for pool in 0..graph.nodes.len() {
        if !matches!(graph.nodes[pool].op, Op::MaxPool(_)) {
            continue;
        }
        let relu = graph.nodes[pool].inputs[0];
        if graph.nodes[relu].op != Op::Relu || consumers[relu].len() != 1 || graph.outputs.contains(&relu) {
            continue;
        }
        // relu: r = Relu(x) ; pool: p = MaxPool(r)   ==>   relu: m = MaxPool(x) ; pool: p = Relu(m)
        // The node ids stay in topological order: `relu` comes before `pool`.
        let x = graph.nodes[relu].inputs[0];
        let pool_op = std::mem::replace(&mut graph.nodes[pool].op, Op::Relu);
        let pooled_shape = graph.nodes[pool].shape.clone();
        let relu_node = &mut graph.nodes[relu];
        relu_node.op = pool_op;
        relu_node.inputs = vec![x];
        relu_node.shape = pooled_shape;
        relu_node.name = format!("{}/pool_before_relu", relu_node.name);
        switched += 1;
    }
    switched
}
