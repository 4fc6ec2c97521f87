//! State shared by every session of one server process: the app, the options, the tool list cache and the thumbnail pool.
//!
//! Invariant: one [`Shared`] per server process (stdio) or HTTP router; sessions hold it
//! by `Arc` and never own what is in it.

use std::sync::Arc;

use rmcp::model::Tool;

use super::definitions::ToolCache;
use super::options::McpOptions;
use super::thumbnails::ThumbnailPool;
use crate::app::App;

/// State shared by every session of one server process.
pub struct Shared {
    /// The service.
    pub app: Arc<App>,
    /// Presentation and HTTP options.
    pub options: McpOptions,
    /// The blocking pool thumbnails are made on.
    pub thumbnails: ThumbnailPool,
    tools: ToolCache,
}

impl Shared {
    /// Shared state for `app`.
    pub fn new(app: Arc<App>, options: McpOptions) -> Arc<Self> {
        Arc::new(Self {
            app,
            thumbnails: ThumbnailPool::new(options.thumbnail_workers),
            tools: ToolCache::default(),
            options,
        })
    }

    /// The tools of the current catalog.
    pub fn tools(&self) -> Arc<Vec<Tool>> {
        self.tools.get(&self.app.catalog(), &self.options)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
