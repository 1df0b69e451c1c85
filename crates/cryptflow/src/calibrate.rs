//! Scale selection by calibration (paper III-B): sweep the scale on the cleartext executor
//! over validation inputs and keep the best.

use anyhow::{bail, Result};
use cryptflow_athos::{check_headroom, lower_optimized, CompileError, CompileOptions, HeadroomIssue, HeadroomSeverity};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_ir::hlil::Graph;
use cryptflow_ir::llil::Encoding;
use cryptflow_runtime::{decode_output, float, Runner};

use crate::inputs::ClientInputs;
use cryptflow_tensor::FloatTensor;

/// Scales tried (the paper sweeps every bit position). Scales the compiler refuses (above
/// `cryptflow_athos::MAX_SCALE`, or where a weight would overflow) are skipped with a note.
pub const SWEEP: std::ops::RangeInclusive<u32> = 1..=30;

pub struct ScaleResult {
    pub scale: u32,
    /// Fraction of inputs classified like the labels (or like float, without labels).
    pub score: Option<f64>,
    pub agreement_with_float: Option<f64>,
    /// Every value keeps at least MIN_HEADROOM_BITS spare bits at this scale.
    pub safe: bool,
    pub note: String,
}

pub struct Calibration {
    pub chosen: u32,
    pub table: Vec<ScaleResult>,
    pub float_accuracy: Option<f64>,
    pub headroom: Vec<HeadroomIssue>,
    /// Local truncation's expected failures per inference at the measured magnitudes.
    pub truncation_risk: cryptflow_athos::TruncationRisk,
    /// Where the calibration data leaves the domain of a secure approximation (at the chosen
    /// scale): the secure result there is the function's documented clamp.
    pub domain_warnings: Vec<String>,
    pub scored_against_labels: bool,
    /// The graph node whose values reached the largest magnitude, and that magnitude.
    pub largest: Option<(String, f32)>,
}

/// Range of a node's values over the calibration set.
#[derive(Clone, Copy)]
struct Range {
    min: f32,
    max: f32,
    min_abs: f32,
    max_abs: f32,
}

impl Default for Range {
    fn default() -> Self {
        Range { min: f32::INFINITY, max: f32::NEG_INFINITY, min_abs: f32::INFINITY, max_abs: 0.0 }
    }
}

impl Range {
    fn observe(&mut self, value: &FloatTensor) {
        for &v in value.data() {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            self.min_abs = self.min_abs.min(v.abs());
            self.max_abs = self.max_abs.max(v.abs());
        }
    }
}

/// The secure approximations whose domain the calibration data leaves (see
/// [`cryptflow_runtime::secure_domain`]).
fn domain_warnings(hlil: &Graph, ranges: &[Range], scale: u32) -> Vec<String> {
    let mut warnings = Vec::new();
    for node in &hlil.nodes {
        let Some((operand, domain, function)) = cryptflow_runtime::secure_domain(&node.op, scale) else { continue };
        let Some(&input) = node.inputs.get(operand) else { continue };
        let r = ranges[input];
        if r.min > r.max {
            continue; // a weight: not observed, and divisions by weights are exact products
        }
        let (lo, hi) = if domain.of_magnitude { (r.min_abs, r.max_abs) } else { (r.min, r.max) };
        if (lo as f64) < domain.lo || (hi as f64) > domain.hi {
            let what = if domain.of_magnitude { "magnitudes" } else { "values" };
            warnings.push(format!(
                "`{}`: the calibration data reaches {what} {lo} to {hi} in {function}'s input `{}`, beyond the secure approximation's domain [{}, {}] at scale {scale}: secure results clamp there (see the README's table)",
                node.name, hlil.nodes[input].name, domain.lo, domain.hi
            ));
        }
    }
    warnings
}

/// The predicted class of an output: its argmax over all elements, or the value itself for an
/// ArgMax output.
pub fn predicted_class(output: &FloatTensor, is_index: bool) -> i64 {
    if is_index {
        return output.data().first().map_or(-1, |&v| v as i64);
    }
    let mut best = 0;
    for (i, &v) in output.data().iter().enumerate() {
        if v > output.data()[best] {
            best = i;
        }
    }
    best as i64
}

/// Sweeps the scale over `inputs` (read for `hlil`'s inputs, several for a multi-input model).
pub fn calibrate(hlil: &Graph, base: &CompileOptions, inputs: &ClientInputs, labels: Option<&[i64]>) -> Result<Calibration> {
    if inputs.is_empty() {
        bail!("the calibration set is empty");
    }
    if let Some(labels) = labels {
        if labels.len() != inputs.len() {
            bail!("{} labels for {} calibration inputs", labels.len(), inputs.len());
        }
    }
    let mut ranges = vec![Range::default(); hlil.nodes.len()];
    let mut float_classes = Vec::with_capacity(inputs.len());
    let output_is_index = matches!(hlil.nodes[hlil.outputs[0]].op, cryptflow_ir::hlil::Op::ArgMax { .. });
    for x in inputs.floats(hlil)? {
        let outputs = float::run_observed(hlil, &x, |id, value| ranges[id].observe(value))?;
        float_classes.push(predicted_class(&outputs[0], output_is_index));
    }
    let max_abs: Vec<f32> = ranges.iter().map(|r| r.max_abs).collect();
    let reference: Vec<i64> = labels.map(|l| l.to_vec()).unwrap_or_else(|| float_classes.clone());
    let float_accuracy = labels.map(|l| fraction_equal(&float_classes, l));
    let names: Vec<String> = hlil.nodes.iter().map(|n| n.name.clone()).collect();

    let mut table = Vec::new();
    for scale in SWEEP {
        let options = CompileOptions { scale, ..base.clone() };
        let lowered = match lower_optimized(hlil, &options) {
            Ok(lowered) => lowered,
            // The compiler refuses this scale (products or a weight cannot fit): skip it.
            Err(e @ (CompileError::BadScale(_) | CompileError::WeightOverflow(_))) => {
                table.push(ScaleResult { scale, score: None, agreement_with_float: None, safe: false, note: format!("skipped: {e}") });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let issues = check_headroom(&names, &max_abs, &lowered.fractional_bits);
        let overflow = issues.iter().find(|i| i.severity == HeadroomSeverity::Overflow);
        let tightest = issues.iter().min_by_key(|i| i.headroom_bits);
        if let Some(issue) = overflow {
            table.push(ScaleResult {
                scale,
                score: None,
                agreement_with_float: None,
                safe: false,
                note: format!("skipped: `{}` would overflow 64 bits", issue.node),
            });
            continue;
        }
        if let Err(reason) = cryptflow_runtime::check_math_scale(&lowered.program) {
            table.push(ScaleResult { scale, score: None, agreement_with_float: None, safe: false, note: format!("skipped: {reason}") });
            continue;
        }
        let mut runner = Runner::new(&lowered.program, Cleartext::new());
        runner.share_weights(Some(&lowered.weights))?;
        let encoding = lowered.program.outputs[0].encoding;
        let mut classes = Vec::with_capacity(inputs.len());
        for x in inputs.encoded(&lowered.program)? {
            let (outputs, _) = runner.infer(Some(&x))?;
            let y = decode_output(&outputs.expect("cleartext reveals")[0], encoding);
            classes.push(predicted_class(&y, encoding == Encoding::Integer));
        }
        table.push(ScaleResult {
            scale,
            score: Some(fraction_equal(&classes, &reference)),
            agreement_with_float: Some(fraction_equal(&classes, &float_classes)),
            safe: tightest.is_none(),
            note: tightest.map_or(String::new(), |i| format!("low headroom: `{}` has {} spare bits", i.node, i.headroom_bits)),
        });
    }
    let chosen = middle_of_best_plateau(&table).ok_or_else(|| anyhow::anyhow!("no scale could be evaluated"))?;
    let lowered = lower_optimized(hlil, &CompileOptions { scale: chosen, ..base.clone() })?;
    let headroom = check_headroom(&names, &max_abs, &lowered.fractional_bits);
    let measured: std::collections::HashMap<String, f32> = names.iter().cloned().zip(max_abs.iter().copied()).collect();
    let truncation_risk = cryptflow_athos::truncation_risk(&lowered.program, Some(&measured));
    let domain_warnings = domain_warnings(hlil, &ranges, chosen);
    let largest = names.iter().zip(&max_abs).filter(|(_, m)| m.is_finite()).max_by(|a, b| a.1.total_cmp(b.1)).map(|(n, &m)| (n.clone(), m));
    Ok(Calibration { chosen, table, float_accuracy, headroom, truncation_risk, domain_warnings, scored_against_labels: labels.is_some(), largest })
}

fn fraction_equal(a: &[i64], b: &[i64]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// The scale in the middle of the longest run of consecutive scales with the best score,
/// among the scales that leave enough headroom (all scales if none does).
pub fn middle_of_best_plateau(table: &[ScaleResult]) -> Option<u32> {
    let any_safe = table.iter().any(|r| r.safe && r.score.is_some());
    let eligible = |r: &ScaleResult| if any_safe && !r.safe { None } else { r.score };
    let best = table.iter().filter_map(eligible).fold(f64::NEG_INFINITY, f64::max);
    if !best.is_finite() {
        return None;
    }
    let mut best_run: (usize, usize) = (0, 0);
    let mut start = None;
    for (i, r) in table.iter().enumerate() {
        let on = eligible(r) == Some(best);
        match (on, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s > best_run.1 - best_run.0 {
                    best_run = (s, i);
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        if table.len() - s > best_run.1 - best_run.0 {
            best_run = (s, table.len());
        }
    }
    let middle = best_run.0 + (best_run.1 - best_run.0 - 1) / 2;
    Some(table[middle].scale)
}

pub fn print_table(calibration: &Calibration, log: &mut dyn FnMut(&str)) {
    let what = if calibration.scored_against_labels { "accuracy" } else { "agreement with float" };
    log(&format!("scale  {what:>22}  {:>20}  note", "agreement with float"));
    let percent = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{:.2}%", 100.0 * s));
    for r in &calibration.table {
        let marker = if r.scale == calibration.chosen { "  <- chosen" } else { "" };
        log(&format!("{:>5}  {:>22}  {:>20}  {}{}", r.scale, percent(r.score), percent(r.agreement_with_float), r.note, marker));
    }
    if let Some(acc) = calibration.float_accuracy {
        log(&format!("float executor accuracy: {:.2}%", 100.0 * acc));
    }
}
