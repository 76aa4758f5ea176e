//! The proxy model of proxy mode (§3 of `docs/algorithms.md`): for tables that have features and
//! labels but no model, a small classifier trained in the pipeline whose per-example scores
//! stand in for a network's — multinomial logistic regression, or one hidden ReLU layer.
//!
//! Scores follow Paul, Ganguli, Dziugaite, *Deep Learning on a Data Diet*, NeurIPS 2021,
//! arXiv:2107.07075: EL2N `‖p − y‖₂` and GraNd `‖∇_θ ℓ(x, y)‖₂`, here the **exact** gradient
//! norm over all of the proxy's parameters by explicit backpropagation:
//! * logistic (`z = W x + b`): `‖∇ℓ‖² = ‖g‖² (‖x‖² + 1)` with `g = p − y`;
//! * hidden layer (`a = W₁x + b₁`, `h = relu(a)`, `z = W₂h + b₂`):
//!   `‖∇ℓ‖² = ‖g‖² (‖h‖² + 1) + ‖δ‖² (‖x‖² + 1)` with `δ = (W₂ᵀ g) ⊙ 1[a > 0]`.
//!
//! Parameters live in one vector `θ = [W₁ | b₁ | W₂ | b₂]` (row-major; `W₁, b₁` absent for the
//! logistic model). Initialisation is seeded Gaussian with variance `1/fan_in` and zero biases —
//! never all-zero weights: with zero init every `‖p − e_y‖` equals `sqrt((K−1)/K)` and GraNd
//! degenerates to a function of `‖x‖` (the trap noted by Kirsch, arXiv:2303.14753).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::{el2n, exp_nonpositive, softmax_into, Target};
use crate::{Error, Result};

/// A logistic-regression or one-hidden-layer classifier (see the module docs).
#[derive(Debug, Clone)]
pub struct Proxy {
    d: usize,
    k: usize,
    hidden: Option<usize>,
    theta: Vec<f64>,
}

/// Per-example work buffers, reused across calls (no allocation per row).
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    a: Vec<f64>,
    h: Vec<f64>,
    z: Vec<f64>,
    p: Vec<f64>,
    g: Vec<f64>,
    delta: Vec<f64>,
}

impl Proxy {
    /// A freshly initialised model for `d` features and `k ≥ 2` classes.
    pub fn new(d: usize, k: usize, hidden: Option<usize>, seed: u64) -> Result<Self> {
        if d == 0 || k < 2 || hidden == Some(0) {
            return Err(Error::Config(format!(
                "proxy model: need ≥ 1 feature, ≥ 2 classes and ≥ 1 hidden unit, got d = {d}, K = {k}, hidden = {hidden:?}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut theta = Vec::new();
        let mut layer = |fan_in: usize, fan_out: usize, theta: &mut Vec<f64>| {
            let normal = Normal::new(0.0, (1.0 / fan_in as f64).sqrt()).expect("positive sd");
            theta.extend((0..fan_in * fan_out).map(|_| normal.sample(&mut rng)));
            theta.extend(std::iter::repeat_n(0.0, fan_out));
        };
        match hidden {
            Some(m) => {
                layer(d, m, &mut theta);
                layer(m, k, &mut theta);
            }
            None => layer(d, k, &mut theta),
        }
        Ok(Proxy {
            d,
            k,
            hidden,
            theta,
        })
    }

    pub fn classes(&self) -> usize {
        self.k
    }

    /// All parameters, `[W₁ | b₁ | W₂ | b₂]`.
    pub fn params(&self) -> &[f64] {
        &self.theta
    }

    pub fn params_mut(&mut self) -> &mut [f64] {
        &mut self.theta
    }

    /// `(W, b)` of the output layer and, for the hidden model, of the hidden layer.
    fn split(theta: &[f64], d: usize, k: usize, hidden: Option<usize>) -> Layers<'_> {
        match hidden {
            None => {
                let (w2, b2) = theta.split_at(k * d);
                Layers {
                    first: None,
                    w2,
                    b2,
                }
            }
            Some(m) => {
                let (w1, rest) = theta.split_at(m * d);
                let (b1, rest) = rest.split_at(m);
                let (w2, b2) = rest.split_at(k * m);
                Layers {
                    first: Some((w1, b1)),
                    w2,
                    b2,
                }
            }
        }
    }

    /// Forward pass into `s` (`s.p` = probabilities); returns the width of the output layer's
    /// input (`d` or the hidden width).
    fn forward(&self, x: &[f64], s: &mut Scratch) -> Result<()> {
        if x.len() != self.d {
            return Err(Error::Input(format!(
                "the proxy model expects {} features, got {}",
                self.d,
                x.len()
            )));
        }
        let layers = Self::split(&self.theta, self.d, self.k, self.hidden);
        let input: &[f64] = match layers.first {
            Some((w1, b1)) => {
                affine(w1, b1, x, &mut s.a);
                s.h.clear();
                s.h.extend(s.a.iter().map(|v| v.max(0.0)));
                &s.h
            }
            None => x,
        };
        affine(layers.w2, layers.b2, input, &mut s.z);
        softmax_into(&s.z, &mut s.p)
    }

    /// The predicted class: the argmax of the model's probabilities.
    pub fn predict(&self, x: &[f64], s: &mut Scratch) -> Result<usize> {
        self.forward(x, s)?;
        Ok(argmax(&s.p))
    }

    /// Cross-entropy `−Σ_k y_k ln p_k` of one example.
    pub fn loss(&self, x: &[f64], y: Target<'_>, s: &mut Scratch) -> Result<f64> {
        self.forward(x, s)?;
        el2n(&s.p, y)?; // validates the label against K
        Ok(match y {
            Target::Class(c) => -s.z[c as usize] + log_sum_exp(&s.z),
            Target::Distribution(q) => {
                let lse = log_sum_exp(&s.z);
                q.iter().zip(&s.z).map(|(w, z)| w * (lse - z)).sum()
            }
        })
    }

    /// EL2N and exact GraNd of one example; if `grad` is given, the gradient `∇_θ ℓ` is
    /// **added** to it (minibatch accumulation).
    pub fn score(
        &self,
        x: &[f64],
        y: Target<'_>,
        s: &mut Scratch,
        grad: Option<&mut [f64]>,
    ) -> Result<(f64, f64)> {
        self.forward(x, s)?;
        let e = el2n(&s.p, y)?;
        s.g.clear();
        s.g.extend_from_slice(&s.p);
        match y {
            Target::Class(c) => s.g[c as usize] -= 1.0,
            Target::Distribution(q) => s.g.iter_mut().zip(q).for_each(|(g, q)| *g -= q),
        }
        let g_sq: f64 = s.g.iter().map(|v| v * v).sum();
        let layers = Self::split(&self.theta, self.d, self.k, self.hidden);
        let x_sq: f64 = x.iter().map(|v| v * v).sum();
        let grand_sq = match layers.first {
            None => g_sq * (x_sq + 1.0),
            Some(_) => {
                // δ = (W₂ᵀ g) ⊙ 1[a > 0].
                let m = s.h.len();
                s.delta.clear();
                s.delta.resize(m, 0.0);
                for (gk, row) in s.g.iter().zip(layers.w2.chunks_exact(m)) {
                    for (dj, w) in s.delta.iter_mut().zip(row) {
                        *dj += gk * w;
                    }
                }
                for (dj, a) in s.delta.iter_mut().zip(&s.a) {
                    if *a <= 0.0 {
                        *dj = 0.0;
                    }
                }
                let h_sq: f64 = s.h.iter().map(|v| v * v).sum();
                let d_sq: f64 = s.delta.iter().map(|v| v * v).sum();
                g_sq * (h_sq + 1.0) + d_sq * (x_sq + 1.0)
            }
        };
        if let Some(grad) = grad {
            self.add_gradient(x, s, grad);
        }
        Ok((e, grand_sq.sqrt()))
    }

    /// `grad += ∇_θ ℓ` from the buffers a [`Self::score`] call left in `s`.
    fn add_gradient(&self, x: &[f64], s: &Scratch, grad: &mut [f64]) {
        let outer = |g: &[f64], v: &[f64], w: &mut [f64], b: &mut [f64]| {
            for ((gk, row), bk) in g.iter().zip(w.chunks_exact_mut(v.len())).zip(b.iter_mut()) {
                for (wkj, vj) in row.iter_mut().zip(v) {
                    *wkj += gk * vj;
                }
                *bk += gk;
            }
        };
        match self.hidden {
            None => {
                let (w, b) = grad.split_at_mut(self.k * self.d);
                outer(&s.g, x, w, b);
            }
            Some(m) => {
                let (w1, rest) = grad.split_at_mut(m * self.d);
                let (b1, rest) = rest.split_at_mut(m);
                let (w2, b2) = rest.split_at_mut(self.k * m);
                outer(&s.g, &s.h, w2, b2);
                outer(&s.delta, x, w1, b1);
            }
        }
    }

    /// One minibatch SGD step on row-major `xs` (`n × d`) with targets `ys`: one forward and
    /// one backward pass per row. Returns the minibatch's summed loss and correct predictions
    /// (argmax, against the class or the largest label weight), both before the step.
    pub fn sgd_step(
        &mut self,
        xs: &[f64],
        ys: &[Target<'_>],
        lr: f64,
        s: &mut Scratch,
        grad: &mut Vec<f64>,
    ) -> Result<StepStats> {
        let n = ys.len();
        let mut stats = StepStats::default();
        if n == 0 {
            return Ok(stats);
        }
        grad.clear();
        grad.resize(self.theta.len(), 0.0);
        for (x, y) in xs.chunks_exact(self.d).zip(ys) {
            self.score(x, *y, s, Some(grad))?;
            let lse = log_sum_exp(&s.z);
            let (loss, truth) = match *y {
                Target::Class(c) => (lse - s.z[c as usize], c as usize),
                Target::Distribution(q) => (
                    q.iter().zip(&s.z).map(|(w, z)| w * (lse - z)).sum(),
                    argmax(q),
                ),
            };
            stats.loss += loss;
            stats.correct += u64::from(argmax(&s.p) == truth);
            stats.rows += 1;
        }
        let scale = lr / n as f64;
        for (t, g) in self.theta.iter_mut().zip(grad.iter()) {
            *t -= scale * g;
        }
        Ok(stats)
    }
}

/// Loss and accuracy counts of training steps (sums: add them up over an epoch).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Summed cross-entropy.
    pub loss: f64,
    /// Rows predicted right.
    pub correct: u64,
    pub rows: u64,
}

impl std::ops::AddAssign for StepStats {
    fn add_assign(&mut self, o: Self) {
        self.loss += o.loss;
        self.correct += o.correct;
        self.rows += o.rows;
    }
}

/// Index of the largest entry (the first of equal ones).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

struct Layers<'a> {
    first: Option<(&'a [f64], &'a [f64])>,
    w2: &'a [f64],
    b2: &'a [f64],
}

/// `out = W v + b` for a row-major `W`.
fn affine(w: &[f64], b: &[f64], v: &[f64], out: &mut Vec<f64>) {
    out.clear();
    out.extend(
        w.chunks_exact(v.len())
            .zip(b)
            .map(|(row, bk)| bk + row.iter().zip(v).map(|(a, c)| a * c).sum::<f64>()),
    );
}

fn log_sum_exp(z: &[f64]) -> f64 {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + z.iter().map(|v| exp_nonpositive(v - max)).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `‖∇θ ℓ‖` by central finite differences, parameter by parameter.
    fn finite_difference_norm(model: &Proxy, x: &[f64], y: Target<'_>) -> f64 {
        let mut m = model.clone();
        let mut s = Scratch::default();
        let eps = 1e-6;
        let mut sq = 0.0;
        for i in 0..m.params().len() {
            let t = m.params()[i];
            m.params_mut()[i] = t + eps;
            let up = m.loss(x, y, &mut s).unwrap();
            m.params_mut()[i] = t - eps;
            let down = m.loss(x, y, &mut s).unwrap();
            m.params_mut()[i] = t;
            sq += ((up - down) / (2.0 * eps)).powi(2);
        }
        sq.sqrt()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Exact GraNd equals a finite-difference gradient norm, for both proxy models and for
        /// class and soft labels.
        #[test]
        fn grand_equals_the_finite_difference_gradient_norm(
            seed in 0u64..1000,
            x in proptest::collection::vec(-2.0f64..2.0, 5),
            label in 0i64..3,
            hidden in proptest::option::of(1usize..6),
        ) {
            let model = Proxy::new(5, 3, hidden, seed).unwrap();
            let mut s = Scratch::default();
            let soft = [0.2, 0.5, 0.3];
            for y in [Target::Class(label), Target::Distribution(&soft)] {
                let (_, grand) = model.score(&x, y, &mut s, None).unwrap();
                let fd = finite_difference_norm(&model, &x, y);
                prop_assert!((grand - fd).abs() <= 1e-5 * (1.0 + fd), "{grand} vs {fd}");
            }
            // For the logistic model the closed form of `prune::grand_last_layer` agrees.
            if hidden.is_none() {
                let (e, grand) = model.score(&x, Target::Class(label), &mut s, None).unwrap();
                let x_sq: f64 = x.iter().map(|v| v * v).sum();
                prop_assert!((grand - super::super::grand_last_layer(e, x_sq, true)).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn sgd_learns_a_separable_problem_and_lowers_the_loss() {
        // Two classes on either side of x₀ = 0.
        let n = 200;
        let xs: Vec<f64> = (0..n)
            .flat_map(|i| {
                let s = if i % 2 == 0 { 1.0 } else { -1.0 };
                [s * (0.5 + (i % 7) as f64 / 7.0), (i % 5) as f64 / 5.0 - 0.4]
            })
            .collect();
        let ys: Vec<Target<'_>> = (0..n).map(|i| Target::Class((i % 2) as i64)).collect();
        for hidden in [None, Some(8)] {
            let mut model = Proxy::new(2, 2, hidden, 1).unwrap();
            let (mut s, mut g) = (Scratch::default(), Vec::new());
            let first = model.sgd_step(&xs, &ys, 0.5, &mut s, &mut g).unwrap();
            let mut last = first;
            for _ in 0..200 {
                last = model.sgd_step(&xs, &ys, 0.5, &mut s, &mut g).unwrap();
            }
            // The reported loss is the model's own mean cross-entropy.
            let direct: f64 = xs
                .chunks_exact(2)
                .zip(&ys)
                .map(|(x, y)| model.loss(x, *y, &mut s).unwrap())
                .sum();
            let after = model.sgd_step(&xs, &ys, 0.0, &mut s, &mut g).unwrap();
            assert!((after.loss - direct).abs() < 1e-9 * direct.max(1.0));
            assert_eq!(after.rows, n as u64);
            assert!(
                last.loss < 0.2 * first.loss,
                "{hidden:?}: loss {first:?} -> {last:?}"
            );
            assert!(
                after.correct as f64 > 0.95 * n as f64,
                "{hidden:?}: {after:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_shapes_and_labels() {
        let model = Proxy::new(3, 2, None, 1).unwrap();
        let mut s = Scratch::default();
        assert!(model
            .score(&[1.0, 2.0], Target::Class(0), &mut s, None)
            .is_err());
        let err = model
            .score(&[1.0, 2.0, 3.0], Target::Class(2), &mut s, None)
            .unwrap_err();
        assert!(err.to_string().contains("outside [0, 2)"), "{err}");
        assert!(Proxy::new(3, 1, None, 1).is_err());
        assert!(Proxy::new(0, 2, None, 1).is_err());
    }
}
