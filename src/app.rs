//! Startup: build the whole app on a given listener (port 0 in tests), recover unfinished
//! calls from the store, expose the bound port, and run until stopped.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use actix::Actor;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};

use crate::auth::SessionKeys;
use crate::call::actor::CallDeps;
use crate::call::registry::{Recover, Registry};
use crate::config::{Config, ManagementAccess, StoreConfig};
use crate::http::{self, AppState};
use crate::hub::Hub;
use crate::media::livekit::LiveKit;
use crate::media::twilio::TwilioBridge;
use crate::store::dynamo::DynamoStore;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Store, StoreError};
use crate::ws::{ws_route, WsContext};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listen address could not be bound.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened or read.
    #[error("could not open the store")]
    Store(#[source] StoreError),
    /// The session secret could not be read or created.
    #[error("could not read or create the session secret in {path}")]
    SessionSecret {
        /// Where.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The summariser could not be set up.
    #[error("could not set up the summariser")]
    Summaries(#[source] crate::summary::SummaryError),
    /// Recovering unfinished calls failed.
    #[error("could not recover unfinished calls: {0}")]
    Recovery(String),
    /// `SWITCHBOARD_STATIC_DIR` is not a folder.
    #[error("SWITCHBOARD_STATIC_DIR={0} is not a folder")]
    StaticDir(String),
    /// The Twilio client could not be built.
    #[error("could not set up the Twilio client")]
    Twilio(#[source] crate::twilio::rest::TwilioError),
}

/// A built, listening application.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
    shutdown: crate::shutdown::Shutdown,
}

/// Reads the session secret kept in the data directory, creating it on first start, so
/// tokens stay valid across restarts.
fn session_secret(config: &Config) -> Result<Vec<u8>, StartupError> {
    if let Some(s) = &config.session_secret {
        return Ok(s.expose().as_bytes().to_vec());
    }
    let path = config.data_dir.join("session.key");
    let err = |source| StartupError::SessionSecret {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) | Err(_) => {}
    }
    std::fs::create_dir_all(&config.data_dir).map_err(err)?;
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(&path, &secret).map_err(err)?;
    Ok(secret.into_bytes())
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

/// Opens the configured store: the embedded file, or DynamoDB (creating its tables first
/// with `SWITCHBOARD_INIT_TABLES=true`, otherwise checking that they exist).
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartupError> {
    match &config.store {
        StoreConfig::Embedded => {
            let store = EmbeddedStore::open(&config.data_dir).map_err(StartupError::Store)?;
            tracing::info!(path = %store.path().display(), "store: embedded");
            Ok(Arc::new(store))
        }
        StoreConfig::DynamoDb(c) => {
            let store = DynamoStore::open(c).await.map_err(StartupError::Store)?;
            tracing::info!(
                calls = %c.tables.calls,
                endpoint = c.endpoint_url.as_deref().unwrap_or("AWS"),
                created_tables = c.init_tables,
                "store: DynamoDB"
            );
            Ok(Arc::new(store))
        }
    }
}

/// Binds `addr` and listens with a backlog of `backlog` connections (`std`'s
/// `TcpListener::bind` always asks for 128, too few for a burst of reconnecting clients; the
/// kernel may cap it at `net.core.somaxconn`). Like `std`, sets `SO_REUSEADDR` on Unix.
pub fn bind_listener(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// The access log's format: method, path (never the query string, which may carry a
/// token), status and time taken. actix's `Logger` has no `%m`: the method is a custom
/// request field.
pub const ACCESS_LOG_FORMAT: &str = "%{method}xi %U %s %Dms";

/// The access log middleware ([`ACCESS_LOG_FORMAT`]), leaving out `/health`.
pub fn access_log() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new(ACCESS_LOG_FORMAT)
        .custom_request_replace("method", |req| req.method().to_string())
        .exclude("/health")
}

impl Application {
    /// Binds the configured address and builds the app.
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        let listener = bind_listener(config.addr, config.listen_backlog).map_err(|source| {
            StartupError::Bind {
                addr: config.addr.to_string(),
                source,
            }
        })?;
        Self::build_on(config, listener).await
    }

    /// Builds the app on a listener (bind port 0 for tests). Must run inside an actix system.
    /// The listener keeps the backlog it was created with ([`bind_listener`] sets one).
    pub async fn build_on(
        config: Config,
        listener: TcpListener,
    ) -> Result<Application, StartupError> {
        let store: Arc<dyn Store> =
            Arc::new(crate::store::MeteredStore(open_store(&config).await?));
        let secret = session_secret(&config)?;
        let keys = SessionKeys::new(&secret, config.session_ttl.as_secs() as i64);
        let hub = Hub::new(config.outbox_capacity);
        let livekit = LiveKit::new(&config.livekit);
        let twilio = match &config.twilio {
            Some(t) => Some(TwilioBridge::new(t).map_err(StartupError::Twilio)?),
            None => None,
        };
        // Started before the calls are recovered: a recovered call may send its notice.
        let webhooks =
            crate::webhooks::Webhooks::new(store.clone(), config.webhooks.clone()).start();
        let deps = CallDeps {
            store: store.clone(),
            hub: hub.clone(),
            livekit: livekit.clone(),
            twilio: twilio.clone(),
            recording: config
                .recording
                .as_ref()
                .map(crate::media::livekit::RecordingTarget::from_config),
            end_of_call: Some(Arc::new(crate::call::notice::WebhookNotices::new(
                store.clone(),
                webhooks.clone(),
                config.webhooks.signing_secret.clone(),
            ))),
        };
        let registry = Registry::new(deps, config.timeouts, config.disconnect_grace).start();
        let recovered = registry
            .send(Recover)
            .await
            .map_err(|e| StartupError::Recovery(e.to_string()))?
            .map_err(|e| StartupError::Recovery(e.to_string()))?;
        if recovered > 0 {
            tracing::info!(
                calls = recovered,
                "recovered unfinished calls from the store"
            );
        }
        let summaries = crate::summary::Summaries::new(store.clone(), &config.llm)
            .map_err(StartupError::Summaries)?;
        let calls = crate::call::service::CallService {
            store: store.clone(),
            registry: registry.clone(),
            livekit: livekit.clone(),
            twilio: twilio.clone(),
            summaries: summaries.clone(),
            outbound: crate::call::service::outbound::OutboundSettings {
                agent_name: config.assistant_agent_name.clone(),
                recording_configured: config.recording.is_some(),
            },
        };
        let state = AppState {
            config: Arc::new(config.clone()),
            calls,
            store: store.clone(),
            hub: hub.clone(),
            livekit,
            twilio,
            registry,
            keys: keys.clone(),
            summaries,
            webhooks,
        };
        let shutdown = crate::shutdown::Shutdown::new();
        let ws = web::Data::new(WsContext {
            hub,
            keys,
            handler: http::sessions::Sessions::new(state.clone()),
            shutdown: shutdown.clone(),
        });
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: config.addr.to_string(),
                source,
            })?
            .port();
        let data = web::Data::new(state.clone());
        let static_dir = config.static_dir.clone();
        match &static_dir {
            Some(dir) if !dir.is_dir() => {
                return Err(StartupError::StaticDir(dir.display().to_string()))
            }
            Some(dir) => tracing::info!(dir = %dir.display(), "browser UI: served from a folder"),
            None => tracing::debug!(
                files = http::ui::embedded_files().count(),
                "browser UI: built into the binary"
            ),
        }
        let server = HttpServer::new(move || {
            let app = App::new()
                // Every error answer as `{code, message}` (actix's own too; see
                // docs/api.md for the few the HTTP/1 parser gives before the app).
                .wrap(
                    actix_web::middleware::ErrorHandlers::new()
                        .handler(
                            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                            http::meta::method_not_allowed,
                        )
                        .default_handler(http::meta::json_errors),
                )
                .wrap(access_log())
                // Organisation API keys (src/org.rs) are looked up before the handlers run.
                .wrap(actix_web::middleware::from_fn(http::resolve_org_key))
                .app_data(data.clone())
                .app_data(ws.clone())
                .configure(http::configure_extractors)
                .configure(http::meta::routes)
                .configure(http::agents::routes)
                // Before calls: `/api/calls/{callId}/{action}` would take its GET path.
                .configure(http::webhooks::routes)
                .configure(http::outbound::routes)
                .configure(http::calls::routes)
                .configure(http::transfers::routes)
                .configure(http::transcripts::routes)
                .configure(http::rooms::routes)
                .configure(http::sessions::routes)
                .configure(http::livekit_webhook::routes)
                .configure(http::twilio::routes)
                .configure(http::wallboard::routes)
                .configure(crate::http::metrics::routes)
                .configure(http::keys::routes)
                .configure(http::assistants::routes)
                .configure(http::trunks::routes)
                .service(web::resource("/ws").route(web::get().to(ws_route)));
            match &static_dir {
                Some(dir) => app
                    .service(http::ui::from_dir(dir))
                    .default_service(web::to(http::meta::not_found)),
                // Unknown routes fall through to the built-in UI, which answers the JSON 404.
                None => app.default_service(web::to(http::ui::embedded)),
            }
        })
        // Signals are handled by `main` through [`Application::stopper`].
        .disable_signals()
        .shutdown_timeout(crate::shutdown::SHUTDOWN_TIMEOUT.as_secs())
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: config.addr.to_string(),
            source,
        })?
        .run();
        match &config.management {
            ManagementAccess::LoopbackOnly => tracing::warn!(
                "SWITCHBOARD_API_KEY is not set: management endpoints are open to local clients only"
            ),
            ManagementAccess::ApiKey(_) => tracing::info!("management endpoints require x-api-key"),
        }
        tracing::info!(addr = %config.addr, port, livekit = %config.livekit.url, "switchboard listening");
        Ok(Application {
            port,
            server,
            state,
            shutdown,
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The app's shared state (for tests and admin commands).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops this server gracefully (see [`crate::shutdown`]); `main` calls it on SIGTERM
    /// and SIGINT.
    pub fn stopper(&self) -> crate::shutdown::Stopper {
        crate::shutdown::Stopper::new(self.server.handle(), self.shutdown.clone())
    }

    /// Serves until the server is stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_queues_more_than_std_s_128_connections() {
        let listener = bind_listener("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        let addr = listener.local_addr().unwrap();
        // Nothing accepts: every connection waits in the backlog. With `std`'s 128 the
        // kernel drops the SYNs past it and these connects time out.
        let mut open = Vec::new();
        for i in 0..400 {
            let c = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("connection {i} not queued: {e}"));
            open.push(c);
        }
    }
}
