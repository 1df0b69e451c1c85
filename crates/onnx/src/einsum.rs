//! `Einsum` of one or two operands, rewritten to transposes, reshapes, sums and one matrix
//! product: the forms of attention and of linear layers (`bij,bjk->bik`,
//! `bhqd,bhkd->bhqk`, `bid,dj->bij`, `ij->ji`, ...), with ellipses (their dimensions get
//! letters of their own; they must have equal extents, no broadcasting of 1s) and diagonals
//! (a letter twice in one term: a gather on the two axes flattened). Three or more operands
//! are rejected with a clear error.

use cryptflow_frontend::eval::{Reduce, Reduction};
use cryptflow_frontend::{Lowering, NodeContext};
use cryptflow_tensor::num_elements as elements;

use crate::attrs::Cx;
use crate::import::{Importer, Value};
use crate::OnnxError;

type R<T> = Result<T, OnnxError>;

/// A parsed equation: one term (its letters) per operand, and the output's letters. The
/// dimensions an ellipsis stands for get letters of their own (outside ASCII), right-aligned
/// across the operands as NumPy broadcasting aligns them.
struct Equation {
    terms: Vec<Vec<char>>,
    output: Vec<char>,
}

/// The letter of the `j`-th dimension covered by ellipses.
fn ellipsis_letter(j: usize) -> char {
    char::from_u32(0x3b1 + j as u32).unwrap_or('\u{3b1}')
}

/// The explicit letters of a term around its ellipsis (if any): `(before, after, has_ellipsis)`.
fn split_term(cx: &Cx, eq: &str, t: &str) -> R<(Vec<char>, Vec<char>, bool)> {
    let letters = |p: &str| -> R<Vec<char>> {
        if p.chars().all(|c| c.is_ascii_alphabetic()) {
            Ok(p.chars().collect())
        } else {
            Err(cx.invalid(format!("equation `{eq}`: terms are made of letters and at most one ellipsis")))
        }
    };
    match t.split_once("...") {
        Some((b, a)) => Ok((letters(b)?, letters(a)?, true)),
        None => Ok((letters(t)?, vec![], false)),
    }
}

fn parse(cx: &Cx, eq: &str, shapes: &[Vec<usize>]) -> R<Equation> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let raw: Vec<&str> = lhs.split(',').collect();
    if raw.len() != shapes.len() {
        return Err(cx.invalid(format!("equation `{eq}` has {} terms for {} inputs", raw.len(), shapes.len())));
    }
    let mut parts = Vec::new();
    let mut ellipsis_rank = 0;
    for (t, s) in raw.iter().zip(shapes) {
        let (before, after, ell) = split_term(cx, &eq, t)?;
        let explicit = before.len() + after.len();
        if explicit > s.len() || (!ell && explicit != s.len()) {
            return Err(cx.shape_err(format!("equation `{eq}`: term `{t}` does not match an input of shape {s:?}")));
        }
        let e = s.len() - explicit;
        ellipsis_rank = ellipsis_rank.max(e);
        parts.push((before, after, e));
    }
    let ellipsis: Vec<char> = (0..ellipsis_rank).map(ellipsis_letter).collect();
    let terms: Vec<Vec<char>> = parts
        .into_iter()
        .map(|(before, after, e)| before.into_iter().chain(ellipsis[ellipsis_rank - e..].iter().copied()).chain(after).collect())
        .collect();
    let output: Vec<char> = match rhs {
        Some(r) => {
            let (before, after, ell) = split_term(cx, &eq, r)?;
            let o: Vec<char> = if ell { before.into_iter().chain(ellipsis.iter().copied()).chain(after).collect() } else { before };
            if (1..o.len()).any(|i| o[..i].contains(&o[i])) {
                return Err(cx.invalid(format!("equation `{eq}`: the output term must be distinct letters")));
            }
            if let Some(c) = o.iter().find(|c| !terms.iter().any(|t| t.contains(c))) {
                return Err(cx.invalid(format!("equation `{eq}`: output letter `{c}` is in no input term")));
            }
            o
        }
        None => {
            let mut once: Vec<char> = terms
                .iter()
                .flatten()
                .copied()
                .filter(|c| c.is_ascii_alphabetic() && terms.iter().flatten().filter(|d| *d == c).count() == 1)
                .collect();
            once.sort_unstable();
            ellipsis.iter().copied().chain(once).collect()
        }
    };
    // Every letter has one extent (ellipsis dimensions do not broadcast here).
    let mut extent: Vec<(char, usize, usize)> = Vec::new();
    for (i, t) in terms.iter().enumerate() {
        for (a, &c) in t.iter().enumerate() {
            match extent.iter().find(|e| e.0 == c) {
                Some(&(_, n, j)) if n != shapes[i][a] => {
                    let what = if c.is_ascii_alphabetic() { format!("letter `{c}`") } else { "an ellipsis dimension".to_string() };
                    return Err(cx.shape_err(format!(
                        "equation `{eq}`: {what} has extent {n} in input {j} but {} in input {i} (broadcasting is not supported)",
                        shapes[i][a]
                    )));
                }
                Some(_) => {}
                None => extent.push((c, shapes[i][a], i)),
            }
        }
    }
    Ok(Equation { terms, output })
}

impl Importer<'_> {
    pub(crate) fn einsum(&mut self, cx: &Cx) -> R<Value> {
        let eq = cx.string("equation")?.ok_or_else(|| cx.invalid("missing attribute `equation`"))?;
        let n = cx.node.input.len();
        if n == 0 || n > 2 {
            return Err(cx.unsupported(format!("Einsum of {n} operands is not supported (one or two)")));
        }
        let values: Vec<Value> = (0..n).map(|i| self.input(cx, i)).collect::<R<_>>()?;
        let shapes: Vec<Vec<usize>> = values.iter().map(|v| self.shape(v)).collect();
        let e = parse(cx, &eq, &shapes)?;
        let name = cx.out0()?;
        // Letters of one operand in neither the other operand nor the output are summed first.
        let mut ops: Vec<(Value, Vec<char>, String)> = Vec::new();
        for (i, (v, t)) in values.into_iter().zip(&e.terms).enumerate() {
            let (v, t) = self.einsum_diagonals(cx, &format!("{name}/operand{i}"), v, t.clone())?;
            let t = &t;
            let other: Vec<char> = e.terms.iter().enumerate().filter(|&(j, _)| j != i).flat_map(|(_, u)| u.clone()).collect();
            let summed: Vec<usize> = (0..t.len()).filter(|&a| !e.output.contains(&t[a]) && !other.contains(&t[a])).collect();
            let label = format!("{name}/operand{i}");
            let v = self.einsum_sum(cx, &label, v, summed.clone())?;
            let t: Vec<char> = (0..t.len()).filter(|a| !summed.contains(a)).map(|a| t[a]).collect();
            ops.push((v, t, label));
        }
        if ops.len() == 1 {
            let (v, t, _) = ops.remove(0);
            let perm: Vec<usize> = e.output.iter().map(|c| t.iter().position(|d| d == c).unwrap_or(0)).collect();
            return self.transpose_value(cx, name, &v, perm);
        }
        let (b, tb, bn) = ops.remove(1);
        let (a, ta, an) = ops.remove(0);
        let batch: Vec<char> = e.output.iter().copied().filter(|c| ta.contains(c) && tb.contains(c)).collect();
        let contracted: Vec<char> = ta.iter().copied().filter(|c| tb.contains(c) && !e.output.contains(c)).collect();
        let rows: Vec<char> = e.output.iter().copied().filter(|c| ta.contains(c) && !tb.contains(c)).collect();
        let cols: Vec<char> = e.output.iter().copied().filter(|c| tb.contains(c) && !ta.contains(c)).collect();
        let (sa, sb) = (self.shape(&a), self.shape(&b));
        let extent = |c: &char| -> usize {
            match ta.iter().position(|d| d == c) {
                Some(p) => sa[p],
                None => sb[tb.iter().position(|d| d == c).unwrap_or(0)],
            }
        };
        let batch_dims: Vec<usize> = batch.iter().map(extent).collect();
        let (m, k, nn) = (
            elements(&rows.iter().map(extent).collect::<Vec<_>>()),
            elements(&contracted.iter().map(extent).collect::<Vec<_>>()),
            elements(&cols.iter().map(extent).collect::<Vec<_>>()),
        );
        let arrange = |imp: &mut Self, v: &Value, t: &[char], order: Vec<char>, matrix: [usize; 2], label: &str| -> R<Value> {
            let perm: Vec<usize> = order.iter().map(|c| t.iter().position(|d| d == c).unwrap_or(0)).collect();
            let v = imp.transpose_value(cx, format!("{label}/transposed"), v, perm)?;
            let mut shape = batch_dims.clone();
            shape.extend(matrix);
            imp.reshape_value(cx, format!("{label}/matrix"), &v, shape)
        };
        let a_order: Vec<char> = batch.iter().chain(&rows).chain(&contracted).copied().collect();
        let b_order: Vec<char> = batch.iter().chain(&contracted).chain(&cols).copied().collect();
        let am = arrange(self, &a, &ta, a_order, [m, k], &an)?;
        let bm = arrange(self, &b, &tb, b_order, [k, nn], &bn)?;
        let y = self.matmul_values(cx, &format!("{name}/product"), (&format!("{an}/matrix"), &am), (&format!("{bn}/matrix"), &bm))?;
        let produced: Vec<char> = batch.iter().chain(&rows).chain(&cols).copied().collect();
        let shape: Vec<usize> = produced.iter().map(extent).collect();
        let y = self.reshape_value(cx, format!("{name}/unflattened"), &y, shape)?;
        let perm: Vec<usize> = e.output.iter().map(|c| produced.iter().position(|d| d == c).unwrap_or(0)).collect();
        self.transpose_value(cx, name, &y, perm)
    }

    /// Takes the diagonal for each letter repeated within term `t` of `v`: the two axes moved
    /// last, flattened, and every `(n + 1)`-th element gathered. Returns the value and its term.
    fn einsum_diagonals(&mut self, cx: &Cx, label: &str, v: Value, t: Vec<char>) -> R<(Value, Vec<char>)> {
        let (mut v, mut t) = (v, t);
        let mut k = 0;
        while let Some((p, q)) = (0..t.len()).find_map(|q| t[..q].iter().position(|c| *c == t[q]).map(|p| (p, q))) {
            let s = self.shape(&v);
            let n = s[p];
            let others: Vec<usize> = (0..t.len()).filter(|&a| a != p && a != q).collect();
            let perm: Vec<usize> = others.iter().copied().chain([p, q]).collect();
            let base = format!("{label}/diagonal{k}");
            let moved = self.transpose_value(cx, format!("{base}/transposed"), &v, perm)?;
            let mut flat: Vec<usize> = others.iter().map(|&a| s[a]).collect();
            flat.push(n * n);
            let moved = self.reshape_value(cx, format!("{base}/flattened"), &moved, flat)?;
            v = self.gather_value(cx, base, &moved, others.len(), (0..n).map(|i| i * (n + 1)).collect())?;
            t = others.iter().map(|&a| t[a]).chain([t[p]]).collect();
            k += 1;
        }
        Ok((v, t))
    }

    /// The sum of a value over `axes` (none: the value itself).
    fn einsum_sum(&mut self, cx: &Cx, label: &str, v: Value, axes: Vec<usize>) -> R<Value> {
        if axes.is_empty() {
            return Ok(v);
        }
        let r = Reduction::new(&self.shape(&v), axes, false);
        let label = label.to_string();
        self.reduce_value(cx, v, r, Reduce::Sum, |imp, id, r| imp.mean_or_sum(cx, &format!("{label}/sum"), id, r, true))
    }
}
