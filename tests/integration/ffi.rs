//! Every SQL function through DataFusion's FFI (`datafusion-ffi`), as the Python package hands
//! them to the `datafusion` Python package: exported, imported as a foreign function (the
//! library marker is overwritten so the import takes the FFI path rather than the same-library
//! shortcut), registered in a plain DataFusion session, and run on the queries of
//! `tests/reference/sql_function_queries.json` — each must give what sketchpipe's own session
//! gives. `python/tests/test_register.py` runs the same queries through the Python package.

use std::sync::Arc;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::logical_expr::{AggregateUDF, AggregateUDFImpl, ScalarUDF, ScalarUDFImpl};
use datafusion::prelude::SessionContext;
use datafusion_ffi::udaf::FFI_AggregateUDF;
use datafusion_ffi::udf::FFI_ScalarUDF;

extern "C" fn another_library() -> usize {
    datafusion_ffi::get_library_marker_id() + 1
}

fn foreign_scalar(f: ScalarUDF) -> ScalarUDF {
    let mut ffi = FFI_ScalarUDF::from(Arc::new(f));
    ffi.library_marker_id = another_library;
    let imported: Arc<dyn ScalarUDFImpl> = (&ffi).into();
    ScalarUDF::new_from_shared_impl(imported)
}

fn foreign_aggregate(f: AggregateUDF) -> AggregateUDF {
    let mut ffi = FFI_AggregateUDF::from(Arc::new(f));
    ffi.library_marker_id = another_library;
    let imported: Arc<dyn AggregateUDFImpl> = (&ffi).into();
    AggregateUDF::new_from_shared_impl(imported)
}

fn reference() -> (String, Vec<(String, String)>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference/sql_function_queries.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let prelude = doc["prelude"].as_str().unwrap().to_string();
    let queries = doc["queries"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    (prelude, queries)
}

#[test]
fn every_function_has_a_query() {
    let (_, queries) = reference();
    let mut names = sketchpipe::udf::names();
    names.sort();
    let mut listed: Vec<String> = queries.into_iter().map(|(k, _)| k).collect();
    listed.sort();
    assert_eq!(names, listed);
}

#[tokio::test]
async fn every_function_through_the_ffi_equals_our_session() {
    let foreign = SessionContext::new();
    for f in sketchpipe::udf::scalar_functions() {
        let f = foreign_scalar(f);
        assert!(f
            .inner()
            .downcast_ref::<datafusion_ffi::udf::ForeignScalarUDF>()
            .is_some());
        foreign.register_udf(f);
    }
    for f in sketchpipe::udf::aggregate_functions() {
        foreign.register_udaf(foreign_aggregate(f));
    }
    let ours = sketchpipe::pipeline::source::session();
    let (prelude, queries) = reference();
    for (name, query) in queries {
        let sql = format!("{prelude}{query}");
        let want = ours.sql(&sql).await.unwrap().collect().await.unwrap();
        let got = match foreign.sql(&sql).await {
            Ok(frame) => frame.collect().await,
            Err(e) => Err(e),
        }
        .unwrap_or_else(|e| panic!("{name} through the FFI: {e}"));
        assert!(
            want.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
            "{name}: no rows"
        );
        assert_eq!(
            pretty_format_batches(&got).unwrap().to_string(),
            pretty_format_batches(&want).unwrap().to_string(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn errors_cross_the_ffi_with_their_message() {
    let foreign = SessionContext::new();
    for f in sketchpipe::udf::scalar_functions() {
        foreign.register_udf(foreign_scalar(f));
    }
    let e = foreign
        .sql("SELECT el2n(make_array(1.0, 2.0), 5)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("row 0"), "{e}");
}
