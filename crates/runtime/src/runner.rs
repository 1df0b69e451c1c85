use std::time::Instant;

use cryptflow_backend::{Backend, BackendError, Owner, Traffic};
use cryptflow_ir::llil::{encode, Encoding, Instr, LOp, Owner as ProgramOwner, Program, UnaryFn, WeightSource};
use cryptflow_math as math;
use cryptflow_tensor::{kernels, movement, num_elements, FloatTensor, RingTensor, ShapeError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{layer} ({op}): {source}")]
    Backend { layer: String, op: &'static str, source: BackendError },
    #[error("{layer} ({op}): {source}")]
    Shape { layer: String, op: &'static str, source: ShapeError },
    #[error("{0}")]
    Input(String),
    #[error("crashed on purpose before instruction {instruction} (--inject-fault)")]
    InjectedCrash { instruction: usize },
}

/// Time and traffic of one model layer (all LLIL instructions generated for one HLIL node).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LayerMetrics {
    pub layer: String,
    /// Backend calls made for this layer, e.g. `["Conv", "ScaleDown"]`.
    pub calls: Vec<String>,
    pub seconds: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub rounds: u64,
}

/// The fixed-point encoding of a float input at the program's scale.
pub fn encode_input(x: &FloatTensor, scale: u32) -> RingTensor {
    x.map(|v| encode(v, scale))
}

/// The encoding of an integer input (`SecretInput::integer`): the exact integer, `v` as the
/// ring element `v mod 2^64` (two's complement), not fixed point; the program raises it to
/// its scale itself.
pub fn encode_integer_input(shape: &[usize], values: &[i64]) -> RingTensor {
    RingTensor::new(shape.to_vec(), values.iter().map(|&v| v as u64).collect()).expect("one value per element of the shape")
}

/// The encoding of a one-hot input (`SecretInput::one_hot`): for each integer, a row of
/// `depth` ring elements, 1 in its column (negative integers count from the end) and 0
/// elsewhere. An integer outside `-depth..depth` is an error naming its position.
pub fn encode_one_hot_input(shape: &[usize], values: &[i64], depth: usize) -> Result<RingTensor, String> {
    let mut rows = vec![0u64; values.len() * depth];
    for (k, &v) in values.iter().enumerate() {
        let column = cryptflow_ir::hlil::one_hot_column(v, depth)
            .ok_or_else(|| format!("element {k} is {v}, outside the table's {depth} rows (0..{depth}, or -{depth}..0 from the end)"))?;
        rows[k * depth + column] = 1;
    }
    let mut ring_shape = shape.to_vec();
    ring_shape.push(depth);
    RingTensor::new(ring_shape, rows).map_err(|e| e.to_string())
}

pub fn decode_output(y: &RingTensor, encoding: Encoding) -> FloatTensor {
    y.map(|v| encoding.decode(v))
}

fn to_backend_owner(owner: ProgramOwner) -> Owner {
    match owner {
        ProgramOwner::ModelOwner => Owner::ModelOwner,
        ProgramOwner::Client => Owner::Client,
    }
}

/// Called after every instruction (progress display).
type Observer<'p> = Box<dyn FnMut(&Instr) + Send + 'p>;

/// Weight shares of at most this many bytes in all are kept from one inference to the next.
pub const KEPT_WEIGHT_BYTES: u64 = 32 << 20;

/// One party's run of a program over a backend.
///
/// Weights are shared just before the first instruction that reads them. A model whose weight
/// shares take more than [`KEPT_WEIGHT_BYTES`] has them streamed: each share is released after
/// its last use in an inference and shared again in the next, so a party never holds the shares
/// of all the weights at once (ResNet-50's are 205 MB per share-holder). Smaller models keep
/// their shares for the next inferences (streaming cost a 431 k-parameter LeNet a fifth of its
/// time). The choice depends on the program alone: every party must make the same one, or their
/// common key streams would part. Sharing an owner's value is local in every backend of this
/// workspace (the other share comes from a common key), so streaming costs key stream and fresh
/// memory, not communication.
pub struct Runner<'p, B: Backend> {
    program: &'p Program,
    backend: B,
    slots: Vec<Option<RingTensor>>,
    weights_shared: bool,
    /// The model owner's weights (`None` at the other parties), in `program.weights` order.
    weights: Option<&'p dyn WeightSource>,
    /// For each slot, the index of the weight it holds, if it holds one.
    weight_index: Vec<Option<usize>>,
    /// For each instruction, the weight slots it reads for the last time in the body.
    weights_done_after: Vec<Vec<usize>>,
    /// Whether weight shares stay live from one inference to the next.
    keep_weight_shares: bool,
    live_bytes: u64,
    peak_live_bytes: u64,
    crash_at: Option<usize>,
    progress: Option<Observer<'p>>,
    /// Which client inputs are one-hot rows shared by [`Backend::share_one_hot`] and which
    /// instructions are their products ([`OneHotPlan`]).
    one_hot: OneHotPlan,
    /// Why the program cannot run here (see [`Runner::new`]).
    invalid: Option<String>,
    /// This party's share of the machine's memory, held while it runs.
    _memory: Option<crate::limits::MemoryClaim>,
    /// Backend calls whose operands exceed this many elements run in slabs ([`crate::slab`]).
    slab_elements: usize,
}

impl<'p, B: Backend> Runner<'p, B> {
    /// A program whose shapes exceed [`crate::limits::MAX_TENSOR_ELEMENTS`], or that this
    /// machine's memory cannot hold, is refused by the first [`Runner::share_weights`] or
    /// [`Runner::infer`], before anything is allocated for it.
    pub fn new(program: &'p Program, backend: B) -> Self {
        let (invalid, memory) = match crate::limits::check_program(program) {
            Err(e) => (Some(format!("the program is refused: {e}")), None),
            Ok(()) => match crate::limits::claim_memory(crate::limits::predicted_bytes(program), crate::limits::machine_memory_bytes()) {
                Ok(claim) => (None, Some(claim)),
                Err(e) => (Some(e), None),
            },
        };
        if invalid.is_some() {
            // Nothing of it runs: no index into its slots is built.
            return Runner {
                program,
                backend,
                slots: Vec::new(),
                weights_shared: false,
                weights: None,
                keep_weight_shares: false,
                weight_index: Vec::new(),
                weights_done_after: Vec::new(),
                live_bytes: 0,
                peak_live_bytes: 0,
                crash_at: None,
                progress: None,
                one_hot: OneHotPlan::default(),
                invalid,
                _memory: None,
                slab_elements: crate::slab::default_budget(),
            };
        }
        let mut weight_index = vec![None; program.slots.len()];
        for (k, w) in program.weights.iter().enumerate() {
            weight_index[w.slot] = Some(k);
        }
        let outputs: Vec<usize> = program.outputs.iter().map(|o| o.slot).collect();
        let mut last_use = vec![None; program.slots.len()];
        for (k, instr) in program.body.iter().enumerate() {
            for &a in &instr.args {
                if weight_index[a].is_some() && !outputs.contains(&a) {
                    last_use[a] = Some(k);
                }
            }
        }
        let mut weights_done_after = vec![Vec::new(); program.body.len()];
        for (slot, k) in last_use.iter().enumerate() {
            if let Some(k) = k {
                weights_done_after[*k].push(slot);
            }
        }
        Runner {
            program,
            backend,
            slots: vec![None; program.slots.len()],
            weights_shared: false,
            weights: None,
            keep_weight_shares: program.weights.iter().map(|w| 8 * num_elements(&w.shape) as u64).sum::<u64>() <= KEPT_WEIGHT_BYTES,
            weight_index,
            weights_done_after,
            live_bytes: 0,
            peak_live_bytes: 0,
            crash_at: None,
            progress: None,
            one_hot: OneHotPlan::of(program),
            invalid: None,
            _memory: memory,
            slab_elements: crate::slab::default_budget(),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Ends the run and hands the backend back (its session, counters, ...).
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Calls `observer` after every instruction (progress display).
    pub fn observe_progress(&mut self, observer: impl FnMut(&Instr) + Send + 'p) {
        self.progress = Some(Box::new(observer));
    }

    /// Fault injection for checking failure handling: stop abruptly before instruction `k`
    /// of the next inference, as a crashed party would (its links close when it is dropped).
    pub fn crash_before_instruction(&mut self, k: usize) {
        self.crash_at = Some(k);
    }

    /// Runs backend calls whose input and output exceed `elements` in slabs
    /// ([`crate::slab`]; default [`crate::slab::default_budget`]). Every party of a
    /// session must choose the same, before the first inference.
    pub fn set_slab_elements(&mut self, elements: usize) {
        self.slab_elements = elements.max(1);
    }

    /// Largest number of bytes of tensors this party held at once so far.
    pub fn peak_live_bytes(&self) -> u64 {
        self.peak_live_bytes
    }

    fn store(&mut self, slot: usize, value: RingTensor) {
        self.live_bytes += value.size_in_bytes() as u64;
        self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
        if let Some(old) = self.slots[slot].replace(value) {
            self.live_bytes -= old.size_in_bytes() as u64;
        }
    }

    fn release(&mut self, slot: usize) {
        if let Some(old) = self.slots[slot].take() {
            self.live_bytes -= old.size_in_bytes() as u64;
        }
    }

    /// Takes the model owner's weights for the session (in `program.weights` order; the other
    /// parties pass `None`). They are checked here and shared as the inferences need them (see
    /// [`Runner`]). Returns the pseudo-layer `(share weights)`: no time or traffic any more,
    /// kept so that reports keep their shape.
    pub fn share_weights(&mut self, weights: Option<&'p dyn WeightSource>) -> Result<LayerMetrics, RunError> {
        if let Some(e) = &self.invalid {
            return Err(RunError::Input(e.clone()));
        }
        if let Some(w) = weights {
            if w.count() != self.program.weights.len() {
                return Err(RunError::Input(format!("{} weights given, the program has {}", w.count(), self.program.weights.len())));
            }
            for (k, spec) in self.program.weights.iter().enumerate() {
                if w.shape(k) != spec.shape.as_slice() {
                    return Err(RunError::Input(format!(
                        "weight `{}` has shape {:?}, the program expects {:?}",
                        spec.name,
                        w.shape(k),
                        spec.shape
                    )));
                }
            }
        }
        self.weights = weights;
        self.weights_shared = true;
        Ok(LayerMetrics { layer: "(share weights)".into(), ..Default::default() })
    }

    /// Shares the weights `slots` that are not live (every party calls this at the same points).
    fn stream_weights(&mut self, slots: &[usize]) -> Result<(), RunError> {
        for &slot in slots {
            let Some(k) = self.weight_index[slot] else { continue };
            if self.slots[slot].is_some() {
                continue;
            }
            let spec = &self.program.weights[k];
            let value = match self.weights {
                Some(w) => Some(w.load(k).map_err(|e| RunError::Input(format!("weight `{}`: {e}", spec.name)))?),
                None => None,
            };
            let share = self
                .backend
                .share(to_backend_owner(spec.owner), &spec.shape, value.as_deref())
                .map_err(|source| RunError::Backend { layer: spec.name.clone(), op: "share weights", source })?;
            self.store(slot, share);
        }
        Ok(())
    }

    /// Runs one inference. The client passes its encoded inputs (in `program.inputs` order),
    /// the others `None`. Returns the revealed outputs on the client, `None` elsewhere.
    pub fn infer(&mut self, inputs: Option<&[RingTensor]>) -> Result<(Option<Vec<RingTensor>>, Vec<LayerMetrics>), RunError> {
        if let Some(e) = &self.invalid {
            return Err(RunError::Input(e.clone()));
        }
        if !self.weights_shared {
            return Err(RunError::Input("weights must be shared before the first inference".into()));
        }
        if let Some(x) = inputs {
            if x.len() != self.program.inputs.len() {
                return Err(RunError::Input(format!("{} inputs given, the model takes {}", x.len(), self.program.inputs.len())));
            }
            for (value, spec) in x.iter().zip(&self.program.inputs) {
                if value.shape() != spec.shape.as_slice() {
                    return Err(RunError::Input(format!(
                        "input `{}` has shape {:?}, the model expects {:?}",
                        spec.name,
                        value.shape(),
                        spec.shape
                    )));
                }
            }
        }
        self.backend
            .set_comparison_bits(self.program.comparison_bits)
            .map_err(|source| RunError::Backend { layer: "(inference setup)".into(), op: "comparison domain", source })?;
        let mut layers: Vec<LayerMetrics> = Vec::new();
        for (k, spec) in self.program.inputs.iter().enumerate() {
            let value = inputs.map(|x| &x[k]);
            let share = if self.one_hot.inputs[k] {
                self.backend.share_one_hot(&spec.shape, value)
            } else {
                self.backend.share(to_backend_owner(spec.owner), &spec.shape, value)
            };
            let share = share.map_err(|source| RunError::Backend { layer: spec.name.clone(), op: "share input", source })?;
            self.store(spec.slot, share);
        }
        for (k, instr) in self.program.body.iter().enumerate() {
            if self.crash_at == Some(k) {
                return Err(RunError::InjectedCrash { instruction: k });
            }
            let started = Instant::now();
            let before = self.traffic();
            self.stream_weights(&instr.args)?;
            let value = match (&instr.op, instr.args[0]) {
                // A reshape of a tensor that dies here moves it instead of copying it.
                (LOp::Reshape, x) if instr.free_after.contains(&x) && self.weight_index[x].is_none() => {
                    let value = self.slots[x].take().expect("the program was validated: arguments are live");
                    self.live_bytes -= value.size_in_bytes() as u64;
                    let shape = self.program.slot_shape(instr.out).to_vec();
                    value.reshape(shape).map_err(|source| RunError::Shape { layer: instr.layer.clone(), op: instr.op.name(), source })?
                }
                _ => execute(self.program, &mut self.backend, &self.slots, instr, self.one_hot.products[k], self.slab_elements)?,
            };
            self.store(instr.out, value);
            for &slot in &instr.free_after {
                self.release(slot);
            }
            if !self.keep_weight_shares {
                for i in 0..self.weights_done_after[k].len() {
                    self.release(self.weights_done_after[k][i]);
                }
            }
            let spent = self.traffic() - before;
            let metrics = match layers.last_mut() {
                Some(last) if last.layer == instr.layer => last,
                _ => {
                    layers.push(LayerMetrics { layer: instr.layer.clone(), ..Default::default() });
                    layers.last_mut().unwrap()
                }
            };
            metrics.seconds += started.elapsed().as_secs_f64();
            if let Some(observer) = self.progress.as_mut() {
                observer(instr);
            }
            metrics.bytes_sent += spent.bytes_sent;
            metrics.bytes_received += spent.bytes_received;
            metrics.rounds += spent.rounds;
            if instr.op.is_backend_call() {
                metrics.calls.push(instr.op.name().to_string());
            }
        }
        let started = Instant::now();
        let before = self.traffic();
        let mut revealed = Vec::new();
        let output_slots: Vec<usize> = self.program.outputs.iter().map(|o| o.slot).collect();
        self.stream_weights(&output_slots)?;
        for output in &self.program.outputs {
            let share = self.slots[output.slot].as_ref().expect("validated program");
            let value = self
                .backend
                .reveal(share, Owner::Client)
                .map_err(|source| RunError::Backend { layer: output.name.clone(), op: "reveal", source })?;
            revealed.push(value);
        }
        let spent = self.traffic() - before;
        layers.push(LayerMetrics {
            layer: "(reveal outputs)".into(),
            calls: vec!["Reveal".into()],
            seconds: started.elapsed().as_secs_f64(),
            bytes_sent: spent.bytes_sent,
            bytes_received: spent.bytes_received,
            rounds: spent.rounds,
        });
        // Everything else is per-inference.
        for slot in 0..self.slots.len() {
            if !(self.keep_weight_shares && self.weight_index[slot].is_some()) {
                self.release(slot);
            }
        }
        let outputs = revealed.into_iter().collect::<Option<Vec<_>>>();
        Ok((outputs, layers))
    }

    fn traffic(&self) -> Traffic {
        self.backend.traffic()
    }

}

/// One instruction; `one_hot_product`: a MatMul whose left operand is one-hot rows from
/// [`Backend::share_one_hot`] ([`OneHotPlan`]).
/// `slab`: the slab budget ([`crate::slab`]).
fn execute<B: Backend>(program: &Program, backend: &mut B, slots: &[Option<RingTensor>], instr: &Instr, one_hot_product: bool, slab: usize) -> Result<RingTensor, RunError> {
    {
        let arg = |k: usize| -> &RingTensor { slots[instr.args[k]].as_ref().expect("the program was validated: arguments are live") };
        let shape_err = |source: ShapeError| RunError::Shape { layer: instr.layer.clone(), op: instr.op.name(), source };
        let backend_err = |source: BackendError| RunError::Backend { layer: instr.layer.clone(), op: instr.op.name(), source };
        let out_shape = program.slot_shape(instr.out).to_vec();
        let x = arg(0);
        let result = match &instr.op {
            LOp::Reshape => x.clone().reshape(out_shape.clone()).map_err(shape_err)?,
            LOp::Transpose { perm } => movement::transpose(x, perm).map_err(shape_err)?,
            LOp::Pad { pads_begin, pads_end } => movement::pad(x, pads_begin, pads_end, 0).map_err(shape_err)?,
            LOp::Slice { starts, ends, steps } => movement::slice(x, starts, ends, steps).map_err(shape_err)?,
            LOp::Concat { axis } => {
                let parts: Vec<&RingTensor> = (0..instr.args.len()).map(&arg).collect();
                movement::concat(&parts, *axis).map_err(shape_err)?
            }
            LOp::Gather { axis, indices } => movement::gather(x, *axis, indices).map_err(shape_err)?,
            LOp::BroadcastTo => movement::broadcast_to(x, &out_shape).map_err(shape_err)?,
            LOp::Add => x.add(arg(1)).map_err(shape_err)?,
            LOp::Sub => x.sub(arg(1)).map_err(shape_err)?,
            LOp::Neg => x.neg(),
            LOp::MulPublic { value } => {
                let c = *value as u64;
                x.map(|v| v.wrapping_mul(c))
            }
            LOp::AddPublic { value } => {
                if backend.adds_public_constants() {
                    let c = if value.shape() == x.shape() { value.clone() } else { movement::broadcast_to(value, x.shape()).map_err(shape_err)? };
                    x.add(&c).map_err(shape_err)?
                } else {
                    x.clone()
                }
            }
            LOp::SumPool(g) => kernels::sum_pool(x, g).map_err(shape_err)?,
            LOp::ReduceSum { axes, keep_dims } => kernels::reduce_sum(x, axes, *keep_dims).map_err(shape_err)?,
            LOp::MatMul => {
                let weight = program.weights.iter().position(|w| w.slot == instr.args[1]);
                match (one_hot_product, weight) {
                    (true, weight) => backend.matmul_one_hot(x, arg(1), weight),
                    (false, Some(weight)) => backend.matmul_weight(x, arg(1), weight),
                    (false, None) => backend.matmul(x, arg(1)),
                }
                .map_err(backend_err)?
            }
            LOp::Conv(g) => crate::slab::conv(backend, x, arg(1), g, false, slab).map_err(backend_err)?,
            LOp::ConvTranspose(g) => crate::slab::conv(backend, x, arg(1), g, true, slab).map_err(backend_err)?,
            LOp::Mul if arg(1).shape() != x.shape() => backend.mul(x, arg(1)).map_err(backend_err)?,
            LOp::Mul => {
                let y = arg(1);
                crate::slab::elementwise(backend, x, slab, |b, part, run| {
                    if part.shape() == y.shape() {
                        b.mul(part, y)
                    } else {
                        b.mul(part, &RingTensor::new(part.shape().to_vec(), y.data()[run].to_vec())?)
                    }
                })
                .map_err(backend_err)?
            }
            LOp::Relu => crate::slab::elementwise(backend, x, slab, |b, part, _| b.relu(part)).map_err(backend_err)?,
            LOp::MaxPool(g) => {
                backend.max_pool(x, g).map_err(backend_err)?
            }
            LOp::ArgMax { axis, keep_dims } => crate::slab::argmax(backend, x, *axis, *keep_dims, slab).map_err(backend_err)?,
            LOp::ScaleDown { shift } => crate::slab::elementwise(backend, x, slab, |b, part, _| b.scale_down(part, *shift)).map_err(backend_err)?,
            LOp::Divide { divisors } => {
                let d = if divisors.shape() == x.shape() { divisors.clone() } else { movement::broadcast_to(divisors, x.shape()).map_err(shape_err)? };
                crate::slab::elementwise(backend, x, slab, |b, part, run| {
                    if part.shape() == d.shape() {
                        b.divide(part, &d)
                    } else {
                        b.divide(part, &RingTensor::new(part.shape().to_vec(), d.data()[run].to_vec())?)
                    }
                })
                .map_err(backend_err)?
            }
            LOp::MulPublicTensor { values } if values.shape() == x.shape() => x.mul(values).map_err(shape_err)?,
            LOp::MulPublicTensor { values } => x.mul(&movement::broadcast_to(values, x.shape()).map_err(shape_err)?).map_err(shape_err)?,
            LOp::BatchMatMul => backend.batch_matmul(x, arg(1)).map_err(backend_err)?,
            LOp::Unary(f) => unary(backend, *f, x, program.scale).map_err(backend_err)?,
            LOp::Max => math::max(backend, x, arg(1)).map_err(backend_err)?,
            LOp::Min => math::min(backend, x, arg(1)).map_err(backend_err)?,
            LOp::ReduceMax { axes, keep_dims } => math::reduce_max(backend, x, axes, *keep_dims).map_err(backend_err)?,
            LOp::ReduceMin { axes, keep_dims } => math::reduce_min(backend, x, axes, *keep_dims).map_err(backend_err)?,
            LOp::Div => math::div(backend, x, arg(1), program.scale).map_err(backend_err)?,
            LOp::Prelu => math::prelu(backend, x, arg(1), program.scale).map_err(backend_err)?,
            LOp::Softmax { axis } => math::softmax(backend, x, *axis, program.scale).map_err(backend_err)?,
            LOp::LogSoftmax { axis } => math::log_softmax(backend, x, *axis, program.scale).map_err(backend_err)?,
            LOp::Normalize { axes, epsilon } => math::normalize(backend, x, axes, *epsilon, program.scale).map_err(backend_err)?,
        };
        if result.shape() != out_shape.as_slice() {
            return Err(shape_err(ShapeError::new(format!("produced {:?}, the program declares {:?}", result.shape(), out_shape))));
        }
        Ok(result)
    }
}

/// An elementwise function of the secure math library at the program's scale.
fn unary<B: Backend>(backend: &mut B, f: UnaryFn, x: &RingTensor, scale: u32) -> Result<RingTensor, BackendError> {
    match f {
        UnaryFn::Exp => math::exp(backend, x, scale),
        UnaryFn::Log => math::log(backend, x, scale),
        UnaryFn::Sigmoid => math::sigmoid(backend, x, scale),
        UnaryFn::Tanh => math::tanh(backend, x, scale),
        UnaryFn::Erf => math::erf(backend, x, scale),
        UnaryFn::Gelu => math::gelu(backend, x, scale, math::GeluForm::Erf),
        UnaryFn::GeluTanh => math::gelu(backend, x, scale, math::GeluForm::Tanh),
        UnaryFn::Silu => math::silu(backend, x, scale),
        UnaryFn::Softplus => math::softplus(backend, x, scale),
        UnaryFn::Elu { alpha } => math::elu(backend, x, scale, alpha),
        UnaryFn::HardSigmoid { alpha, beta } => math::hard_sigmoid(backend, x, scale, alpha, beta),
        UnaryFn::HardSwish => math::hard_swish(backend, x, scale),
        UnaryFn::Reciprocal => math::reciprocal(backend, x, scale),
        UnaryFn::Sqrt => math::sqrt(backend, x, scale),
        UnaryFn::Rsqrt => math::rsqrt(backend, x, scale),
        UnaryFn::Abs => math::abs(backend, x),
    }
}

/// Which of the client's one-hot inputs a backend may hold its own way
/// ([`Backend::share_one_hot`]) and which products take them ([`Backend::matmul_one_hot`]).
///
/// An input qualifies when every use of its rows, followed through data movement (which keeps
/// entries 0/1 and moves each share alike), is the left operand of a MatMul: nothing else ever
/// sees the backend's form of the share (2PC keeps the rows with the client unmasked, which an
/// ordinary product's zero-share flags or a reveal would expose). The plan depends on the
/// public program alone, so every party makes the same one.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct OneHotPlan {
    /// Per program input (in `program.inputs` order).
    pub inputs: Vec<bool>,
    /// Per instruction of the body.
    pub products: Vec<bool>,
}

impl OneHotPlan {
    pub fn of(program: &Program) -> OneHotPlan {
        // The input whose rows each slot holds at this point of the body.
        let mut family: Vec<Option<usize>> = vec![None; program.slots.len()];
        let mut ok: Vec<bool> = program.inputs.iter().map(|i| i.one_hot && i.owner == ProgramOwner::Client).collect();
        for (k, input) in program.inputs.iter().enumerate() {
            if ok[k] {
                family[input.slot] = Some(k);
            }
        }
        let mut product_of = vec![None; program.body.len()];
        for (k, instr) in program.body.iter().enumerate() {
            let families: Vec<Option<usize>> = instr.args.iter().map(|&a| family[a]).collect();
            let mut refuse = |f: Option<usize>| {
                if let Some(f) = f {
                    ok[f] = false;
                }
            };
            let out = match &instr.op {
                LOp::Reshape | LOp::Transpose { .. } | LOp::Pad { .. } | LOp::Slice { .. } | LOp::Gather { .. } | LOp::BroadcastTo => families[0],
                LOp::Concat { .. } if families.iter().all(|f| f.is_some() && *f == families[0]) => families[0],
                LOp::MatMul => {
                    product_of[k] = families[0];
                    refuse(families[1]);
                    None
                }
                _ => {
                    families.iter().for_each(|&f| refuse(f));
                    None
                }
            };
            family[instr.out] = out;
        }
        for output in &program.outputs {
            if let Some(f) = family[output.slot] {
                ok[f] = false;
            }
        }
        OneHotPlan { products: product_of.iter().map(|f| f.is_some_and(|f| ok[f])).collect(), inputs: ok }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptflow_ir::llil::{Output, SecretInput, SlotInfo};

    fn input(name: &str, slot: usize, shape: &[usize], one_hot: bool) -> SecretInput {
        SecretInput { name: name.into(), owner: ProgramOwner::Client, slot, shape: shape.to_vec(), integer: true, one_hot }
    }

    fn instr(op: LOp, args: &[usize], out: usize) -> Instr {
        Instr { op, args: args.to_vec(), out, layer: format!("i{out}"), free_after: vec![] }
    }

    /// ids (one-hot, slot 0, [2, 4]) -> Reshape -> MatMul with the table (weight, slot 1),
    /// plus `extra` instructions; output slot `out`.
    fn program(extra: Vec<Instr>, out: usize) -> Program {
        let mut body = vec![instr(LOp::Reshape, &[0], 2), instr(LOp::MatMul, &[2, 1], 3)];
        body.extend(extra);
        Program {
            comparison_bits: 64,
            scale: 0,
            slots: vec![SlotInfo { shape: vec![2, 4] }; 8],
            weights: vec![SecretInput { name: "table".into(), owner: ProgramOwner::ModelOwner, slot: 1, shape: vec![4, 4], integer: false, one_hot: false }],
            inputs: vec![input("ids", 0, &[2, 4], true), input("mask", 7, &[2, 4], false)],
            body,
            outputs: vec![Output { name: "y".into(), slot: out, shape: vec![2, 4], encoding: Encoding::Fixed { scale: 0 } }],
        }
    }

    #[test]
    fn one_hot_rows_that_only_reach_products_are_held() {
        // Through data movement into the left operand of products.
        let p = program(vec![instr(LOp::Transpose { perm: vec![1, 0] }, &[2], 4), instr(LOp::MatMul, &[4, 3], 5)], 5);
        let plan = OneHotPlan::of(&p);
        assert_eq!(plan.inputs, vec![true, false]);
        assert_eq!(plan.products, vec![false, true, false, true]);
        // A concatenation of the rows with themselves is still rows.
        let p = program(vec![instr(LOp::Concat { axis: 0 }, &[2, 0], 4), instr(LOp::MatMul, &[4, 1], 5)], 5);
        assert_eq!(OneHotPlan::of(&p).products, vec![false, true, false, true]);
        // A slot that held the rows and is overwritten by something else stops holding them.
        let p = program(vec![instr(LOp::MatMul, &[3, 1], 2), instr(LOp::Relu, &[2], 4)], 4);
        assert_eq!(OneHotPlan::of(&p).inputs, vec![true, false]);
    }

    #[test]
    fn one_hot_rows_with_any_other_use_are_shared_as_usual() {
        for (extra, out) in [
            // Right operand of a product.
            (vec![instr(LOp::MatMul, &[3, 2], 4)], 4),
            // A secure operation, a local one.
            (vec![instr(LOp::Relu, &[2], 4)], 4),
            (vec![instr(LOp::Add, &[3, 2], 4)], 4),
            // Concatenated with other values.
            (vec![instr(LOp::Concat { axis: 0 }, &[2, 3], 4)], 4),
            // Revealed (an output), directly or moved.
            (vec![], 0),
            (vec![instr(LOp::Reshape, &[2], 4)], 4),
        ] {
            let p = program(extra, out);
            let plan = OneHotPlan::of(&p);
            assert_eq!(plan.inputs, vec![false, false], "{:?}", p.body);
            assert!(plan.products.iter().all(|&b| !b), "{:?}", p.body);
        }
    }
}
