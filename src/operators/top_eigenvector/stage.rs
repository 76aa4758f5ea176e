//! The `top_eigenvector` op: its keys, its tables, how it runs (operator passes, or one
//! aggregate on a cluster for the mergeable algorithms).

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::Schema;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{lit, Expr};
use datafusion::prelude::SessionContext;

use super::{Algorithm, Frobenius, TopEigenvectorOp, TopEigenvectorParams};
use crate::keys::Keys;
use crate::operators::eigen_state::MergeableEigen;
use crate::operators::op::{
    check_folded, ClusterAggregate, Execution, Op, OpKind, Passes, Shuffle, StageContext,
};
use crate::operators::{
    merge_state_structs, rows_expr, Operator, OutputTable, PassInfo, TableDecl,
};
use crate::rows::OnInvalid;
use crate::{Error, Result};

/// The registry's entry.
pub const KIND: OpKind = OpKind {
    name: "top_eigenvector",
    parse: |keys| Ok(Box::new(parse(keys)?)),
    functions: crate::udf::eigen::functions,
};

impl Op for TopEigenvectorParams {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn table_names(&self) -> Vec<&'static str> {
        TopEigenvectorOp::tables(self.incremental)
            .iter()
            .map(|t| t.name)
            .collect()
    }

    fn tables(&self, _input: &Schema) -> Result<Vec<TableDecl>> {
        Ok(TopEigenvectorOp::tables(self.incremental))
    }

    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn seed(&self) -> Option<u64> {
        Some(self.seed)
    }

    fn shuffle(&self) -> Option<Shuffle> {
        self.shuffle.then_some(Shuffle {
            seed: self.seed,
            memory: self.shuffle_memory,
        })
    }

    fn incremental(&self) -> bool {
        self.incremental
    }

    fn make_incremental(&mut self) -> std::result::Result<(), String> {
        if !self.algorithm.is_mergeable() {
            return Err(
                "needs a mergeable algorithm: \"exact\" or \"frequent-directions\" \
                        (random-order and oja make one ordered pass over all the rows)"
                    .into(),
            );
        }
        if self.verify {
            return Err(
                "cannot be combined with verify = true (it needs a pass over every file)".into(),
            );
        }
        if self.shuffle {
            return Err(
                "cannot be combined with shuffle = true (exact and frequent-directions do not \
                 depend on the row order)"
                    .into(),
            );
        }
        self.incremental = true;
        Ok(())
    }

    fn file_order_remedy(&self) -> Option<&'static str> {
        Some("`verify = true` measures the answer's residual in one more pass")
    }

    fn execution(&self) -> Execution<'_> {
        Execution::Passes(self)
    }

    fn cluster(&self) -> Option<&dyn ClusterAggregate> {
        let eligible = self.algorithm.is_mergeable()
            && !self.verify
            && !self.shuffle
            && !self.incremental
            && self.on_invalid == OnInvalid::Error;
        eligible.then_some(self as &dyn ClusterAggregate)
    }
}

impl Passes for TopEigenvectorParams {
    fn operator(&self, ctx: &StageContext<'_>) -> Result<Box<dyn Operator>> {
        let mut op = TopEigenvectorOp::new(self.clone(), ctx.schema)?;
        if let Some(dir) = ctx.previous {
            op.resume(dir)?;
        }
        Ok(Box::new(op))
    }
}

impl ClusterAggregate for TopEigenvectorParams {
    fn aggregate(&self, session: &SessionContext) -> Result<Expr> {
        let mut args = vec![
            rows_expr(&self.columns),
            lit(self.algorithm.as_str()),
            lit(self.seed),
        ];
        if self.algorithm == Algorithm::FrequentDirections {
            args.push(lit(self.ell as u64));
        }
        Ok(session.udaf("top_eigenvector_state")?.call(args))
    }

    fn finish(
        &self,
        state: &ArrayRef,
        rows: u64,
        schema: &Schema,
        order_randomised: bool,
    ) -> Result<Vec<OutputTable>> {
        let ell = (self.algorithm == Algorithm::FrequentDirections).then_some(self.ell);
        let fields = state.as_struct();
        let merged = if fields.is_null(0) {
            None
        } else {
            MergeableEigen::from_columns(fields.columns(), 0, ell)?
        };
        let Some(merged) = merged else {
            return Err(Error::Input("the input has no rows".into()));
        };
        check_folded(merged.rows(), rows, &self.columns)?;
        let info = PassInfo {
            rows: Some(rows),
            order_randomised,
            scan: 1,
        };
        TopEigenvectorOp::new(self.clone(), schema)?.finish_from_state(merged, info)
    }

    fn merge_states(&self, a: &ArrayRef, b: &ArrayRef) -> Result<ArrayRef> {
        let ell = (self.algorithm == Algorithm::FrequentDirections).then_some(self.ell);
        merge_state_structs(
            a,
            b,
            |c| MergeableEigen::from_columns(c, 0, ell),
            MergeableEigen::to_columns,
        )
    }
}

/// Reads a `top_eigenvector` stage's keys.
pub fn parse(keys: &mut Keys<'_>) -> Result<TopEigenvectorParams> {
    parse_rows_keys(keys, Algorithm::RandomOrder, true)
}

/// Reads the keys every eigen op over rows shares (`top_eigenvector`, `pca`): the columns,
/// the algorithm (`default` when not given) and its knobs, the shuffle, `on_invalid`, and
/// `verify` when `with_verify`.
pub fn parse_rows_keys(
    keys: &mut Keys<'_>,
    default: Algorithm,
    with_verify: bool,
) -> Result<TopEigenvectorParams> {
    let columns = keys.string_list("columns")?;
    let algorithm = keys
        .choice("algorithm", &Algorithm::NAMES)?
        .map(|s| Algorithm::parse(&s).expect("choice checked"))
        .unwrap_or(default);
    let mut p = TopEigenvectorParams::new(columns, algorithm);
    let only_for = |keys: &Keys<'_>, key: &str, what: &str| {
        keys.error(key, format!("only applies to algorithm = {what}"))
    };
    if let Some(seed) = keys.unsigned("seed")? {
        p.seed = seed;
    }
    p.shuffle = keys.boolean("shuffle")?.unwrap_or(false);
    if let Some(m) = keys.bytes("shuffle_memory")? {
        if !p.shuffle {
            return Err(keys.error("shuffle_memory", "only applies with shuffle = true"));
        }
        if m < 1 << 20 {
            return Err(keys.error("shuffle_memory", "must be at least 1MiB"));
        }
        p.shuffle_memory = m;
    }
    if with_verify {
        p.verify = keys.boolean("verify")?.unwrap_or(false);
    }
    if let Some(ell) = keys.unsigned("ell")? {
        if algorithm != Algorithm::FrequentDirections {
            return Err(only_for(keys, "ell", "\"frequent-directions\""));
        }
        if ell < 2 {
            return Err(keys.error("ell", format!("must be at least 2, got {ell}")));
        }
        p.ell = ell as usize;
    }
    let stream_order = "\"random-order\" or \"oja\"";
    if let Some(f) = keys.choice("frobenius", &["prefix", "exact"])? {
        if !algorithm.is_order_sensitive() {
            return Err(only_for(keys, "frobenius", stream_order));
        }
        p.frobenius = if f == "exact" {
            Frobenius::Exact
        } else {
            Frobenius::Prefix
        };
    }
    if let Some(m) = keys.unsigned("prefix_rows")? {
        if !algorithm.is_order_sensitive() || p.frobenius != Frobenius::Prefix {
            return Err(keys.error(
                "prefix_rows",
                format!("only applies to algorithm = {stream_order} with frobenius = \"prefix\""),
            ));
        }
        if m == 0 {
            return Err(keys.error("prefix_rows", "must be at least 1"));
        }
        p.prefix_rows = m;
    }
    let ro = "\"random-order\"";
    if let Some(f) = keys.float("heavy_factor")? {
        if algorithm != Algorithm::RandomOrder {
            return Err(only_for(keys, "heavy_factor", ro));
        }
        if f <= 0.0 {
            return Err(keys.error("heavy_factor", format!("must be positive, got {f}")));
        }
        p.random_order.heavy_factor = f;
    }
    if let Some(steps) = keys.unsigned("power_steps")? {
        if algorithm != Algorithm::RandomOrder {
            return Err(only_for(keys, "power_steps", ro));
        }
        if steps == 0 {
            return Err(keys.error("power_steps", "must be at least 1"));
        }
        p.random_order.power_steps = Some(steps as usize);
    }
    if let Some(k) = keys.unsigned("block_width")? {
        if algorithm != Algorithm::RandomOrder {
            return Err(only_for(keys, "block_width", ro));
        }
        if k == 0 {
            return Err(keys.error("block_width", "must be at least 1"));
        }
        p.random_order.block_width = k as usize;
    }
    if let Some(m) = keys.bytes("heavy_memory")? {
        if algorithm != Algorithm::RandomOrder {
            return Err(only_for(keys, "heavy_memory", ro));
        }
        p.random_order.heavy_memory = m;
    }
    if let Some(s) = keys.choice("on_invalid", &["error", "skip"])? {
        p.on_invalid = OnInvalid::parse(&s).expect("choice checked");
    }
    Ok(p)
}
