//! Starting and stopping the server: the model thread, the HTTP runtime, and the drain on
//! shutdown (stop accepting, finish the requests in flight, then stop the model thread).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use flan_data::tokenizer::Tokenizer;
use flan_model::{DeviceSpec, Dtype, ModelSource};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::state::{Loaded, ModelInfo, Shared};

/// Which model to serve and where.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// A model directory or hub id (or an adapter directory), as `--model`.
    pub model: String,
    /// A LoRA adapter directory or hub id, as `--adapter`.
    pub adapter: Option<String>,
    /// `--device`.
    pub device: DeviceSpec,
    /// `--dtype`.
    pub dtype: Dtype,
}

/// Everything `flan serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The model.
    pub model: ModelSpec,
    /// Address to listen on (`--host`, `--port`; port 0 picks a free one).
    pub addr: SocketAddr,
    /// The limits.
    pub limits: Limits,
    /// Seed of the seeds of requests that give none.
    pub seed: u64,
}

/// A server running on its own threads.
pub struct RunningServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    http: Option<JoinHandle<Result<()>>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state shared with the handlers (readiness, metrics).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Blocks until the model is loaded (Ok) or failed to load (Err with the reason).
    pub fn wait_loaded(&self) -> std::result::Result<(), String> {
        loop {
            if self.shared.loaded().is_some() {
                return Ok(());
            }
            if let Some(e) = self.shared.load_error() {
                return Err(e.to_string());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Drains (requests in flight finish, new connections are refused) and stops.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join()
    }

    /// Waits until the server stops (after [`RunningServer::shutdown`] or the `stop` future).
    pub fn join(mut self) -> Result<()> {
        match self.http.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Serve(std::io::Error::other(
                "the HTTP thread panicked",
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(http) = self.http.take() {
            let _ = http.join();
        }
    }
}

/// Binds the address, starts the model thread (which loads the model; `/health` says 503 until
/// it has) and the HTTP runtime; returns once the server accepts connections. It stops on
/// [`RunningServer::shutdown`] or when `stop` completes (SIGTERM in `flan serve`).
pub fn start(
    config: ServeConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningServer> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("flan-serve-http")
        .build()
        .map_err(Error::Serve)?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.addr))
        .map_err(|source| Error::Bind {
            addr: config.addr.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
    let shared = Arc::new(Shared::new(config.limits.clone(), config.seed, jobs_tx));
    let worker_shared = shared.clone();
    let spec = config.model.clone();
    let worker = std::thread::Builder::new()
        .name("flan-serve-model".into())
        .spawn(move || match load(&spec) {
            Ok((model, loaded)) => {
                tracing::info!(
                    model = %loaded.info.model_id,
                    device = %loaded.info.device,
                    dtype = %loaded.info.dtype,
                    "flan serve: model loaded"
                );
                worker_shared.set_loaded(loaded);
                let shared = worker_shared.clone();
                let run =
                    std::panic::AssertUnwindSafe(|| crate::worker::run(model, jobs_rx, shared));
                if std::panic::catch_unwind(run).is_err() {
                    // Requests in flight get 500 (their channels close); /health says 503.
                    tracing::error!("flan serve: the model thread panicked");
                    worker_shared.set_load_error("the model thread stopped on a panic".into());
                }
            }
            Err(e) => {
                tracing::error!("flan serve: loading the model: {e}");
                worker_shared.set_load_error(e);
            }
        })
        .map_err(Error::Thread)?;
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let http_shared = shared.clone();
    let http = std::thread::Builder::new()
        .name("flan-serve-main".into())
        .spawn(move || {
            let drain_shared = http_shared.clone();
            let signal = async move {
                tokio::select! {
                    _ = shutdown_rx => {}
                    _ = stop => {}
                }
                tracing::info!(
                    "flan serve: draining: requests in flight finish, new ones are refused"
                );
                drain_shared.start_draining();
            };
            let app = crate::http::router(http_shared.clone());
            // Server-sent events are small writes that must leave at once, not wait for the
            // client's delayed ACK (Nagle's algorithm).
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let served = runtime.block_on(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .await
            });
            // No request is left: the model thread finishes and stops.
            http_shared.close();
            let _ = worker.join();
            tracing::info!("flan serve: stopped");
            served.map_err(Error::Serve)
        })
        .map_err(Error::Thread)?;
    tracing::info!(%addr, "flan serve: listening");
    Ok(RunningServer {
        addr,
        shared,
        shutdown: Some(shutdown_tx),
        http: Some(http),
    })
}

/// Resolves and loads the model with its tokenizer (on the model thread).
fn load(
    spec: &ModelSpec,
) -> std::result::Result<(flan_model::T5ForConditionalGeneration, Loaded), String> {
    let device = spec
        .device
        .resolve_from_env()
        .map_err(|e| format!("--device: {e}"))?;
    let kind = spec.dtype.kind();
    let source =
        ModelSource::resolve(&spec.model, spec.adapter.as_deref()).map_err(|e| e.to_string())?;
    let (model, _report, _adapter) = source.load(device, kind).map_err(|e| e.to_string())?;
    let tokenizer_file = source.tokenizer_file();
    let tokenizer = Tokenizer::from_file(&tokenizer_file).map_err(|e| {
        format!(
            "{}: the model (or adapter) directory needs tokenizer.json: {e}",
            tokenizer_file.display()
        )
    })?;
    let info = ModelInfo {
        model_id: spec.model.clone(),
        adapter_id: spec.adapter.clone(),
        dtype: format!("{:?}", spec.dtype).to_lowercase(),
        device: format!("{device:?}").to_lowercase(),
        vocab_size: model.config().vocab_size,
    };
    let eos_id = model.config().eos_token_id;
    Ok((
        model,
        Loaded {
            tokenizer,
            info,
            eos_id,
        },
    ))
}

/// Completes on SIGTERM or SIGINT (Ctrl-C): what `flan serve` drains on. Must be polled inside
/// the server's runtime (pass it to [`start`]).
pub async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            // Without signal handlers the server runs until it is killed.
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
