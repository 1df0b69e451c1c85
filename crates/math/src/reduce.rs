//! Maxima and minima.

use crate::{Backend, BackendError, Result, RingTensor};

fn todo(what: &'static str) -> BackendError {
    BackendError::Unsupported(what)
}

pub fn max<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _y: &RingTensor) -> Result<RingTensor> { Err(todo("max")) }
pub fn min<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _y: &RingTensor) -> Result<RingTensor> { Err(todo("min")) }
pub fn reduce_max<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _axes: &[usize], _keep_dims: bool) -> Result<RingTensor> { Err(todo("reduce_max")) }
pub fn reduce_min<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _axes: &[usize], _keep_dims: bool) -> Result<RingTensor> { Err(todo("reduce_min")) }
