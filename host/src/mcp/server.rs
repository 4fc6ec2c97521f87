//! The rmcp `ServerHandler`: advertises tools and resources (with `listChanged`), routes
//! `tools/*` and `resources/*` to [`tools`](super::tools) and
//! [`resources`](super::resources), and tells each session's client when the template
//! catalog changes.
//!
//! Invariants: one [`McpServer`] serves one session (stdio connection or HTTP session) and
//! shares everything else ([`Shared`]) with the other sessions; creating one is cheap and
//! starts nothing (the HTTP transport creates throwaway instances per request); the
//! catalog-change task of a session starts when its client sends `initialized` (and reports every
//! change published since the server was created) and ends
//! when the session's server is dropped or its transport is gone; clients on protocol
//! 2026-07-28 get the same notifications on their `subscriptions/listen` stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::ErrorData as McpError;
use rmcp::RoleServer;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, SubscriptionContext};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::options::McpOptions;
use super::resources;
use super::shared::Shared;
use super::tools;
use crate::app::App;

const INSTRUCTIONS: &str = "Image generation with ComfyUI through sandboxed workflow templates. \
Call list_workflows to see the templates and their parameters, then generate_image (or the tool named after a \
template) with a prompt. Calls return at once with a prompt_id: poll get_workflow_status, or pass wait=true to get \
progress notifications and the images in the result. cancel_workflow stops a job; load_workflow runs a ComfyUI \
workflow file (API format) from the configured folders. Images are saved under the output folder and readable as \
comfyui://images/<prompt_id>/<file> resources.";

/// The MCP server of one session.
pub struct McpServer {
    shared: Arc<Shared>,
    /// Cancelled when this session's server is dropped: ends its background tasks.
    session: CancellationToken,
    watching: AtomicBool,
    /// The catalog generation when this server was created: the baseline of every change
    /// feed of the session (see [`McpServer::catalog_changes`]).
    created_generation: u64,
}

impl McpServer {
    /// A server for one session over `app`.
    pub fn new(app: Arc<App>, options: McpOptions) -> Self {
        Self::with_shared(Shared::new(app, options))
    }

    /// A server for one more session sharing `shared` (jobs list, tool cache).
    pub fn with_shared(shared: Arc<Shared>) -> Self {
        let created_generation = *shared.app.catalog_changes().borrow();
        Self {
            created_generation,
            shared,
            session: CancellationToken::new(),
            watching: AtomicBool::new(false),
        }
    }

    /// The state shared with other sessions.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Catalog generations published since this server was created. A feed opened later (rmcp
    /// runs `initialized` and `subscriptions/listen` as tasks of their own, possibly after the
    /// client's first `tools/list`) still reports a change that landed in between: it starts
    /// marked changed when the catalog moved on since creation.
    fn catalog_changes(&self) -> watch::Receiver<u64> {
        let mut changes = self.shared.app.catalog_changes();
        if *changes.borrow_and_update() != self.created_generation {
            changes.mark_changed();
        }
        changes
    }

    /// Starts telling this session's client about catalog changes (once per session).
    fn watch_catalog(&self, peer: Peer<RoleServer>) {
        if self.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut changes = self.catalog_changes();
        let session = self.session.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = session.cancelled() => break,
                    changed = changes.changed() => {
                        if changed.is_err() || peer.is_transport_closed() {
                            break;
                        }
                        let generation = *changes.borrow_and_update();
                        tracing::debug!(generation, "catalog changed; notifying the client");
                        let tools = peer.notify_tool_list_changed().await;
                        let resources = peer.notify_resource_list_changed().await;
                        if let Err(e) = tools.and(resources) {
                            tracing::debug!(error = %e, "could not notify the client of a catalog change; stopping");
                            break;
                        }
                    }
                }
            }
        });
    }
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("shared", &self.shared)
            .field("session_closed", &self.session.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.session.cancel();
    }
}

async fn next_change(changes: &mut watch::Receiver<u64>) -> bool {
    changes.changed().await.is_ok()
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .build(),
        )
        .with_server_info(
            Implementation::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
                .with_title("ComfyUI MCP")
                .with_description(
                    "ComfyUI image generation through sandboxed WebAssembly workflow templates",
                ),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        tracing::info!("MCP client initialized");
        self.watch_catalog(context.peer);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(
            self.shared.tools().as_ref().clone(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.shared.tools().iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let context = tools::CallContext::mcp(&context);
        tools::call(&self.shared, &request.name, request.arguments, context)
            .await
            .map(|outcome| outcome.into_result().into())
            .map_err(tools::UnknownTool::into_mcp)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(resources::list(&self.shared.app, &self.shared.recent).await)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        resources::read(&self.shared.app, &request.uri)
            .await
            .map(Into::into)
    }

    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(
            SubscriptionFilter::builder()
                .tools_list_changed()
                .resources_list_changed()
                .build(),
        )
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.catalog_changes();
        let sink = context.sink().clone();
        let wants_tools = sink.accepted().tools_list_changed == Some(true);
        let wants_resources = sink.accepted().resources_list_changed == Some(true);
        loop {
            tokio::select! {
                _ = context.cancelled() => return Ok(()),
                _ = self.session.cancelled() => return Ok(()),
                alive = next_change(&mut changes) => {
                    if !alive {
                        return Ok(());
                    }
                    changes.borrow_and_update();
                    if wants_tools && let Err(e) = sink.notify_tool_list_changed().await {
                        tracing::debug!(error = %e, "subscription closed");
                        return Ok(());
                    }
                    if wants_resources && let Err(e) = sink.notify_resource_list_changed().await {
                        tracing::debug!(error = %e, "subscription closed");
                        return Ok(());
                    }
                }
            }
        }
    }
}
