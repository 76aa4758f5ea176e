//! `op = "sketch_merge"`: one sketch from sketches of disjoint row sets (partitions, days,
//! machines) made with the same method, seed, hash and key type — as if built in one pass
//! ([`crate::sketch::stored::merge`]; §2 of `docs/algorithms.md`). Its tables are those of a
//! `coordinated_sketch` stage; its output is read as a sketch, not as rows.

use datafusion::arrow::datatypes::Schema;

use super::coordinated_sketch::output_tables;
use super::op::{Execution, FromSketches, InputForm, Op, OpKind};
use super::{OutputTable, TableDecl};
use crate::sketch::stored::{self, Header, StoredSketch};
use crate::{Error, Result};

/// The registry's entry (the op has no keys but its inputs).
pub const KIND: OpKind = OpKind {
    name: "sketch_merge",
    parse: |_| Ok(Box::new(SketchMerge)),
    functions: crate::udf::sketches::merge_functions,
};

/// `op = "sketch_merge"`.
#[derive(Debug, Clone, Copy)]
pub struct SketchMerge;

impl Op for SketchMerge {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn input_form(&self) -> InputForm {
        InputForm::SketchList
    }

    fn table_names(&self) -> Vec<&'static str> {
        vec!["sketch", "stats"]
    }

    fn tables(&self, _input: &Schema) -> Result<Vec<TableDecl>> {
        Err(Error::Config(
            "a sketch_merge output is read as a sketch (sketch_product's left/right, or \
             another sketch_merge's inputs), not as a `source`"
                .into(),
        ))
    }

    fn writes_sketch(&self) -> bool {
        true
    }

    fn execution(&self) -> Execution<'_> {
        Execution::Sketches(self)
    }
}

impl FromSketches for SketchMerge {
    fn compute(&self, sketches: Vec<(StoredSketch, Header, String)>) -> Result<Vec<OutputTable>> {
        let (merged, header) = stored::merge(sketches)?;
        output_tables(&merged, &header)
    }
}
