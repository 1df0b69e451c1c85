//! Overflow headroom: does every value fit in 64 bits at the chosen scale, with room to spare?
//!
//! A value of magnitude `m` held with `f` fractional bits needs `log2(m) + f + 1` bits. Beyond
//! 64 it wraps around silently (EzPC users meet this as garbage outputs). Below that, local
//! (SecureML) truncation of additive shares fails with probability `|x| / 2^64` per element:
//! [`truncation_risk`] sums that over every element a program truncates, which is what decides
//! whether local truncation is safe for a model (expected failures per inference against
//! [`MAX_EXPECTED_TRUNCATION_FAILURES`] = 2^-40); faithful truncation (the default) has no such
//! failure. The [`MIN_HEADROOM_BITS`] margin below is kept against inputs larger than the
//! calibration data or the compiler's assumption.
//!
//! Without calibration data the compiler still checks what it can (every compile, at every
//! scale):
//! - **the scale**: a product of two values at scale `s` carries `2s` fractional bits. The
//!   compiler assumes that the values a model computes (activations, sums of products, logits)
//!   stay below `2^ASSUMED_MAGNITUDE_BITS` = 16 in magnitude; with the sign bit, a product then
//!   needs `2s + 5` bits, so scales above [`MAX_SCALE`] = 29 are refused, and scales whose
//!   products would leave fewer than [`MIN_HEADROOM_BITS`] spare bits (above 21) are warned
//!   about. `--calibrate` measures the real magnitudes instead.
//! - **the weights**: NaN and infinities are refused; every weight's largest magnitude is
//!   checked at the fractional bits it reaches in the program (`s` for a factor of a product,
//!   whose product with a value of magnitude 1 then holds `2s`; `2s` for a bias added to a
//!   product). Beyond 64 bits it is an error, with fewer than [`MIN_HEADROOM_BITS`] spare a
//!   warning; both name the weight and suggest a scale.

use serde::{Deserialize, Serialize};

/// Below this many spare bits, the compiler warns.
pub const MIN_HEADROOM_BITS: i32 = 16;

/// What the compiler assumes, without calibration data, of the magnitude of a model's values:
/// below `2^ASSUMED_MAGNITUDE_BITS`.
pub const ASSUMED_MAGNITUDE_BITS: u32 = 4;

/// The largest scale the compiler accepts: a product at `2s` of values below
/// `2^ASSUMED_MAGNITUDE_BITS` must fit in 64 bits with its sign (`2s + 4 + 1 <= 64`).
pub const MAX_SCALE: u32 = (64 - 1 - ASSUMED_MAGNITUDE_BITS) / 2;

/// The comparison domain the compiler gives a program at `scale` (see
/// [`cryptflow_ir::llil::Program::comparison_bits`]): the values it compares are assumed, as
/// for the scale, below `2^ASSUMED_MAGNITUDE_BITS`, and kept [`MIN_HEADROOM_BITS`] spare bits
/// above that, so exact for magnitudes below `2^(ASSUMED_MAGNITUDE_BITS + MIN_HEADROOM_BITS)`
/// = 2^20 (attention masks, `-32768` each, and their sums stay well inside): `scale + 21` bits,
/// 33 at the default scale 12. `cryptflow compile --comparison-bits` overrides it and
/// `--calibrate` widens it to 64 bits when a measured magnitude does not fit.
pub fn comparison_bits(scale: u32) -> u32 {
    (scale + ASSUMED_MAGNITUDE_BITS + MIN_HEADROOM_BITS as u32 + 1).min(64)
}

/// Whether a value of magnitude `m` at `scale` fractional bits lies inside a comparison domain
/// of `bits` bits.
pub fn fits_comparison_domain(m: f32, scale: u32, bits: u32) -> bool {
    bits >= 64 || bits_needed(m, scale) <= bits as i32
}

/// Bits (with the sign) of the integer a magnitude `m` becomes with `f` fractional bits.
pub fn bits_needed(m: f32, f: u32) -> i32 {
    let v = m.abs() as f64 * 2f64.powi(f as i32);
    if v < 1.0 {
        1
    } else {
        v.log2().floor() as i32 + 2
    }
}

/// Refuses a scale at which products cannot fit (see the module documentation).
pub fn check_scale(scale: u32) -> Result<(), crate::CompileError> {
    if (1..=MAX_SCALE).contains(&scale) {
        Ok(())
    } else {
        Err(crate::CompileError::BadScale(scale))
    }
}

/// Warnings about a scale that fits, with little headroom left for products of values as large
/// as the compiler assumes.
pub fn scale_warnings(scale: u32) -> Vec<String> {
    let spare = 64 - (2 * scale + ASSUMED_MAGNITUDE_BITS + 1) as i32;
    if spare >= MIN_HEADROOM_BITS {
        return Vec::new();
    }
    vec![format!(
        "low headroom at scale {scale}: a product holds {} fractional bits, so a value of magnitude {} leaves {spare} of 64 bits spare (a larger value overflows); scales up to {} keep {MIN_HEADROOM_BITS} spare bits, or --calibrate measures the model's real magnitudes",
        2 * scale,
        1u32 << ASSUMED_MAGNITUDE_BITS,
        (64 - MIN_HEADROOM_BITS as u32 - 1 - ASSUMED_MAGNITUDE_BITS) / 2
    )]
}

/// One weight as the program uses it: its largest magnitude and the most fractional bits it
/// reaches (its encoding's, plus `scale` if it is a factor of a product).
#[derive(Clone, Debug)]
pub struct WeightReach {
    pub name: String,
    pub max_abs: f32,
    pub reach_bits: u32,
    pub scale: u32,
}

impl WeightReach {
    /// The largest scale (at most the current one) at which this weight keeps `spare` bits.
    fn suggested_scale(&self, spare: i32) -> Option<u32> {
        let per_scale = (self.reach_bits / self.scale.max(1)).max(1);
        (1..=self.scale).rev().find(|&s| 64 - bits_needed(self.max_abs, per_scale * s) >= spare)
    }

    fn suggestion(&self) -> String {
        match (self.suggested_scale(MIN_HEADROOM_BITS), self.suggested_scale(0)) {
            (Some(s), _) => format!("choose --scale {s} or less"),
            (None, Some(s)) => format!("even at --scale {s} it leaves fewer than {MIN_HEADROOM_BITS} spare bits; rescale the model's weights"),
            (None, None) => "no scale can hold it; rescale the model's weights".to_string(),
        }
    }
}

/// Checks every weight against 64 bits: an error for the first that overflows, warnings for
/// those with fewer than [`MIN_HEADROOM_BITS`] to spare.
pub fn check_weights(weights: &[WeightReach], scale: u32) -> Result<Vec<String>, crate::CompileError> {
    let mut warnings = Vec::new();
    for w in weights {
        let needed = bits_needed(w.max_abs, w.reach_bits);
        let spare = 64 - needed;
        if needed > 64 {
            return Err(crate::CompileError::WeightOverflow(format!(
                "weight `{}` reaches |w| = {:e} and needs {needed} bits with {} fractional bits at scale {scale}: it overflows 64-bit integers; {}",
                w.name,
                w.max_abs,
                w.reach_bits,
                w.suggestion()
            )));
        }
        if spare < MIN_HEADROOM_BITS {
            warnings.push(format!(
                "low headroom: weight `{}` reaches |w| = {:e} and needs {needed} of 64 bits with {} fractional bits at scale {scale} ({spare} spare: little margin before overflow); {}",
                w.name,
                w.max_abs,
                w.reach_bits,
                w.suggestion()
            ));
        }
    }
    Ok(warnings)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadroomSeverity {
    /// The value does not fit in 64 bits: results will be wrong.
    Overflow,
    /// It fits, with fewer than [`MIN_HEADROOM_BITS`] to spare.
    Low,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadroomIssue {
    pub node: String,
    pub max_abs: f32,
    pub fractional_bits: u32,
    pub bits_needed: i32,
    pub headroom_bits: i32,
    pub severity: HeadroomSeverity,
}

impl std::fmt::Display for HeadroomIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.severity {
            HeadroomSeverity::Overflow => write!(
                f,
                "OVERFLOW: `{}` reaches |x| = {:.4} and needs {} bits with {} fractional bits: it wraps around in 64-bit integers; choose a smaller scale",
                self.node, self.max_abs, self.bits_needed, self.fractional_bits
            ),
            HeadroomSeverity::Low => write!(
                f,
                "low headroom: `{}` reaches |x| = {:.4} and needs {} of 64 bits with {} fractional bits ({} spare: an input a little larger than the calibration data's overflows)",
                self.node, self.max_abs, self.bits_needed, self.fractional_bits, self.headroom_bits
            ),
        }
    }
}

/// Checks every node with a known maximum magnitude against its fractional bits.
pub fn check_headroom(names: &[String], max_abs: &[f32], fractional_bits: &[Option<u32>]) -> Vec<HeadroomIssue> {
    let mut issues = Vec::new();
    for ((name, &m), bits) in names.iter().zip(max_abs).zip(fractional_bits) {
        let Some(f) = *bits else { continue };
        if !(m.is_finite()) || m <= 0.0 {
            continue;
        }
        let bits_needed = (m as f64).log2().ceil() as i32 + f as i32 + 1;
        let headroom_bits = 64 - bits_needed;
        let severity = if bits_needed > 64 {
            HeadroomSeverity::Overflow
        } else if headroom_bits < MIN_HEADROOM_BITS {
            HeadroomSeverity::Low
        } else {
            continue;
        };
        issues.push(HeadroomIssue { node: name.clone(), max_abs: m, fractional_bits: f, bits_needed, headroom_bits, severity });
    }
    issues
}

// A program the compiler accepts must load: the IR's validation uses the same maximum.
const _: () = assert!(MAX_SCALE == cryptflow_ir::llil::MAX_SCALE);

/// Largest expected number of local-truncation failures per inference the compiler and the
/// runtime accept without a warning (under `--truncation local`).
pub const MAX_EXPECTED_TRUNCATION_FAILURES: f64 = 1.0 / (1u64 << 40) as f64;

/// What local (SecureML) truncation risks on one inference of a program.
///
/// A local truncation of an element whose integer value is `x` fails (is off by about
/// `2^64 / d`) when a share falls within `|x|` of the wrap-around point: with probability
/// `|x| / 2^64`. Summed over every element a program truncates (`ScaleDown` and division by
/// public integers, counted from the program's slot shapes), that is the expected number of
/// failures per inference. Faithful truncation cannot fail this way (it is exact for
/// `|x| < 2^62`), whatever the count. Truncations inside the secure math functions (which keep
/// their operands within their documented domains) are not counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TruncationRisk {
    /// Elements truncated per inference.
    pub elements: u64,
    /// Expected local-truncation failures per inference (an upper bound: every element is taken
    /// at its layer's largest magnitude).
    pub expected_failures: f64,
    /// The layer whose truncations contribute most, and its share of `expected_failures`.
    pub worst_layer: String,
    pub worst_layer_failures: f64,
    /// Whether the magnitudes came from calibration data (otherwise every value is assumed
    /// below `2^ASSUMED_MAGNITUDE_BITS`).
    pub calibrated: bool,
}

impl TruncationRisk {
    /// `log2` of the expected failures (negative infinity for none).
    pub fn log2_failures(&self) -> f64 {
        self.expected_failures.log2()
    }

    /// Whether local truncation's expected failures per inference exceed
    /// [`MAX_EXPECTED_TRUNCATION_FAILURES`].
    pub fn too_high(&self) -> bool {
        self.expected_failures > MAX_EXPECTED_TRUNCATION_FAILURES
    }

    /// One line for the compile report and the runtime's warning.
    pub fn describe(&self) -> String {
        let basis = if self.calibrated {
            "at the calibration data's largest magnitudes".to_string()
        } else {
            format!("assuming every value below 2^{ASSUMED_MAGNITUDE_BITS}")
        };
        format!(
            "{} elements truncated per inference; under --truncation local about 2^{:.1} expected failures per inference ({basis}; most from `{}`), against a threshold of 2^-40; faithful truncation cannot fail this way",
            self.elements,
            self.log2_failures(),
            self.worst_layer
        )
    }
}

/// Truncations inside a secure math function per element of its operand, an upper estimate
/// from BERT-base (faithful minus local bytes over 32 bytes per faithful truncation, per
/// element: GELU 11, softmax 10, layer normalisation 7).
pub const MATH_TRUNCATIONS_PER_ELEMENT: u64 = 12;

/// Magnitude (bits) of what the math functions truncate inside: products of values at their
/// internal precision (`cryptflow-math`: Chebyshev polynomials at 18 bits bounded by 1,
/// products below 2^36).
pub const MATH_PRODUCT_BITS: u32 = 36;

/// The expected local-truncation failures of one inference of `program`. `max_abs` gives the
/// largest magnitude (in real units) a layer's value reaches, by HLIL node name, where
/// calibration measured it; other values are assumed below `2^ASSUMED_MAGNITUDE_BITS`.
/// The secure math functions add their internal truncations (`MATH_TRUNCATIONS_PER_ELEMENT`
/// per element at `2^MATH_PRODUCT_BITS`, whatever the data).
pub fn truncation_risk(program: &cryptflow_ir::llil::Program, max_abs: Option<&std::collections::HashMap<String, f32>>) -> TruncationRisk {
    use cryptflow_ir::llil::LOp;
    // The layer that last wrote each slot: the value a truncation reads is that layer's.
    let mut writer: Vec<Option<&str>> = vec![None; program.slots.len()];
    let mut per_layer: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    let mut risk = TruncationRisk { calibrated: max_abs.is_some(), ..TruncationRisk::default() };
    for instr in &program.body {
        let fractional = match &instr.op {
            // The result is at the program's scale: the operand had `shift` bits more.
            LOp::ScaleDown { shift } => Some(program.scale + shift),
            LOp::Divide { .. } => Some(program.scale),
            _ => None,
        };
        if let (Some(f), Some(&arg)) = (fractional, instr.args.first()) {
            let n = program.slots.get(instr.out).map_or(0, |s| s.shape.iter().product::<usize>()) as u64;
            let layer = writer.get(arg).copied().flatten().unwrap_or(instr.layer.as_str());
            let magnitude = max_abs
                .and_then(|m| m.get(layer).or_else(|| m.get(instr.layer.as_str())))
                .map(|&m| m as f64)
                .filter(|m| m.is_finite())
                .unwrap_or((1u64 << ASSUMED_MAGNITUDE_BITS) as f64);
            let p = (magnitude * 2f64.powi(f as i32) / 2f64.powi(64)).min(1.0);
            risk.elements += n;
            risk.expected_failures += n as f64 * p;
            *per_layer.entry(layer).or_insert(0.0) += n as f64 * p;
        }
        if matches!(instr.op, LOp::Unary(_) | LOp::Div | LOp::Softmax { .. } | LOp::LogSoftmax { .. } | LOp::Normalize { .. }) {
            // The secure math functions truncate inside (polynomial steps, squarings, Newton
            // iterations): about MATH_TRUNCATIONS_PER_ELEMENT per element of the operand, at
            // up to 2^MATH_PRODUCT_BITS.
            let n = instr.args.first().and_then(|&a| program.slots.get(a)).map_or(0, |s| s.shape.iter().product::<usize>()) as u64;
            let truncated = n * MATH_TRUNCATIONS_PER_ELEMENT;
            let p = 2f64.powi(MATH_PRODUCT_BITS as i32 - 64);
            risk.elements += truncated;
            risk.expected_failures += truncated as f64 * p;
            *per_layer.entry(instr.layer.as_str()).or_insert(0.0) += truncated as f64 * p;
        }
        if let Some(w) = writer.get_mut(instr.out) {
            *w = Some(instr.layer.as_str());
        }
    }
    if let Some((layer, failures)) = per_layer.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        risk.worst_layer = layer.to_string();
        risk.worst_layer_failures = failures;
    }
    risk
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptflow_ir::llil::{Encoding, Instr, LOp, Output, Owner, Program, SecretInput, SlotInfo};

    /// x [n] -> relu (layer `act`) -> ScaleDown by `s` (layer `next`), at scale `s`.
    fn program(n: usize, s: u32) -> Program {
        let instr = |op, args: Vec<usize>, out, layer: &str| Instr { op, args, out, layer: layer.into(), free_after: vec![] };
        Program {
            comparison_bits: 64,
            scale: s,
            slots: vec![SlotInfo { shape: vec![n] }; 3],
            weights: vec![],
            inputs: vec![SecretInput { name: "x".into(), owner: Owner::Client, slot: 0, shape: vec![n], integer: false, one_hot: false }],
            body: vec![instr(LOp::Relu, vec![0], 1, "act"), instr(LOp::ScaleDown { shift: s }, vec![1], 2, "next")],
            outputs: vec![Output { name: "y".into(), slot: 2, shape: vec![n], encoding: Encoding::Fixed { scale: s } }],
        }
    }

    #[test]
    fn math_functions_count_their_internal_truncations() {
        // A softmax over 2^20 elements: 12 truncations per element at 2^36 each fail with
        // probability 2^-28: 2^20 * 12 * 2^-28 = 0.047 expected failures per inference.
        let n = 1usize << 20;
        let mut p = program(n, 12);
        p.body[0].op = LOp::Softmax { axis: 0 };
        p.body.truncate(1);
        let risk = truncation_risk(&p, None);
        assert_eq!(risk.elements, 12 * n as u64);
        assert!((risk.expected_failures - 12.0 * n as f64 / 2f64.powi(28)).abs() < 1e-12, "{}", risk.expected_failures);
        assert_eq!(risk.worst_layer, "act");
    }

    #[test]
    fn expected_failures_count_every_truncated_element_at_its_magnitude() {
        // 2^20 elements at 2s = 24 fractional bits, assumed below 2^4: 2^20 * 2^28 / 2^64 = 2^-16
        // failures per inference, far above 2^-40 (a fixed 16 spare bits per element said "fine").
        let p = program(1 << 20, 12);
        let assumed = truncation_risk(&p, None);
        assert_eq!(assumed.elements, 1 << 20);
        assert_eq!(assumed.log2_failures(), -16.0);
        assert_eq!(assumed.worst_layer, "act", "the truncated value is the one `act` wrote");
        assert!(assumed.too_high() && !assumed.calibrated);
        // Calibrated at |x| <= 2^-3 (of the layer that wrote the truncated value): 2^-23.
        let measured: std::collections::HashMap<String, f32> = [("act".to_string(), 0.125f32)].into();
        let calibrated = truncation_risk(&p, Some(&measured));
        assert_eq!(calibrated.log2_failures(), -23.0);
        assert!(calibrated.calibrated && calibrated.describe().contains("2^-23.0"));
        // 16 elements at scale 4 and |x| < 2^-2: 2^4 * 2^-2 * 2^8 / 2^64 = 2^-54, below 2^-40.
        let small = truncation_risk(&program(16, 4), Some(&[("act".to_string(), 0.25f32)].into()));
        assert_eq!(small.log2_failures(), -54.0);
        assert!(!small.too_high());
    }
}
