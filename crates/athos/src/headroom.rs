//! Overflow headroom: does every value fit in 64 bits at the chosen scale, with room to spare?
//!
//! A value of magnitude `m` held with `f` fractional bits needs `log2(m) + f + 1` bits. Beyond
//! 64 it wraps around silently (EzPC users meet this as garbage outputs). Even below that,
//! secure truncation of additive shares (SecureML-style local ScaleDown) fails with a
//! probability of about `2^-(64 - bits)` per element, so a few bits of headroom are not enough.
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
        "low headroom at scale {scale}: a product holds {} fractional bits, so a value of magnitude {} leaves {spare} of 64 bits spare (secure truncation fails with probability ~2^-{spare} per element); scales up to {} keep {MIN_HEADROOM_BITS} spare bits, or --calibrate measures the model's real magnitudes",
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
                "low headroom: weight `{}` reaches |w| = {:e} and needs {needed} of 64 bits with {} fractional bits at scale {scale} ({spare} spare; secure truncation fails with probability ~2^-{spare} per element); {}",
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
                "low headroom: `{}` reaches |x| = {:.4} and needs {} of 64 bits with {} fractional bits ({} spare; secure truncation fails with probability ~2^-{} per element)",
                self.node, self.max_abs, self.bits_needed, self.fractional_bits, self.headroom_bits, self.headroom_bits
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
