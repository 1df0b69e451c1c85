//! Elementwise activations.

use crate::{Backend, BackendError, GeluForm, Result, RingTensor};

fn todo(what: &'static str) -> BackendError {
    BackendError::Unsupported(what)
}

pub fn abs<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor) -> Result<RingTensor> { Err(todo("abs")) }
pub fn prelu<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _slope: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("prelu")) }
pub fn sigmoid<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("sigmoid")) }
pub fn tanh<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("tanh")) }
pub fn erf<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("erf")) }
pub fn gelu<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32, _form: GeluForm) -> Result<RingTensor> { Err(todo("gelu")) }
pub fn silu<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("silu")) }
pub fn softplus<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("softplus")) }
pub fn elu<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32, _alpha: f32) -> Result<RingTensor> { Err(todo("elu")) }
pub fn hard_sigmoid<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32, _alpha: f32, _beta: f32) -> Result<RingTensor> { Err(todo("hard_sigmoid")) }
pub fn hard_swish<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("hard_swish")) }
