//! The gate every graph passes before it is submitted, whoever wrote it (a pack's `build`, a
//! workflow file or an inline workflow): the node policy, then the graph check, both on the bounded
//! [`BlockingPool`], never on an async worker.
//!
//! Invariants: one [`GraphGate`] per server, shared by every session; its budgets
//! ([`GraphLimits`], [`NodePolicy`], the workflow file caps) are plain data fixed at start-up
//! from the server settings; a check costs at most one pool permit for its whole duration, so
//! however many clients send costly graphs at once, at most `threads` checks run and the async
//! runtime keeps serving everyone else.

use std::sync::Arc;

use comfyui::graph::{self, GraphLimits, GraphSummary};
use comfyui::nodes::NodeCatalog;
use comfyui::policy::NodePolicy;
use serde_json::{Map, Value};

use crate::blocking::BlockingPool;
use crate::error::AppError;
use crate::workflow_file::{self, Overrides, WorkflowDirs, WorkflowSource};

/// What a graph must satisfy, and where it is checked.
#[derive(Debug, Clone)]
pub struct GraphGate {
    pool: BlockingPool,
    limits: GraphLimits,
    policy: Arc<NodePolicy>,
}

impl Default for GraphGate {
    fn default() -> Self {
        Self::new(
            BlockingPool::default(),
            GraphLimits::DEFAULT,
            NodePolicy::default(),
        )
    }
}

/// A custom workflow read or measured, parsed and with its overrides applied.
#[derive(Debug)]
pub struct LoadedWorkflow {
    /// The file name, or [`workflow_file::INLINE_NAME`].
    pub name: String,
    /// Where it came from (the file and its SHA-256, or the inline graph's SHA-256).
    pub origin: comfyui::JobOrigin,
    /// The graph, overrides applied.
    pub graph: Value,
    /// What the overrides did.
    pub overrides: Overrides,
}

impl GraphGate {
    /// A gate running checks on `pool` within `limits` and `policy`.
    pub fn new(pool: BlockingPool, limits: GraphLimits, policy: NodePolicy) -> Self {
        Self {
            pool,
            limits,
            policy: Arc::new(policy),
        }
    }

    /// The graph budgets.
    pub fn limits(&self) -> &GraphLimits {
        &self.limits
    }

    /// The node policy.
    pub fn policy(&self) -> &NodePolicy {
        &self.policy
    }

    /// Checks `graph` against the policy and `nodes` off the runtime; gives the graph back
    /// when it may be submitted.
    pub async fn check(
        &self,
        graph: Value,
        nodes: Arc<NodeCatalog>,
    ) -> Result<(Value, GraphSummary), AppError> {
        let policy = self.policy.clone();
        let limits = self.limits;
        self.pool
            .run(move || {
                check_now(&graph, &nodes, &policy, &limits).map(|summary| (graph, summary))
            })
            .await?
    }

    /// [`GraphGate::check`] against each of `catalogs` (a farm's members) in one job of the
    /// pool; gives the graph back with each catalog's verdict, in order.
    pub async fn check_each(
        &self,
        graph: Value,
        catalogs: Vec<Arc<NodeCatalog>>,
    ) -> Result<(Value, Vec<Result<GraphSummary, AppError>>), AppError> {
        let policy = self.policy.clone();
        let limits = self.limits;
        let verdicts = self
            .pool
            .run(move || {
                let verdicts = catalogs
                    .iter()
                    .map(|nodes| check_now(&graph, nodes, &policy, &limits))
                    .collect();
                (graph, verdicts)
            })
            .await?;
        Ok(verdicts)
    }

    /// Reads a workflow file through the folder policy, or measures an inline one, within
    /// the size cap of `dirs`; unwraps its graph (within the node cap) and applies
    /// `overrides`, off the runtime.
    pub async fn load_workflow(
        &self,
        dirs: &WorkflowDirs,
        source: WorkflowSource,
        overrides: Map<String, Value>,
    ) -> Result<LoadedWorkflow, AppError> {
        let dirs = dirs.clone();
        let max_nodes = self.limits.max_nodes;
        self.pool
            .run(move || {
                let sourced = source.resolve(&dirs)?;
                let mut graph =
                    workflow_file::api_graph(&sourced.name, sourced.document, max_nodes)?;
                let overrides = workflow_file::apply_overrides(&mut graph, &overrides);
                Ok(LoadedWorkflow {
                    name: sourced.name,
                    origin: sourced.origin,
                    graph,
                    overrides,
                })
            })
            .await?
    }
}

/// The policy, then the graph check, on the calling thread (a blocking one). A graph over the
/// node cap gets only the node-cap error.
pub fn check_now(
    graph: &Value,
    nodes: &NodeCatalog,
    policy: &NodePolicy,
    limits: &GraphLimits,
) -> Result<GraphSummary, AppError> {
    let within_cap = graph
        .as_object()
        .is_none_or(|nodes| nodes.len() <= limits.max_nodes);
    if within_cap {
        policy.check(graph, nodes).map_err(AppError::NodePolicy)?;
    }
    graph::check_with(graph, nodes, limits).map_err(AppError::InvalidGraph)
}
