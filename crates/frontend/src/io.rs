//! The graph's boundary: static shapes of its inputs (declared, or given with
//! `--input-shape`, with notices about what was chosen) and the naming of its outputs.

use std::collections::HashSet;

use cryptflow_ir::hlil::{Graph, NodeId, Op};

use crate::consts::{check_shape, MAX_DIM};
use crate::ImportOptions;

/// Dimensions for messages: `[?, 1, 28, 28]`.
pub fn describe_dims(d: &[Option<usize>]) -> String {
    let parts: Vec<String> = d.iter().map(|d| d.map_or("?".to_string(), |v| v.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

/// A declared input dimension of `size`: known, or None when unknown (negative).
pub fn declared_dim(size: i64) -> Result<Option<usize>, String> {
    match size {
        0 => Err("has an empty (0) dimension".into()),
        v if v > 0 && v as u64 <= MAX_DIM as u64 => Ok(Some(v as usize)),
        v if v > 0 => Err(format!("dimension {v} is too large")),
        _ => Ok(None),
    }
}

/// The reason to reject an input of a non-floating-point element type.
pub fn not_a_float_input(type_name: &str) -> String {
    format!("has element type {type_name}; only floating-point inputs are supported")
}

/// The first name `--input-shape` gives that is not one of the graph's `inputs`.
pub fn unknown_input_shape_name<'o>(options: &'o ImportOptions, inputs: &[String]) -> Option<&'o String> {
    options.input_shapes.keys().find(|name| !inputs.contains(name))
}

/// The static shape of input `name`: the one `--input-shape` gives (`given`), else the one
/// the model declares with unknown dimensions set to 1 (each with a notice). `declarer` names
/// what declares shapes ("model", "graph"); `undeclared` is the reason to reject an input
/// without either.
pub fn input_shape(
    name: &str,
    given: Option<&Vec<usize>>,
    declared: Option<Vec<Option<usize>>>,
    declarer: &str,
    undeclared: &str,
    notices: &mut Vec<String>,
) -> Result<Vec<usize>, String> {
    let shape = match (given, declared) {
        (Some(given), declared) => {
            if let Some(d) = &declared {
                if d.len() != given.len() {
                    return Err(format!(
                        "--input-shape gives rank {} ({given:?}) but the {declarer} declares rank {}",
                        given.len(),
                        d.len()
                    ));
                }
                if d.iter().zip(given).any(|(d, g)| d.is_some_and(|d| d != *g)) {
                    notices.push(format!(
                        "input `{name}`: --input-shape {given:?} overrides fixed dimensions declared in the model ({})",
                        describe_dims(d)
                    ));
                }
            }
            if given.contains(&0) {
                return Err(format!("--input-shape {given:?} has an empty (0) dimension"));
            }
            given.clone()
        }
        (None, Some(d)) => {
            if d.iter().any(Option::is_none) {
                notices.push(format!(
                    "input `{name}` has symbolic or unknown dimensions ({}); they are set to 1 (use --input-shape {name}=... to choose)",
                    describe_dims(&d)
                ));
            }
            d.iter().map(|d| d.unwrap_or(1)).collect()
        }
        (None, None) => return Err(undeclared.to_string()),
    };
    check_shape(&shape)?;
    Ok(shape)
}

/// Makes `outs` the graph's outputs under their model names (renaming the producing node
/// when no other name claims it, else adding an identity: a same-shape Reshape), prunes what
/// they do not need and validates the graph. Errors describe an invalid model.
pub fn set_outputs(graph: &mut Graph, outs: Vec<(String, NodeId)>) -> Result<(), String> {
    let mut claimed: HashSet<NodeId> = graph.inputs.iter().copied().collect();
    for (name, id) in &outs {
        if graph.nodes[*id].name == *name {
            claimed.insert(*id);
        }
    }
    let mut final_ids = Vec::new();
    for (name, id) in outs {
        let id = if graph.nodes[id].name == name {
            id
        } else if claimed.insert(id) {
            graph.nodes[id].name = name.clone();
            id
        } else {
            let shape = graph.nodes[id].shape.clone();
            graph.add(name.clone(), Op::Reshape { shape }, &[id]).map_err(|e| format!("graph output `{name}`: {e}"))?
        };
        final_ids.push(id);
    }
    graph.outputs = final_ids;
    graph.prune();
    graph.validate().map_err(|e| format!("internal check of the imported graph failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_and_given_input_shapes() {
        let mut notices = Vec::new();
        let d = vec![None, Some(3)];
        assert_eq!(input_shape("x", None, Some(d.clone()), "model", "none", &mut notices).unwrap(), vec![1, 3]);
        assert!(notices[0].contains("[?, 3]"));
        assert_eq!(input_shape("x", Some(&vec![2, 4]), Some(d.clone()), "model", "none", &mut notices).unwrap(), vec![2, 4]);
        assert!(notices[1].contains("overrides fixed dimensions"));
        let e = input_shape("x", Some(&vec![2]), Some(d), "graph", "none", &mut notices).unwrap_err();
        assert_eq!(e, "--input-shape gives rank 1 ([2]) but the graph declares rank 2");
        assert_eq!(input_shape("x", None, None, "model", "none", &mut notices).unwrap_err(), "none");
        assert_eq!(declared_dim(0).unwrap_err(), "has an empty (0) dimension");
        assert_eq!(declared_dim(-1).unwrap(), None);
        assert!(declared_dim(1 << 40).is_err());
    }
}
