//! HLIL-to-HLIL passes. Each one keeps the graph's float semantics (up to float rounding).

mod batch_norm;
mod relu_maxpool;

pub use batch_norm::fold_batch_norms;
pub use relu_maxpool::switch_relu_maxpool;
