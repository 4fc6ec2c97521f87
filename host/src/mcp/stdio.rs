//! The stdio transport: one MCP session on stdin/stdout until the client closes stdin or
//! the process gets ctrl-c, with the [`framing`](super::framing) layer between the
//! streams and rmcp (so every readable request is answered, messages are size-capped and
//! duplicate in-flight ids are refused).
//!
//! Invariant: only the MCP protocol is written to stdout (logs go to stderr via tracing),
//! and only by the framing layer's writer task.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rmcp::ServiceExt as _;

use super::framing;
use super::options::McpOptions;
use super::server::McpServer;
use crate::app::App;

/// How long the last responses may take to reach stdout once the session has ended.
const FLUSH_BOUND: Duration = Duration::from_secs(5);

/// Serves one MCP session over stdin/stdout.
pub async fn serve_stdio(app: Arc<App>, options: McpOptions) -> anyhow::Result<()> {
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let (transport, framing) = framing::frame_stdio(stdin, stdout, options.max_request_bytes);
    let server = McpServer::new(app, options);
    let running = server
        .serve(transport)
        .await
        .context("the MCP session over stdio could not start")?;
    tracing::info!("serving MCP over stdio");
    let cancel = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let outcome = tokio::select! {
        quit = &mut waiting => {
            quit.context("the MCP stdio session task failed").map(|reason| {
                tracing::info!(?reason, "MCP stdio session ended");
            })
        }
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("ctrl-c: closing the MCP stdio session");
            cancel.cancel();
            let _ = waiting.await;
            Ok(())
        }
    };
    framing.finish(FLUSH_BOUND).await;
    outcome
}
