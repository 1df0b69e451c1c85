//! `Einsum` of one or two operands, rewritten to transposes, reshapes, sums and one matrix
//! product: the forms of attention and of linear layers (`bij,bjk->bik`,
//! `bhqd,bhkd->bhqk`, `bid,dj->bij`, `ij->ji`, ...). Ellipses, diagonals (a letter twice in
//! one term) and three or more operands are rejected with a clear error.

use cryptflow_frontend::eval::{Reduce, Reduction};
use cryptflow_frontend::{Lowering, NodeContext};
use cryptflow_tensor::num_elements as elements;

use crate::attrs::Cx;
use crate::import::{Importer, Value};
use crate::OnnxError;

type R<T> = Result<T, OnnxError>;

/// A parsed equation: one term (its letters) per operand, and the output's letters.
struct Equation {
    terms: Vec<Vec<char>>,
    output: Vec<char>,
}

fn parse(cx: &Cx, eq: &str, shapes: &[Vec<usize>]) -> R<Equation> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains('.') {
        return Err(cx.unsupported(format!("equation `{eq}`: ellipses (broadcast dimensions) are not supported")));
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    if terms.len() != shapes.len() {
        return Err(cx.invalid(format!("equation `{eq}` has {} terms for {} inputs", terms.len(), shapes.len())));
    }
    let letters_ok = |t: &[char]| t.iter().all(|c| c.is_ascii_alphabetic());
    for (t, s) in terms.iter().zip(shapes) {
        if !letters_ok(t) {
            return Err(cx.invalid(format!("equation `{eq}`: terms are made of letters")));
        }
        if t.len() != s.len() {
            return Err(cx.shape_err(format!("equation `{eq}`: term `{}` does not match an input of shape {s:?}", t.iter().collect::<String>())));
        }
        if (1..t.len()).any(|i| t[..i].contains(&t[i])) {
            return Err(cx.unsupported(format!(
                "equation `{eq}`: a letter repeated within a term (a diagonal) is not supported"
            )));
        }
    }
    let output: Vec<char> = match rhs {
        Some(r) => {
            let o: Vec<char> = r.chars().collect();
            if !letters_ok(&o) || (1..o.len()).any(|i| o[..i].contains(&o[i])) {
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
                .filter(|c| terms.iter().flatten().filter(|d| *d == c).count() == 1)
                .collect();
            once.sort_unstable();
            once
        }
    };
    // Every letter has one extent.
    for (i, t) in terms.iter().enumerate() {
        for (a, c) in t.iter().enumerate() {
            for (j, u) in terms.iter().enumerate().skip(i + 1) {
                if let Some(b) = u.iter().position(|d| d == c) {
                    if shapes[i][a] != shapes[j][b] {
                        return Err(cx.shape_err(format!(
                            "equation `{eq}`: letter `{c}` has extent {} in input {i} but {} in input {j}",
                            shapes[i][a], shapes[j][b]
                        )));
                    }
                }
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
