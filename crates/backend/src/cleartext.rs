//! The cleartext reference backend: exact fixed-point arithmetic on plain values. Every secure
//! backend is checked against it.

use cryptflow_tensor::kernels;

use crate::{Backend, BackendError, ConvGeometry, Owner, PoolGeometry, Result, RingTensor, SharedBits, Truncation};

#[derive(Debug, Default)]
pub struct Cleartext;

impl Cleartext {
    pub fn new() -> Self {
        Cleartext
    }
}

/// Arithmetic (sign-extending) shift of a ring element.
pub fn arithmetic_shift(v: u64, shift: u32) -> u64 {
    ((v as i64) >> shift) as u64
}

/// Floor division of a signed ring element by a positive integer.
pub fn floor_divide(v: u64, d: u64) -> u64 {
    (v as i64).div_euclid(d as i64) as u64
}

impl Backend for Cleartext {
    fn name(&self) -> &str {
        "cleartext"
    }

    fn party_id(&self) -> usize {
        0
    }

    fn adds_public_constants(&self) -> bool {
        true
    }

    /// The cleartext truncation is exact: every mode computes it the same way.
    fn set_truncation(&mut self, _mode: Truncation) -> Result<()> {
        Ok(())
    }

    /// The floor, whatever the values: so the math library takes the paths it takes on the
    /// secure backends under faithful or exact truncation (the command line's default), and
    /// a secure run under exact truncation computes what this one does, bit for bit.
    fn exact_truncation(&self) -> bool {
        true
    }

    fn share(&mut self, owner: Owner, shape: &[usize], value: Option<&RingTensor>) -> Result<RingTensor> {
        let value = value.ok_or_else(|| BackendError::Aborted(format!("{owner:?} gave no value to share")))?;
        if value.shape() != shape {
            return Err(BackendError::Shape(cryptflow_tensor::ShapeError::new(format!(
                "{owner:?} input has shape {:?}, expected {shape:?}",
                value.shape()
            ))));
        }
        Ok(value.clone())
    }

    fn reveal(&mut self, x: &RingTensor, _to: Owner) -> Result<Option<RingTensor>> {
        Ok(Some(x.clone()))
    }

    fn matmul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        Ok(kernels::matmul(a, b)?)
    }

    fn conv(&mut self, x: &RingTensor, filter: &RingTensor, geom: &ConvGeometry) -> Result<RingTensor> {
        Ok(kernels::conv(x, filter, geom)?)
    }

    fn conv_transpose(&mut self, x: &RingTensor, filter: &RingTensor, geom: &ConvGeometry) -> Result<RingTensor> {
        Ok(kernels::conv_transpose(x, filter, geom)?)
    }

    fn mul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        Ok(a.mul(b)?)
    }

    fn relu(&mut self, x: &RingTensor) -> Result<RingTensor> {
        Ok(x.map(|v| if (v as i64) < 0 { 0 } else { v }))
    }

    fn max_pool(&mut self, x: &RingTensor, geom: &PoolGeometry) -> Result<RingTensor> {
        Ok(kernels::max_pool(x, geom)?)
    }

    fn argmax(&mut self, x: &RingTensor, axis: usize, keep_dims: bool) -> Result<RingTensor> {
        Ok(kernels::argmax(x, axis, keep_dims)?)
    }

    fn batch_matmul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        Ok(kernels::batch_matmul(a, b)?)
    }

    fn drelu(&mut self, x: &RingTensor) -> Result<SharedBits> {
        Ok(SharedBits(x.map(|v| ((v as i64) >= 0) as u64)))
    }

    fn mux(&mut self, b: &SharedBits, x: &RingTensor) -> Result<RingTensor> {
        Ok(b.0.zip_with(x, |b, v| if b == 1 { v } else { 0 })?)
    }

    fn scale_down(&mut self, x: &RingTensor, shift: u32) -> Result<RingTensor> {
        Ok(x.map(|v| arithmetic_shift(v, shift)))
    }

    fn divide(&mut self, x: &RingTensor, divisors: &RingTensor) -> Result<RingTensor> {
        if divisors.data().iter().any(|&d| d == 0 || (d as i64) < 0) {
            return Err(BackendError::Aborted("division by a non-positive public divisor".into()));
        }
        Ok(x.zip_with(divisors, floor_divide)?)
    }
}
