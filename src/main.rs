//! The `switchboard` binary: `switchboard serve` (the default) runs the server;
//! `switchboard init-tables` creates the DynamoDB tables.

use clap::{Parser, Subcommand};
use switchboard::app::Application;
use switchboard::config::{Config, StoreConfig};
use switchboard::store::dynamo::DynamoStore;

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
    /// Create the DynamoDB tables and indexes that are missing (SWITCHBOARD_STORE=dynamodb),
    /// and wait until they are ACTIVE. Safe to run again: what exists is kept.
    InitTables,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Read `.env` first so that RUST_LOG set there applies too.
    let _ = dotenvy::dotenv();
    match switchboard::logging::LogFormat::from_env() {
        Ok(format) => switchboard::logging::init(format),
        Err(e) => {
            eprintln!("switchboard: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => serve(),
        Cmd::InitTables => init_tables(),
    }
}

/// An error followed by its sources: `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn init_tables() -> std::process::ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let StoreConfig::DynamoDb(dynamo) = config.store else {
        eprintln!(
            "switchboard: init-tables is for the DynamoDB store; set SWITCHBOARD_STORE=dynamodb \
             (the embedded store needs no setup)"
        );
        return std::process::ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: could not start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let store = DynamoStore::connect(&dynamo).await?;
        store.init_tables().await
    });
    match result {
        Ok(reports) => {
            for r in reports {
                println!("{r}");
            }
            println!("all tables and indexes are ACTIVE");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard: init-tables failed: {}", chain(&e));
            std::process::ExitCode::FAILURE
        }
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
        let app = Application::build(config).await.map_err(|e| chain(&e))?;
        let stopper = app.stopper();
        actix_web::rt::spawn(async move {
            match switchboard::shutdown::signal().await {
                Ok(name) => {
                    tracing::info!(signal = name, "shutting down: finishing in-flight requests");
                    stopper.stop().await;
                }
                Err(e) => tracing::error!(error = %e, "cannot listen for signals"),
            }
        });
        app.run_until_stopped().await.map_err(|e| e.to_string())?;
        tracing::info!("stopped");
        Ok::<(), String>(())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
