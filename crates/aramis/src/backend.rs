//! [`Aramis`]: any backend whose session is protected by [`crate::protect`], with the output
//! gate before every reveal and Aramis' own counters.

use cryptflow_backend::{Backend, BackendError, ConvGeometry, Owner, PoolGeometry, Result, RingTensor, SharedBits, Traffic, Truncation};

use crate::core::Handle;

/// A semi-honest backend running over an Aramis-protected session.
///
/// Every method is the inner backend's; [`Backend::reveal`] first passes the output gate
/// ([`Handle::confirm`]), so no party releases an output share unless every party has checked
/// everything it received so far. When the layer aborts, the error names the culprit and the
/// check that failed instead of the inner backend's view of it. [`Backend::traffic`] counts
/// everything on the links (payloads, envelopes, start-up, gates); the protocol payload alone
/// is [`Aramis::payload_traffic`].
pub struct Aramis<B: Backend> {
    inner: B,
    handle: Handle,
    name: String,
}

impl<B: Backend> Aramis<B> {
    /// `inner` must run on the session returned by [`crate::protect`] together with `handle`.
    pub fn new(inner: B, handle: Handle) -> Aramis<B> {
        let name = match inner.name() {
            "porthos" => "aramis".to_string(),
            other => format!("aramis-{other}"),
        };
        Aramis { inner, handle, name }
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The protocol's own traffic (what the inner backend would count without Aramis).
    pub fn payload_traffic(&self) -> Traffic {
        self.inner.traffic()
    }

    fn explain(&self, e: BackendError) -> BackendError {
        match self.handle.failure() {
            Some(f) => BackendError::Aborted(f.to_string()),
            None => e,
        }
    }
}

impl<B: Backend> Backend for Aramis<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn party_id(&self) -> usize {
        self.inner.party_id()
    }

    fn adds_public_constants(&self) -> bool {
        self.inner.adds_public_constants()
    }

    fn share(&mut self, owner: Owner, shape: &[usize], value: Option<&RingTensor>) -> Result<RingTensor> {
        self.inner.share(owner, shape, value).map_err(|e| self.explain(e))
    }

    fn reveal(&mut self, x: &RingTensor, to: Owner) -> Result<Option<RingTensor>> {
        self.handle.confirm().map_err(|f| BackendError::Aborted(f.to_string()))?;
        let y = self.inner.reveal(x, to).map_err(|e| self.explain(e))?;
        // The output share just received is verified before the output is released, and an
        // output share this party sent leaves now rather than with its next flight.
        self.handle.settle().map_err(|f| BackendError::Aborted(f.to_string()))?;
        Ok(y)
    }

    fn matmul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        self.inner.matmul(a, b).map_err(|e| self.explain(e))
    }

    fn matmul_weight(&mut self, a: &RingTensor, b: &RingTensor, weight: usize) -> Result<RingTensor> {
        self.inner.matmul_weight(a, b, weight).map_err(|e| self.explain(e))
    }

    // Both one-hot hooks are forwarded together (the product relies on the sharing's form).
    fn share_one_hot(&mut self, shape: &[usize], value: Option<&RingTensor>) -> Result<RingTensor> {
        self.inner.share_one_hot(shape, value).map_err(|e| self.explain(e))
    }

    fn matmul_one_hot(&mut self, a: &RingTensor, b: &RingTensor, weight: Option<usize>) -> Result<RingTensor> {
        self.inner.matmul_one_hot(a, b, weight).map_err(|e| self.explain(e))
    }

    fn set_weight_mask_reuse(&mut self, reuse: bool) -> Result<()> {
        self.inner.set_weight_mask_reuse(reuse)
    }

    fn conv(&mut self, x: &RingTensor, filter: &RingTensor, geom: &ConvGeometry) -> Result<RingTensor> {
        self.inner.conv(x, filter, geom).map_err(|e| self.explain(e))
    }

    fn conv_transpose(&mut self, x: &RingTensor, filter: &RingTensor, geom: &ConvGeometry) -> Result<RingTensor> {
        self.inner.conv_transpose(x, filter, geom).map_err(|e| self.explain(e))
    }

    fn mul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        self.inner.mul(a, b).map_err(|e| self.explain(e))
    }

    fn relu(&mut self, x: &RingTensor) -> Result<RingTensor> {
        self.inner.relu(x).map_err(|e| self.explain(e))
    }

    fn max_pool(&mut self, x: &RingTensor, geom: &PoolGeometry) -> Result<RingTensor> {
        self.inner.max_pool(x, geom).map_err(|e| self.explain(e))
    }

    fn argmax(&mut self, x: &RingTensor, axis: usize, keep_dims: bool) -> Result<RingTensor> {
        self.inner.argmax(x, axis, keep_dims).map_err(|e| self.explain(e))
    }

    fn batch_matmul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        self.inner.batch_matmul(a, b).map_err(|e| self.explain(e))
    }

    fn drelu(&mut self, x: &RingTensor) -> Result<SharedBits> {
        self.inner.drelu(x).map_err(|e| self.explain(e))
    }

    fn mux(&mut self, b: &SharedBits, x: &RingTensor) -> Result<RingTensor> {
        self.inner.mux(b, x).map_err(|e| self.explain(e))
    }

    fn select_by_sign(&mut self, x: &RingTensor, values: &[&RingTensor]) -> Result<Vec<RingTensor>> {
        self.inner.select_by_sign(x, values).map_err(|e| self.explain(e))
    }

    fn select_above(&mut self, x: &RingTensor, items: &[(u64, &RingTensor)]) -> Result<Vec<RingTensor>> {
        self.inner.select_above(x, items).map_err(|e| self.explain(e))
    }

    fn exact_truncation(&self) -> bool {
        self.inner.exact_truncation()
    }

    fn mul_pairs(&mut self, operands: &[&RingTensor], pairs: &[(usize, usize)]) -> Result<Vec<RingTensor>> {
        self.inner.mul_pairs(operands, pairs).map_err(|e| self.explain(e))
    }

    fn scale_down(&mut self, x: &RingTensor, shift: u32) -> Result<RingTensor> {
        self.inner.scale_down(x, shift).map_err(|e| self.explain(e))
    }

    fn divide(&mut self, x: &RingTensor, divisors: &RingTensor) -> Result<RingTensor> {
        self.inner.divide(x, divisors).map_err(|e| self.explain(e))
    }

    fn set_truncation(&mut self, mode: Truncation) -> Result<()> {
        self.inner.set_truncation(mode)
    }

    fn set_comparison_bits(&mut self, bits: u32) -> Result<()> {
        self.inner.set_comparison_bits(bits)
    }

    fn comparison_bits(&self) -> u32 {
        self.inner.comparison_bits()
    }

    fn traffic(&self) -> Traffic {
        let t = self.handle.wire_level_traffic();
        Traffic { bytes_sent: t.bytes_sent, bytes_received: t.bytes_received, rounds: t.rounds }
    }
}
