//! The `switchboard` binary: `switchboard serve` (the default) runs the server.

use clap::{Parser, Subcommand};
use switchboard::app::Application;
use switchboard::config::Config;

/// Control plane for live calls: warm transfers between agents over LiveKit.
#[derive(Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (the default). Settings come from the environment and `.env`.
    Serve,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Read `.env` first so that RUST_LOG set there applies too.
    let _ = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,actix_server=warn".into()),
        )
        .init();
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => serve(),
    }
}

fn serve() -> std::process::ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config).await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        })?;
        app.run_until_stopped().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
