//! Placement: which member runs a graph. Capability first (the graph passes the node policy
//! and the graph check against the member's own node catalog, so every node class and every
//! model file it names is there), then load ((open jobs) / capacity, lowest first; ties go
//! round-robin so equal members share the work).
//!
//! Rotation: on a farm, only members whose websocket is up take new work; when none is up,
//! all are tried (the errors then say why). The pack builds its graph against the union of
//! the members' catalogs ([`FarmView`]), so a template can name a model only one member has,
//! and that member gets the job.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use comfyui::ModelSnapshot;
use comfyui::nodes::NodeCatalog;
use pack_runtime::HostView;
use serde_json::Value;

use super::Farm;
use crate::error::AppError;
use crate::graph_gate::GraphGate;

/// What one member has, as last fetched.
#[derive(Clone)]
pub struct MemberView {
    /// Its index in the farm.
    pub member: usize,
    /// Its node catalog.
    pub nodes: Arc<NodeCatalog>,
    /// Its model files.
    pub models: Arc<ModelSnapshot>,
}

/// The union of several members' catalogs, as the pack sees ComfyUI on a farm: a model or a
/// node class is there if any member has it.
pub struct FarmView(pub Vec<MemberView>);

impl HostView for FarmView {
    fn models(&self, folder: &str) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for view in &self.0 {
            for file in view.models.folders.get(folder).into_iter().flatten() {
                if !all.contains(file) {
                    all.push(file.clone());
                }
            }
        }
        all
    }

    fn has_node(&self, class_type: &str) -> bool {
        self.0.iter().any(|v| v.nodes.contains(class_type))
    }
}

/// Where a graph goes.
#[derive(Debug)]
pub struct Placement {
    /// The member (index).
    pub member: usize,
    /// The graph as checked.
    pub graph: Value,
}

impl Farm {
    /// The members that take new work now, leaving out `exclude`: the connected ones on a
    /// farm (all if none is), the only one otherwise.
    pub fn in_rotation(&self, exclude: Option<usize>) -> Vec<usize> {
        let others: Vec<usize> = (0..self.members.len())
            .filter(|&i| Some(i) != exclude)
            .collect();
        if !self.is_farm() {
            return others;
        }
        let up: Vec<usize> = others
            .iter()
            .copied()
            .filter(|&i| self.members[i].comfy.is_connected())
            .collect();
        if up.is_empty() && exclude.is_none() {
            others
        } else {
            up
        }
    }

    /// The catalogs of `members`; those that do not answer are returned with their error.
    pub async fn views(&self, members: &[usize]) -> (Vec<MemberView>, Vec<(usize, AppError)>) {
        let fetches = members.iter().map(|&i| async move {
            let comfy = &self.members[i].comfy;
            let nodes = comfy.node_catalog().await.map_err(AppError::ComfyUi)?;
            let models = comfy.models_snapshot().await.map_err(AppError::ComfyUi)?;
            Ok::<_, AppError>(MemberView {
                member: i,
                nodes,
                models,
            })
        });
        let results = futures_util::future::join_all(fetches).await;
        let mut views = Vec::new();
        let mut failed = Vec::new();
        for (&i, result) in members.iter().zip(results) {
            match result {
                Ok(view) => views.push(view),
                Err(e) => failed.push((i, e)),
            }
        }
        (views, failed)
    }

    /// The least loaded of `capable` (not empty); ties round-robin.
    pub fn least_loaded(&self, capable: &[usize]) -> usize {
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let n = capable.len();
        (0..n)
            .map(|k| capable[(start + k) % n])
            .min_by(|&a, &b| self.members[a].load().total_cmp(&self.members[b].load()))
            .unwrap_or(capable[0])
    }

    /// Places `graph` on the least loaded member among `views` that can run it. `Err`: every
    /// member's reason (each already explained by `explain`, e.g. with its installed models).
    pub async fn place(
        &self,
        gate: &GraphGate,
        graph: Value,
        views: &[MemberView],
        explain: impl Fn(AppError, &MemberView) -> AppError,
    ) -> Result<Placement, Vec<(usize, AppError)>> {
        let catalogs = views.iter().map(|v| v.nodes.clone()).collect();
        let (graph, results) = match gate.check_each(graph, catalogs).await {
            Ok(checked) => checked,
            Err(e) => return Err(vec![(views.first().map_or(0, |v| v.member), e)]),
        };
        let mut capable = Vec::new();
        let mut refused = Vec::new();
        for (view, result) in views.iter().zip(results) {
            match result {
                Ok(_) => capable.push(view.member),
                Err(e) => refused.push((view.member, explain(e, view))),
            }
        }
        if capable.is_empty() {
            return Err(refused);
        }
        Ok(Placement {
            member: self.least_loaded(&capable),
            graph,
        })
    }
}
