//! Error plumbing: every problem found while importing a node is reported by the front end's
//! own error type, naming the node and its operation type. The shared helpers only need the
//! three kinds of node errors, which [`NodeContext`] builds.

use crate::consts::{check_shape, MAX_DIM};

/// A node being imported, as the shared helpers see it: its identity for messages and the
/// front end's errors about it.
pub trait NodeContext {
    type Error;

    /// The node's display name.
    fn node_name(&self) -> &str;
    /// The node's operation type.
    fn op_type(&self) -> &str;
    /// The name of input `i` as written in the model (empty if there is none); constants
    /// read there become weights of that name.
    fn input_label(&self, i: usize) -> String;

    /// The node is malformed.
    fn invalid(&self, reason: impl Into<String>) -> Self::Error;
    /// The node's shapes do not work out.
    fn shape_err(&self, reason: impl Into<String>) -> Self::Error;
    /// The node is valid but the importer does not support it (in this form).
    fn unsupported(&self, reason: impl Into<String>) -> Self::Error;

    /// An axis in `[-rank, rank)`, normalised to `[0, rank)`.
    fn axis(&self, axis: i64, rank: usize, what: &str) -> Result<usize, Self::Error> {
        let r = rank as i64;
        if axis < -r || axis >= r {
            return Err(self.invalid(format!("{what} {axis} is out of range for rank {rank}")));
        }
        Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
    }

    /// A non-negative value usable as an extent, stride, pad, ...
    fn dim(&self, v: i64, what: &str) -> Result<usize, Self::Error> {
        if v < 0 || v as u64 > MAX_DIM as u64 {
            return Err(self.invalid(format!("{what} {v} is out of range")));
        }
        Ok(v as usize)
    }

    fn dims(&self, v: &[i64], what: &str) -> Result<Vec<usize>, Self::Error> {
        v.iter().map(|&x| self.dim(x, what)).collect()
    }

    /// A shape given as integers (every dimension explicit and non-negative).
    fn target_shape(&self, dims: &[i64]) -> Result<Vec<usize>, Self::Error> {
        let shape = dims
            .iter()
            .map(|&d| {
                if d < 0 || d as u64 > MAX_DIM as u64 {
                    Err(self.invalid(format!("shape {dims:?} has an invalid dimension {d}")))
                } else {
                    Ok(d as usize)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_shape(&shape).map_err(|e| self.shape_err(e))?;
        Ok(shape)
    }
}
