//! HLIL-to-HLIL passes. Each one keeps the graph's float semantics (up to float rounding).

mod activations;
mod batch_norm;
mod next_token;
mod normalize;
mod relu_maxpool;

pub use activations::fuse_activations;
pub use batch_norm::fold_batch_norms;
pub use normalize::fuse_normalizations;
pub use next_token::{add_next_token_head, NEXT_POSITION, NEXT_TOKEN};
pub use relu_maxpool::switch_relu_maxpool;
