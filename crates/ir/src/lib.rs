//! Athos' two intermediate languages (paper Section III).
//!
//! - [`hlil`]: a statically shaped graph of float tensor operations, what every front end
//!   produces. It has a float semantics ([`hlil::eval_op`]) used by the float reference executor
//!   and by constant folding.
//! - [`llil`]: an integer (Z_2^64, fixed-point) program in which every secret-manipulating step
//!   is a call of the backend interface and everything else is share-agnostic data movement or
//!   local arithmetic.
//!
//! No cryptography and no model format lives here.

pub mod hlil;
pub mod llil;
pub mod limits;
pub mod artifact;

pub use cryptflow_tensor as tensor;
