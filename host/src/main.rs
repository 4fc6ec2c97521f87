//! The `comfyui-mcp` binary: parses the command line, sets up logging on
//! stderr (stdout belongs to the MCP stdio transport), and runs a command.

use std::process::ExitCode;

use clap::Parser;
use comfyui_mcp::commands;
use comfyui_mcp::config::{Cli, Command, ServeArgs};
use comfyui_mcp::mcp::{self, McpOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COMFYUI_MCP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `serve`'s options alone, to apply their defaults and environment variables
/// when no command is given.
#[derive(Parser)]
struct ServeDefaults {
    #[command(flatten)]
    args: ServeArgs,
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.settings;
    // No command means `serve` with its defaults (and its environment variables).
    let command = cli
        .command
        .unwrap_or_else(|| Command::Serve(ServeDefaults::parse_from(["comfyui-mcp"]).args));
    match command {
        // Pack calls run on the admission's threads, never on an async worker.
        Command::Templates => {
            commands::templates(&settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { pack, json, strict } => {
            let passed = commands::check(&settings, &pack, json, strict).await?;
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::New(args) => {
            let dir = comfyui_mcp::scaffold::create(&args)?;
            print!("{}", comfyui_mcp::scaffold::next_steps(&dir, &args));
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(args) => {
            commands::simulate(&args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let options = McpOptions::from_args(&args)
                .with_prompt_limits(&settings)
                .with_default_wait(settings.execution_timeout()?);
            if let Some(addr) = args.http {
                // Refuse an exposed address without a token before loading anything.
                mcp::http::check_exposure(addr, &options)?;
            }
            // `initialize` is answered at once: packs load in the background
            // and each appears (with list_changed) as soon as it has loaded.
            let app = commands::start_app_in_background(&settings).await?;
            let _watcher = if args.no_watch {
                None
            } else {
                match comfyui_mcp::watch::spawn(app.clone()) {
                    Ok(handle) => Some(handle),
                    Err(e) => {
                        tracing::warn!("hot reload disabled: {e:#}");
                        None
                    }
                }
            };
            match args.http {
                Some(addr) => mcp::serve_http(app, options, addr).await?,
                None => mcp::serve_stdio(app, options).await?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
