//! Overflow headroom: does every value fit in 64 bits at the chosen scale, with room to spare?
//!
//! A value of magnitude `m` held with `f` fractional bits needs `log2(m) + f + 1` bits. Beyond
//! 64 it wraps around silently (EzPC users meet this as garbage outputs). Even below that,
//! secure truncation of additive shares (SecureML-style local ScaleDown) fails with a
//! probability of about `2^-(64 - bits)` per element, so a few bits of headroom are not enough.

use serde::{Deserialize, Serialize};

/// Below this many spare bits, the compiler warns.
pub const MIN_HEADROOM_BITS: i32 = 16;

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
