//! The `pca` op: its keys, its tables, how it runs (operator passes, or one `pca_state`
//! aggregate on a cluster for the mergeable algorithms).

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::Schema;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{lit, Expr};
use datafusion::prelude::SessionContext;

use super::state::MergeablePca;
use super::{PcaOp, PcaParams};
use crate::keys::Keys;
use crate::operators::op::{
    check_folded, ClusterAggregate, Execution, Op, OpKind, Passes, Shuffle, StageContext,
};
use crate::operators::top_eigenvector::stage::parse_rows_keys;
use crate::operators::{
    merge_state_structs, rows_expr, Algorithm, Operator, OutputTable, PassInfo, TableDecl,
};
use crate::rows::OnInvalid;
use crate::{Error, Result};

/// The registry's entry.
pub const KIND: OpKind = OpKind {
    name: "pca",
    parse: |keys| Ok(Box::new(parse(keys)?)),
    functions: crate::udf::pca::functions,
};

impl Op for PcaParams {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn table_names(&self) -> Vec<&'static str> {
        self.tables().iter().map(|t| t.name).collect()
    }

    fn tables(&self, _input: &Schema) -> Result<Vec<TableDecl>> {
        Ok(PcaParams::tables(self))
    }

    fn columns(&self) -> &[String] {
        &self.base.columns
    }

    fn seed(&self) -> Option<u64> {
        Some(self.base.seed)
    }

    fn shuffle(&self) -> Option<Shuffle> {
        self.base.shuffle.then_some(Shuffle {
            seed: self.base.seed,
            memory: self.base.shuffle_memory,
        })
    }

    fn incremental(&self) -> bool {
        self.base.incremental
    }

    fn make_incremental(&mut self) -> std::result::Result<(), String> {
        if !self.base.algorithm.is_mergeable() {
            return Err(
                "needs a mergeable algorithm: \"exact\" or \"frequent-directions\" \
                 (random-order and oja make one ordered pass over all the rows)"
                    .into(),
            );
        }
        if self.base.shuffle {
            return Err(
                "cannot be combined with shuffle = true (exact and frequent-directions do not \
                 depend on the row order)"
                    .into(),
            );
        }
        self.base.incremental = true;
        Ok(())
    }

    fn execution(&self) -> Execution<'_> {
        Execution::Passes(self)
    }

    fn cluster(&self) -> Option<&dyn ClusterAggregate> {
        let eligible = self.base.algorithm.is_mergeable()
            && !self.base.shuffle
            && !self.base.incremental
            && self.base.on_invalid == OnInvalid::Error;
        eligible.then_some(self as &dyn ClusterAggregate)
    }
}

impl Passes for PcaParams {
    fn operator(&self, ctx: &StageContext<'_>) -> Result<Box<dyn Operator>> {
        let mut op = PcaOp::new(self.clone(), ctx.schema)?;
        if let Some(dir) = ctx.previous {
            op.resume(dir)?;
        }
        Ok(Box::new(op))
    }
}

impl ClusterAggregate for PcaParams {
    fn aggregate(&self, session: &SessionContext) -> Result<Expr> {
        let mut args = vec![
            rows_expr(&self.base.columns),
            lit(self.base.algorithm.as_str()),
            lit(self.center),
        ];
        if let Some(ell) = self.ell() {
            args.push(lit(ell as u64));
        }
        Ok(session.udaf("pca_state")?.call(args))
    }

    fn finish(
        &self,
        state: &ArrayRef,
        rows: u64,
        schema: &Schema,
        order_randomised: bool,
    ) -> Result<Vec<OutputTable>> {
        let fields = state.as_struct();
        let merged = if fields.is_null(0) {
            None
        } else {
            MergeablePca::from_columns(fields.columns(), 0, self.ell())?
        };
        let Some(merged) = merged else {
            return Err(Error::Input("the input has no rows".into()));
        };
        check_folded(merged.rows(), rows, &self.base.columns)?;
        let info = PassInfo {
            rows: Some(rows),
            order_randomised,
            scan: 1,
        };
        PcaOp::new(self.clone(), schema)?.finish_from_state(merged, info)
    }

    fn merge_states(&self, a: &ArrayRef, b: &ArrayRef) -> Result<ArrayRef> {
        merge_state_structs(
            a,
            b,
            |c| MergeablePca::from_columns(c, 0, self.ell()),
            MergeablePca::to_columns,
        )
    }
}

/// Reads a `pca` stage's keys: `top_eigenvector`'s (but `verify`; the default algorithm is
/// `exact`) and `components`, `center`, `scale`.
pub fn parse(keys: &mut Keys<'_>) -> Result<PcaParams> {
    let base = parse_rows_keys(keys, Algorithm::Exact, false)?;
    let components = match keys.unsigned("components")? {
        Some(0) => return Err(keys.error("components", "must be at least 1")),
        Some(k) => k as usize,
        None => 1,
    };
    let center = keys.boolean("center")?.unwrap_or(true);
    let scale = keys.boolean("scale")?.unwrap_or(false);
    if scale && !center {
        return Err(keys.error(
            "scale",
            "scale = true needs center = true (the standard deviation is about the mean)",
        ));
    }
    if components > 1 && base.algorithm.is_order_sensitive() {
        return Err(keys.error(
            "components",
            format!(
                "algorithm = \"{}\" estimates the top component only; for components = \
                 {components} use algorithm = \"exact\" or \"frequent-directions\"",
                base.algorithm.as_str()
            ),
        ));
    }
    if base.algorithm == Algorithm::FrequentDirections && components >= base.ell {
        return Err(keys.error(
            "components",
            format!(
                "components = {components} needs ell > {components} with frequent-directions \
                 (ell = {}); raise ell or use algorithm = \"exact\"",
                base.ell
            ),
        ));
    }
    Ok(PcaParams {
        base,
        components,
        center,
        scale,
    })
}
