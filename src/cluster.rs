//! Scale-out on DataFusion Ballista (cargo feature `ballista`): a scheduler and executors that
//! know sketchpipe's SQL functions, and client sessions that send queries to them.
//!
//! Stock Ballista processes do not know our functions: a plan naming `priority_sketch` fails
//! on the scheduler with "LogicalExtensionCodec is not provided for aggregate function". So:
//! * [`run_scheduler`] and [`run_executor`] start Ballista's own scheduler and executor with
//!   every function of [`crate::udf`] registered (the scheduler's session, the executor's
//!   function registry) and with [`LogicalCodec`] / [`PhysicalCodec`];
//! * the codecs wrap Ballista's (which carry shuffles, file formats and scans) and add our
//!   functions **by name**: a plan carries only the function's name, and decoding looks it up
//!   in [`crate::udf`] — the functions hold no state that would need serialising (their
//!   constant arguments are ordinary literal expressions of the plan);
//! * [`remote_context`] (`--cluster df://HOST:PORT`) and [`standalone_context`] (scheduler and
//!   executor in this process, for tests) are client sessions with the same functions and
//!   codecs.
//!
//! Files are read by the executors: the paths in a query must mean the same file on every
//! executor (a shared or replicated file system, or one machine).

use std::net::SocketAddr;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{not_impl_err, Result as DfResult, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::TableProvider;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::{FunctionRegistry, TaskContext};
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::{Error, Result};

/// A sketchpipe scalar function by name: what both codecs decode (a plan carries only names).
fn scalar_by_name(name: &str) -> DfResult<Arc<ScalarUDF>> {
    match crate::udf::scalar_functions()
        .into_iter()
        .find(|f| f.name() == name)
    {
        Some(f) => Ok(Arc::new(f)),
        None => not_impl_err!("scalar function `{name}` is not a sketchpipe function"),
    }
}

/// A sketchpipe aggregate function by name.
fn aggregate_by_name(name: &str) -> DfResult<Arc<AggregateUDF>> {
    match crate::udf::aggregate_functions()
        .into_iter()
        .find(|f| f.name() == name)
    {
        Some(f) => Ok(Arc::new(f)),
        None => not_impl_err!("aggregate function `{name}` is not a sketchpipe function"),
    }
}

/// Ballista's logical codec, plus sketchpipe's functions by name.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        self.inner
            .try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DfResult<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, _buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        scalar_by_name(name)
    }

    fn try_decode_udaf(&self, name: &str, _buf: &[u8]) -> DfResult<Arc<AggregateUDF>> {
        aggregate_by_name(name)
    }
}

/// Ballista's physical codec, plus sketchpipe's functions by name.
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, _buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        scalar_by_name(name)
    }

    fn try_decode_udaf(&self, name: &str, _buf: &[u8]) -> DfResult<Arc<AggregateUDF>> {
        aggregate_by_name(name)
    }
}

/// A Ballista session config with our codecs.
fn client_config() -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_information_schema(true)
        .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()))
}

/// `state` with every sketchpipe function registered.
fn with_functions(mut state: SessionState) -> DfResult<SessionState> {
    for f in crate::udf::scalar_functions() {
        state.register_udf(Arc::new(f))?;
    }
    for f in crate::udf::aggregate_functions() {
        state.register_udaf(Arc::new(f))?;
    }
    Ok(state)
}

/// The scheduler's session for a query: Ballista's default one (its optimizer rules and
/// functions) plus ours.
fn scheduler_session(config: SessionConfig) -> DfResult<SessionState> {
    with_functions(ballista_core::utils::default_session_builder(config)?)
}

/// A client session whose queries run on the Ballista scheduler at `url` (`df://HOST:PORT`).
pub async fn remote_context(url: &str) -> Result<SessionContext> {
    let state = SessionStateBuilder::new()
        .with_config(client_config())
        .with_default_features()
        .build();
    let ctx = SessionContext::remote_with_state(url, state)
        .await
        .map_err(|e| {
            Error::io(
                format!("cannot reach the Ballista scheduler at {url}"),
                std::io::Error::other(e.to_string()),
            )
        })?;
    // Ballista rebuilds the session's function lists when it connects: register ours after.
    crate::udf::register(&ctx);
    Ok(ctx.enable_url_table())
}

/// A client session with a Ballista scheduler and executor in this process.
pub async fn standalone_context() -> Result<SessionContext> {
    let state = SessionStateBuilder::new()
        .with_config(client_config())
        .with_default_features()
        .build();
    // The in-process scheduler and executor copy this state's functions…
    let state = with_functions(state)?;
    let ctx = SessionContext::standalone_with_state(state).await?;
    // …and the client's own list is rebuilt by Ballista: register them there too.
    crate::udf::register(&ctx);
    Ok(ctx.enable_url_table())
}

/// Runs a Ballista scheduler on `bind` until the process is stopped. An executor silent for
/// `executor_timeout` seconds is declared dead and its tasks run again elsewhere.
pub async fn run_scheduler(bind: SocketAddr, executor_timeout: u64) -> Result<()> {
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        executor_timeout_seconds: executor_timeout,
        expire_dead_executor_interval_seconds: (executor_timeout / 4).clamp(1, 15),
        override_session_builder: Some(Arc::new(scheduler_session)),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| Error::Config(format!("cannot set up the scheduler: {e}")))?;
    start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(|e| Error::Config(format!("the scheduler on {bind} stopped: {e}")))
}

/// Where an executor listens and which scheduler it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    pub bind_host: String,
    /// Arrow Flight port (shuffle data), and the executor's gRPC port.
    pub port: u16,
    pub grpc_port: u16,
    /// Tasks run at once (default: the machine's cores).
    pub concurrency: Option<usize>,
    /// Shuffle files (default: a temporary directory).
    pub work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler (keep it well under the scheduler's
    /// executor timeout).
    pub heartbeat_interval: u64,
}

/// Runs a Ballista executor until the process is stopped.
pub async fn run_executor(o: ExecutorOptions) -> Result<()> {
    // The same functions as the scheduler's sessions: DataFusion's, Ballista's and ours.
    let state = scheduler_session(SessionConfig::new_with_ballista())?;
    let registry = BallistaFunctionRegistry::from(&state);
    let mut config = ExecutorProcessConfig {
        scheduler_host: o.scheduler_host.clone(),
        scheduler_port: o.scheduler_port,
        bind_host: o.bind_host.clone(),
        port: o.port,
        grpc_port: o.grpc_port,
        work_dir: o.work_dir.clone(),
        executor_heartbeat_interval_seconds: o.heartbeat_interval,
        override_function_registry: Some(Arc::new(registry)),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..Default::default()
    };
    if let Some(c) = o.concurrency {
        config.vcores = c;
    }
    start_executor_process(Arc::new(config)).await.map_err(|e| {
        Error::Config(format!(
            "the executor (scheduler {}:{}) stopped: {e}",
            o.scheduler_host, o.scheduler_port
        ))
    })
}

/// Ballista reports a failed task's error as text — the `Debug` form of DataFusion's error
/// chain, e.g. `Job … failed: … DataFusionError(Shared(External(DataFusionError(External(
/// Input("key 464 is in more than one …"))))))`. This recovers the innermost sketchpipe error
/// from such a message, with its kind (so its exit code); other errors pass unchanged.
pub fn unwrap_remote(e: Error) -> Error {
    let text = e.to_string();
    let found = ["Input", "Config", "Numeric"]
        .iter()
        .filter_map(|kind| {
            let at = text.rfind(&format!("{kind}(\""))?;
            let literal = debug_string(&text[at + kind.len() + 1..])?;
            Some((at, *kind, literal))
        })
        .max_by_key(|(at, _, _)| *at);
    match found {
        Some((_, "Config", m)) => Error::Config(m),
        Some((_, "Numeric", m)) => Error::Numeric(m),
        Some((_, _, m)) => Error::Input(m),
        None => e,
    }
}

/// The string a `Debug`-formatted string literal at the start of `s` (`"…"`) stands for.
fn debug_string(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                'u' => {
                    let hex: String = chars.by_ref().skip(1).take_while(|c| *c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_error_is_recovered_from_a_ballista_job_failure() {
        let remote = Error::Input(
            "Execution error: Job 038H failed: Job failed due to stage 1 failed: Task failed \
             due to runtime execution error: DataFusionError(Shared(External(DataFusionError(\
             External(Input(\"key \\\"a\\\" is in more than one sketch\\nfix it\"))))))"
                .into(),
        );
        match unwrap_remote(remote) {
            Error::Input(m) => assert_eq!(m, "key \"a\" is in more than one sketch\nfix it"),
            other => panic!("{other:?}"),
        }
        let plain = Error::Config("no such table".into());
        assert!(matches!(unwrap_remote(plain), Error::Config(m) if m == "no such table"));
    }
}
