//! Every op this build implements: one line each. A stage's `op = "NAME"` is looked up here;
//! everything else about the op is in its module, behind [`super::op::Op`].

use super::op::OpKind;

/// The ops, in the order `--help` and error messages list them.
pub const OPS: &[OpKind] = &[
    super::top_eigenvector::stage::KIND,
    super::pca::stage::KIND,
    super::project::KIND,
    super::prune_scores::stage::KIND,
    super::coordinated_sketch::stage::KIND,
    super::sketch_product::KIND,
    super::sketch_merge::KIND,
    super::sketch_regression::KIND,
    super::sketch_search::KIND,
];

/// The op called `name`.
pub fn find(name: &str) -> Option<&'static OpKind> {
    OPS.iter().find(|k| k.name == name)
}

/// The names of the ops, for messages.
pub fn names() -> Vec<&'static str> {
    OPS.iter().map(|k| k.name).collect()
}
