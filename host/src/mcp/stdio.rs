//! The stdio transport: one MCP session on stdin/stdout until the client closes stdin or
//! the process gets ctrl-c.
//!
//! Invariant: only the MCP protocol is written to stdout (logs go to stderr via tracing).

use std::sync::Arc;

use anyhow::Context as _;
use rmcp::ServiceExt as _;

use super::{McpOptions, McpServer};
use crate::app::App;

/// Serves one MCP session over stdin/stdout.
pub async fn serve_stdio(app: Arc<App>, options: McpOptions) -> anyhow::Result<()> {
    let server = McpServer::new(app, options);
    let running = server
        .serve(rmcp::transport::stdio_pipes())
        .await
        .context("the MCP session over stdio could not start")?;
    tracing::info!("serving MCP over stdio");
    let cancel = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    tokio::select! {
        quit = &mut waiting => {
            let reason = quit.context("the MCP stdio session task failed")?;
            tracing::info!(?reason, "MCP stdio session ended");
        }
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("ctrl-c: closing the MCP stdio session");
            cancel.cancel();
            let _ = waiting.await;
        }
    }
    Ok(())
}
