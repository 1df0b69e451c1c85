//! Reciprocal, division, square roots and the logarithm.

use crate::{Backend, BackendError, Result, RingTensor};

fn todo(what: &'static str) -> BackendError {
    BackendError::Unsupported(what)
}

pub fn reciprocal<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("reciprocal")) }
pub fn div<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _y: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("div")) }
pub fn sqrt<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("sqrt")) }
pub fn rsqrt<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("rsqrt")) }
pub fn log<B: Backend + ?Sized>(_b: &mut B, _x: &RingTensor, _scale: u32) -> Result<RingTensor> { Err(todo("log")) }
